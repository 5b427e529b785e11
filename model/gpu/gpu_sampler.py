"""The uniform (DiffusionGemma) denoising loop as device tensor ops, without host syncs inside the loop.

Same process as `sampler._denoise_uniform` (read that first): linear temperature, one sample per
position, per-position entropy, entropy-bound acceptance, re-noising of the rest, stop when the argmax
canvas is stable and its mean entropy is below the confidence threshold. The differences are only in
how it runs:
- the decoder pass is a `StaticDenoiser` (one CUDA graph replay on the GPU);
- rows that have stopped are frozen with `torch.where` on a device mask every step, instead of
  a host-side `if finished.any()`; their entropy and self-conditioning probabilities are carried
  over instead of recomputed (the same values: the reference recomputes them from the same logits);
- whether every row has stopped is read on the host only every `check_every` steps (1: every step,
  as the reference). With check_every > 1 the result is the same canvas, but the loop may run up to
  check_every - 1 extra (frozen) steps, which draw from the generator: a chain of canvases then
  sees other random numbers than the reference's from the second canvas on;
- the step count is a device counter, read once at the end.
With draw="multinomial" and the same generator it draws exactly the reference's random numbers in the
same order, so it gives the same tokens (tests/test_engine_static.py).

fused=True uses `fused_head`: no [B, C, V] logits; sampling is Gumbel-max with noise from the same
generator (equal in distribution to multinomial, not the same draws); draw="gumbel" in the unfused
path draws the same noise in the same order, the hook that tests the fused path token for token.
Letters: B batch, C canvas length, H hidden size, V vocabulary.
"""
from __future__ import annotations

import torch

from diffill.model.engine.config import GenerationSettings
from diffill.model.gpu.fused_head import DEFAULT_CHUNK, fused_head, gumbel_chunks
from diffill.model.engine.kv_cache import KVCache
from diffill.model.engine.sampler import Clamp, _entropy, entropy_bound_accept, linear_temperature
from diffill.model.gpu.static_step import StaticDenoiser


def _sample_logits(proc, probs, draw, gen, chunk):
    """proc, probs [B, C, V] -> one sample per position [B, C]."""
    b, c, v = proc.shape
    if draw == "multinomial":
        return torch.multinomial(probs.view(-1, v), 1, generator=gen).view(b, c)
    g = torch.cat(list(gumbel_chunks(b * c, v, chunk, gen, proc.device)), dim=-1)
    return (proc.view(-1, v) + g).argmax(-1).view(b, c)


@torch.inference_mode()
def denoise_canvas(model, step: StaticDenoiser, settings: GenerationSettings | None = None,
                   max_steps: int | None = None, generator: torch.Generator | None = None, *,
                   check_every: int = 1, fused: bool = False, draw: str = "multinomial",
                   chunk: int = DEFAULT_CHUNK, clamp: Clamp | None = None, report=None,
                   confidence_out: list | None = None) -> tuple[torch.Tensor, int]:
    """Denoise one canvas over the cache `step` is bound to. Returns (final argmax canvas [B, C], steps).

    clamp: tokens pinned at canvas positions after every step, as the reference does.
    report(steps, accepted, mean_entropy, done) is called at every check (every check_every steps),
    with the values of that step; it may raise to abort (the sampler's cancellation).
    confidence_out: gets the final step's probability of each argmax token [B, C] appended."""
    settings = settings or model.generation or GenerationSettings()
    max_steps = max_steps or settings.max_denoising_steps
    if fused and step.with_logits:
        raise ValueError("the fused head reads the final hidden state: build the StaticDenoiser with_logits=False")
    if not fused and not step.with_logits:
        raise ValueError("the unfused sampler reads logits: build the StaticDenoiser with_logits=True")
    if draw not in ("multinomial", "gumbel") or (fused and draw != "gumbel"):
        raise ValueError(f"draw must be 'multinomial' or 'gumbel' ('gumbel' when fused), got {draw!r}")
    b, c = step.canvas.shape
    v, dev = model.config.vocab_size, model.device
    pin = None
    if clamp is not None and clamp.positions:
        pin = (torch.tensor(clamp.positions, device=dev), torch.tensor(clamp.ids, dtype=torch.long, device=dev))
    canvas = _pinned(torch.randint(0, v, (b, c), device=dev, generator=generator), pin)
    argmax = canvas
    conf = None
    soft = prev_probs = prev_ent = None
    finished = torch.zeros(b, dtype=torch.bool, device=dev)
    history = torch.full((max(1, settings.stability_threshold), b, c), -1, dtype=torch.long, device=dev)
    steps = torch.zeros((), dtype=torch.long, device=dev)
    for j, n in enumerate(range(max_steps, 0, -1)):
        temp = linear_temperature(settings, n, max_steps)
        if fused:
            hidden = step.run(canvas, soft)
            st = fused_head(hidden.view(b * c, -1), model.output_embedding, model.config.final_logit_softcapping,
                            temp, noise=gumbel_chunks(b * c, v, chunk, generator, dev), chunk=chunk)
            sample, new_argmax, ent = st.sample.view(b, c), st.argmax.view(b, c), st.entropy.view(b, c)
            sc = st.soft.view(b, c, -1)                                   # next step's self-conditioning
            new_conf = torch.exp(st.max_z - st.lse).view(b, c)            # p(argmax) at this step
        else:
            logits = step.run(canvas, None if prev_probs is None else model.soft_embedding(probs=prev_probs))
            proc = logits / temp                                          # [B, C, V]; the buffer stays intact
            sc = torch.softmax(proc, dim=-1, dtype=torch.float32)
            sample = _sample_logits(proc, sc, draw, generator, chunk)
            new_argmax = proc.argmax(-1)
            ent = _entropy(proc, sc)
            new_conf = None                                               # read from sc at the end
        accept = entropy_bound_accept(ent, settings.entropy_bound)
        noise = torch.randint(0, v, (b, c), device=dev, generator=generator)
        new_canvas = torch.where(accept, sample, noise)
        if j > 0:  # rows that stopped keep their state
            f = finished[:, None]
            new_argmax = torch.where(f, argmax, new_argmax)
            new_canvas = torch.where(f, canvas, new_canvas)
            sc = torch.where(f[..., None], soft if fused else prev_probs, sc)
            ent = torch.where(f, prev_ent, ent)
            if new_conf is not None:
                new_conf = torch.where(f, conf, new_conf)
        if settings.stability_threshold == 0:
            stable = torch.ones(b, dtype=torch.bool, device=dev)
        else:
            stable = (history == new_argmax[None]).all(-1).all(0)
            history = torch.roll(history, -1, 0)
            history[-1] = new_argmax
        steps += (~finished.all()).long()
        finished = finished | (stable & (ent.mean(-1) < settings.confidence_threshold))
        canvas, argmax, prev_ent, conf = _pinned(new_canvas, pin), new_argmax, ent, new_conf
        if fused:
            soft = sc
        else:
            prev_probs = sc
        if (j + 1) % check_every == 0 or j + 1 == max_steps:  # the only host syncs, every check_every steps
            done = bool(finished.all())
            if report is not None:
                report(int(steps), int(accept.sum()), float(ent.mean()), done)
            if done:
                break
    if confidence_out is not None:
        confidence_out.append(conf if fused else prev_probs.gather(-1, argmax[..., None]).squeeze(-1))
    return argmax, int(steps)


def _pinned(canvas: torch.Tensor, pin) -> torch.Tensor:
    """The canvas with the clamp's tokens at their positions (in place)."""
    if pin is not None:
        canvas[:, pin[0]] = pin[1]
    return canvas


def sample_canvas(model, cache: KVCache, canvas_length: int | None = None, *, fused: bool = False,
                  capture: bool | None = None, **kwargs) -> tuple[torch.Tensor, int]:
    """One canvas after the prompt in `cache` (not extended): a StaticDenoiser, then denoise_canvas."""
    c = canvas_length or model.config.canvas_length
    step = StaticDenoiser(model, cache, c, with_logits=not fused, capture=capture)
    if fused:
        kwargs.setdefault("draw", "gumbel")
    return denoise_canvas(model, step, fused=fused, **kwargs)
