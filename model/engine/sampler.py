"""Denoising a canvas: one loop, two noise processes.

- "uniform" (DiffusionGemma): the canvas starts as uniform random tokens; each step samples every
  position at a linearly scheduled temperature, accepts the lowest-entropy samples whose summed entropy
  (minus the largest) stays within the entropy bound, and re-noises the rest with fresh random tokens.
  It stops when the argmax canvas is stable and its mean entropy is below the confidence threshold.
  The output is the final argmax canvas.
- "mask" (absorbing): the canvas starts as mask tokens; each step commits the most confident masked
  positions (same entropy bound, at least enough to finish in the steps left); committed tokens stay.
  A position ends the middle only when end-of-sequence and padding together hold half the probability.
  It stops when every position up to the first committed end-of-sequence is committed.

Canvases chain: a finished canvas without end-of-sequence is encoded into the cache and a fresh one
starts, until `max_new_tokens`. The random draws come from one seedable generator, in the same order as
transformers' `generate()` for the uniform process. A per-step callback sees `StepStats` and can abort.
Letters: B batch, C canvas length, V vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from diffill.model.engine.config import GenerationSettings
from diffill.model.engine.kv_cache import KVCache


@dataclass
class StepStats:
    canvas: int        # index of the canvas in the chain
    step: int          # denoising steps done in this canvas (1-based)
    max_steps: int
    accepted: int      # positions accepted (uniform) or committed (mask) in this step, whole batch
    mean_entropy: float
    done: bool         # every row has stopped denoising this canvas


@dataclass
class Clamp:
    """Known tokens pinned at canvas positions, re-imposed after every step (prompt format B)."""
    positions: list[int]
    ids: list[int]


@dataclass
class SampleResult:
    tokens: list[list[int]]            # per row: generated ids, up to (not including) end-of-sequence
    ended: list[bool]                  # per row: an end-of-sequence token was produced
    steps: int                         # denoising steps over all canvases
    canvases: int
    cancelled: bool = False
    stats: list[StepStats] = field(default_factory=list)
    # per row, aligned with tokens: the probability the model gave each token when it was committed
    # (mask) or at the last step (uniform); what the confidence gate reads
    confidence: list[list[float]] = field(default_factory=list)


def linear_temperature(settings: GenerationSettings, n: int, max_steps: int) -> float:
    """Step n counts down from max_steps to 1: t = t_min + (t_max - t_min) * n / N."""
    return settings.t_min + (settings.t_max - settings.t_min) * (n / max_steps)


def entropy_bound_accept(entropy: torch.Tensor, bound: float, eligible: torch.Tensor | None = None) -> torch.Tensor:
    """[B, C] entropies -> bool [B, C]: the longest run of lowest-entropy positions whose summed
    entropy, minus its largest member, is <= bound (always at least one eligible position)."""
    if eligible is not None:
        entropy = entropy.masked_fill(~eligible, float("inf"))
    sorted_e, order = torch.sort(entropy, dim=-1)
    csum = torch.cumsum(sorted_e, dim=-1)
    take = (csum - sorted_e) <= bound
    if eligible is not None:
        take &= torch.isfinite(sorted_e)
    return torch.zeros_like(take).scatter(-1, order, take)


def mask_predictions(probs: torch.Tensor, end_ids: torch.Tensor) -> torch.Tensor:
    """[B, C, V] probabilities -> [B, C] tokens for the mask process. Whether a position ends the middle
    (end-of-sequence or padding, `end_ids` [E] in ascending order) is decided on the summed probability
    of those tokens, then the most likely token of the winning side is taken. A plain argmax would end
    the middle wherever padding is the single most likely token, even when most of the mass is spread
    over code tokens, and a small model would answer with an empty completion."""
    end_probs = probs[..., end_ids]                                          # [B, C, E]
    best_end = end_ids[end_probs.argmax(-1)]
    best_code = probs.index_fill(-1, end_ids, -1.0).argmax(-1)
    return torch.where(end_probs.sum(-1) >= 0.5, best_end, best_code)


def _entropy(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    logp = logits - logits.logsumexp(-1, keepdim=True)
    return -(logp.clamp(min=torch.finfo(logp.dtype).min) * probs).sum(-1)


def _apply_clamp(canvas: torch.Tensor, clamp: Clamp | None) -> torch.Tensor:
    if clamp is not None and clamp.positions:
        canvas[:, clamp.positions] = torch.tensor(clamp.ids, dtype=canvas.dtype, device=canvas.device)
    return canvas


class Cancelled(Exception):
    pass


def _denoise_uniform(model, cache, b, c, settings, max_steps, gen, clamp, report, confidence_out=None):
    v = model.config.vocab_size
    dev = model.device
    canvas = _apply_clamp(torch.randint(0, v, (b, c), device=dev, generator=gen), clamp)
    argmax = canvas
    sc = sc_probs = None
    history = None
    finished = torch.zeros(b, dtype=torch.bool, device=dev)
    steps = 0
    for n in range(max_steps, 0, -1):
        logits = model.denoise(canvas, cache, self_cond_probs=sc_probs)
        proc = logits.div_(linear_temperature(settings, n, max_steps))
        probs = torch.softmax(proc, dim=-1, dtype=torch.float32)
        sample = torch.multinomial(probs.view(-1, v), 1, generator=gen).view(b, c)
        new_argmax = proc.argmax(-1)
        ent = _entropy(proc, probs)
        accept = entropy_bound_accept(ent, settings.entropy_bound)
        noise = torch.randint(0, v, (b, c), device=dev, generator=gen)
        new_canvas = torch.where(accept, sample, noise)
        if finished.any():  # rows that stopped keep their state
            new_argmax = torch.where(finished[:, None], argmax, new_argmax)
            new_canvas = torch.where(finished[:, None], canvas, new_canvas)
            proc = torch.where(finished[:, None, None], sc, proc)
            probs = torch.softmax(proc, dim=-1, dtype=torch.float32)
            ent = torch.where(finished[:, None], _entropy(proc, probs), ent)
        if settings.stability_threshold == 0:
            stable = torch.ones(b, dtype=torch.bool, device=dev)
        else:
            if history is None:
                history = torch.full((settings.stability_threshold, b, c), -1, dtype=new_argmax.dtype, device=dev)
            stable = (history == new_argmax[None]).all(-1).all(0)
            history = torch.roll(history, -1, 0)
            history[-1] = new_argmax
        finished |= stable & (ent.mean(-1) < settings.confidence_threshold)
        canvas, argmax, sc, sc_probs = _apply_clamp(new_canvas, clamp), new_argmax, proc, probs
        steps += 1
        report(steps, int(accept.sum()), float(ent.mean()), bool(finished.all()))
        if finished.all():
            break
    if confidence_out is not None:  # [B, C]: the last step's probability of each argmax token
        confidence_out.append(sc_probs.gather(-1, argmax[..., None]).squeeze(-1))
    return argmax, steps


def _committed_prefix(canvas: torch.Tensor, committed: torch.Tensor) -> list[list[int]]:
    """Per row: the tokens from position 0 up to the first position not yet committed."""
    upto = torch.where((~committed).any(-1), (~committed).float().argmax(-1), committed.shape[1])
    return [canvas[r, : int(upto[r])].tolist() for r in range(canvas.shape[0])]


def _denoise_mask(model, cache, b, c, settings, max_steps, gen, clamp, report, done_when=None, confidence_out=None):
    tok = model.tokenizer
    dev = model.device
    mask_id = tok.mask_id
    if mask_id is None:
        raise ValueError("the mask noise process needs a <mask> token in the tokenizer")
    eos = torch.tensor(tok.eos_ids, device=dev)
    ends = torch.tensor(sorted({*tok.eos_ids, *([tok.pad_id] if tok.pad_id is not None else [])}), device=dev)
    canvas = _apply_clamp(torch.full((b, c), mask_id, dtype=torch.long, device=dev), clamp)
    committed = canvas != mask_id
    conf = torch.ones(b, c, device=dev)  # [B, C] probability of each token when it was committed
    sc = None
    steps = 0
    for n in range(max_steps, 0, -1):
        logits = model.denoise(canvas, cache, sc)
        logits[..., mask_id] = float("-inf")  # never predict the mask itself
        proc = logits / linear_temperature(settings, n, max_steps)
        probs = torch.softmax(proc, dim=-1, dtype=torch.float32)
        pred = mask_predictions(probs, ends)
        ent = _entropy(proc, probs)
        open_ = ~committed
        accept = entropy_bound_accept(ent, settings.entropy_bound, eligible=open_)
        # enough commits to finish within the steps left: the lowest-entropy open positions
        need = torch.ceil(open_.sum(-1).float() / n).long()  # [B]
        rank = torch.argsort(torch.argsort(ent.masked_fill(~open_, float("inf")), -1), -1)
        accept |= (rank < need[:, None]) & open_
        canvas = torch.where(accept, pred, canvas)
        conf = torch.where(accept & open_, probs.gather(-1, pred[..., None]).squeeze(-1), conf)
        committed |= accept
        sc = proc
        steps += 1
        # done when every position up to the first committed end-of-sequence is committed
        is_eos = torch.isin(canvas, eos) & committed
        first_eos = torch.where(is_eos.any(-1), is_eos.float().argmax(-1), torch.full((b,), c, device=dev))
        before = torch.arange(c, device=dev)[None, :] < first_eos[:, None]
        done = bool(((committed | ~before).all(-1)).all())
        if not done and done_when is not None:  # e.g. the span's lines are complete already
            done = all(done_when(row) for row in _committed_prefix(canvas, committed))
        report(steps, int(accept.sum()), float(ent[open_].mean()) if open_.any() else 0.0, done)
        if done:
            break
    if confidence_out is not None:
        confidence_out.append(conf)
    if done_when is not None and not bool(committed.all()):  # an early stop: keep the committed prefix
        prefix = _committed_prefix(canvas, committed)
        out = torch.full_like(canvas, tok.pad_id)
        for r, row in enumerate(prefix):
            out[r, : len(row)] = torch.tensor(row, dtype=out.dtype, device=out.device)
            if len(row) < c:
                out[r, len(row)] = int(eos[0])
        return out, steps
    return canvas.masked_fill(~committed, tok.pad_id), steps


@torch.inference_mode()
def sample(model, cache: KVCache, *, canvas_length: int | None = None, max_new_tokens: int | None = None,
           settings: GenerationSettings | None = None, max_steps: int | None = None, seed: int | None = None,
           generator: torch.Generator | None = None, on_step: Callable[[StepStats], bool | None] | None = None,
           clamp: Clamp | None = None, noise: str | None = None,
           done_when: Callable[[list[int]], bool] | None = None, uniform=None) -> SampleResult:
    """Generate after the prompt held in `cache` (which grows by the committed canvases).

    on_step(stats) runs after every denoising step; returning False aborts (result.cancelled).
    done_when(tokens) (mask process only) is asked after every step about each row's committed
    prefix (position 0 up to the first open position); True for every row ends the canvas there.
    uniform: what denoises one canvas of the uniform process, with `_denoise_uniform`'s signature
    (the GPU's fast path, model/gpu/fast_path.py); None: `_denoise_uniform`.
    """
    settings = settings or model.generation or GenerationSettings()
    noise = noise or model.config.noise
    c = canvas_length or model.config.canvas_length
    max_steps = max_steps or settings.max_denoising_steps
    max_new = max_new_tokens or c
    if generator is None:
        generator = torch.Generator(device=model.device)
        generator.manual_seed(0 if seed is None else seed)
    b = cache.batch_size
    eos = torch.tensor(model.tokenizer.eos_ids if model.tokenizer else settings.eos_token_id, device=model.device)
    out = [[] for _ in range(b)]
    ended = [False] * b
    probs_out = [[] for _ in range(b)]
    result = SampleResult(tokens=out, ended=ended, steps=0, canvases=0, confidence=probs_out)
    denoise = {"uniform": uniform or _denoise_uniform, "mask": _denoise_mask}[noise]
    for k in range(math.ceil(max_new / c)):
        def report(step, accepted, mean_entropy, done, k=k):
            s = StepStats(k, step, max_steps, accepted, mean_entropy, done)
            result.stats.append(s)
            if on_step is not None and on_step(s) is False:
                raise Cancelled
        conf: list[torch.Tensor] = []
        try:
            extra = {"done_when": done_when} if noise == "mask" else {}
            final, steps = denoise(model, cache, b, c, settings, max_steps, generator, clamp, report,
                                   confidence_out=conf, **extra)
        except Cancelled:
            result.cancelled = True
            result.steps = len(result.stats)
            return result
        result.steps += steps
        result.canvases += 1
        is_eos = torch.isin(final, eos)
        for r in range(b):
            if ended[r]:
                continue
            row, row_conf = final[r].tolist(), conf[0][r].tolist()
            if bool(is_eos[r].any()):
                cut = int(is_eos[r].float().argmax())
                out[r].extend(row[:cut])
                probs_out[r].extend(row_conf[:cut])
                ended[r] = True
            else:
                out[r].extend(row)
                probs_out[r].extend(row_conf)
        if all(ended) or (k + 1) * c >= max_new or clamp is not None:
            break
        # chain: commit this canvas to the cache (ended rows get padding) and start a fresh one
        pad_id = model.tokenizer.pad_id if model.tokenizer else 0
        eos_seen = torch.cumsum(is_eos.int(), -1)
        commit = final.masked_fill((eos_seen > 0) & ~((eos_seen == 1) & is_eos), pad_id)
        model.encode(commit, cache)
    return result
