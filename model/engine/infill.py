"""Fill in the middle between a prefix and a suffix: prompt, prefix KV cache reuse, sampling, text.

`Infiller` keeps, per document, the prompt ids and KV cache of the previous request; a new request
reuses the cache of the longest common token prefix and encodes only the new tokens.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import torch

from diffill.lsp.wire.prompt_format import cut_at_stops
from diffill.model.engine.prompt import build_prompt, default_format
from diffill.model.engine.sampler import sample


@dataclass
class FillResult:
    text: str
    tokens: list[int]
    steps: int
    ms: float
    cancelled: bool
    reused_tokens: int
    encoded_tokens: int
    canvas_length: int
    prompt_format: str
    line_confidence: list[float] | None = None  # per line of `text`: the least probable token's probability


_UNPRINTABLE = {c: None for c in list(range(0, 9)) + [11, 12] + list(range(14, 32)) + [127, 0xFFFD]}


def printable(text: str) -> str:
    """Drop control characters (but tab and line breaks) and U+FFFD (bytes that did not decode):
    nothing an editor should insert into a file."""
    return text.translate(_UNPRINTABLE)


def line_confidence(tokenizer, tokens: list[int], probs: list[float], text: str) -> list[float]:
    """Per line of `text` (the decoded `tokens`): the lowest probability of a token on that line."""
    lines = [1.0] * (text.count("\n") + 1)
    line = 0
    for token, p in zip(tokens, probs):
        if line >= len(lines):
            break
        lines[line] = min(lines[line], float(p))
        line += tokenizer.decode([token]).count("\n")
    return [round(x, 4) for x in lines]


def common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Infiller:
    def __init__(self, model, prompt_format: str | None = None, max_documents: int = 8, uniform=None):
        """uniform: the uniform process's canvas denoiser (`sampler.sample`'s `uniform`), e.g. the GPU's
        fast path; None: the reference."""
        self.model = model
        self.uniform = uniform
        self.format = default_format(model.tokenizer, prompt_format or model.config.prompt_format)
        self.max_documents = max_documents
        self._caches: OrderedDict[str, tuple[list[int], object]] = OrderedDict()

    def _cache_for(self, doc_key: str | None, ids: list[int]):
        """(cache holding ids, reused, encoded)."""
        m = self.model
        entry = self._caches.pop(doc_key, None) if doc_key is not None else None
        reuse = 0
        if entry is not None:
            old_ids, cache = entry
            reuse = common_prefix_len(old_ids, ids)
            if reuse == len(ids):  # identical prompt: keep one token to encode so the cache is fresh
                reuse -= 1
            cache.truncate(reuse)
        if reuse <= 0:
            cache, reuse = None, 0
        cache = m.encode(torch.tensor([ids[reuse:]], device=m.device), cache)
        if doc_key is not None:
            self._caches[doc_key] = (ids, cache)
            while len(self._caches) > self.max_documents:
                self._caches.popitem(last=False)
        return cache, reuse, len(ids) - reuse

    def _lines_done(self, max_lines: int | None):
        if not max_lines or self.format != "fim":
            return None
        decode = self.model.tokenizer.decode
        return lambda tokens: decode(tokens).count("\n") >= max_lines

    def forget(self, doc_key: str) -> None:
        self._caches.pop(doc_key, None)

    @torch.inference_mode()
    def fill(self, prefix: str, suffix: str, canvas_length: int | None = None, max_steps: int | None = None,
             seed: int = 0, on_step=None, doc_key: str | None = None, language: str | None = None,
             max_new_tokens: int | None = None, max_lines: int | None = None) -> FillResult:
        """max_lines: the completion is wanted up to this many lines only (the span decides); with the
        mask process, denoising stops once that many complete lines are committed."""
        t0 = time.perf_counter()
        m = self.model
        c = int(canvas_length or m.config.canvas_length)
        prompt = build_prompt(m.tokenizer, self.format, prefix, suffix, c, language)
        cache, reused, encoded = self._cache_for(doc_key, prompt.ids)
        prompt_len = cache.length
        try:
            r = sample(m, cache, canvas_length=c, max_new_tokens=max_new_tokens or c, max_steps=max_steps,
                       seed=seed, on_step=on_step, clamp=prompt.clamp, done_when=self._lines_done(max_lines),
                       uniform=self.uniform)
        finally:
            cache.truncate(prompt_len)  # chained canvases are not part of the document's prefix
        tokens = r.tokens[0]
        if prompt.middle_len is not None:
            tokens = tokens[: prompt.middle_len]
        probs = r.confidence[0][: len(tokens)] if r.confidence else []
        text = "" if r.cancelled else cut_at_stops(printable(m.tokenizer.decode(tokens)), prompt.stop_texts)
        confidence = line_confidence(m.tokenizer, tokens, probs, text) if probs and not r.cancelled else None
        return FillResult(text=text, tokens=tokens, steps=r.steps, ms=(time.perf_counter() - t0) * 1000,
                          cancelled=r.cancelled, reused_tokens=reused, encoded_tokens=encoded,
                          canvas_length=c, prompt_format=self.format, line_confidence=confidence)
