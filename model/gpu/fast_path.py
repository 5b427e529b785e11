"""The uniform process (DiffusionGemma) on the fast parts: what the worker's Infiller denoises with on CUDA.

`FastDenoiser` has the signature of `sampler._denoise_uniform`, so `sampler.sample` keeps everything
around one canvas as it is (the prefix KV cache the Infiller reuses, chained canvases, end-of-sequence
cuts, cancellation through the step callback); only the canvas loop changes:
- the decoder pass is a `StaticDenoiser` (a captured CUDA graph when `graph` is on). One step is kept
  per (capacity, canvas length, batch), the capacity rounded up to a power of two: a new fill binds
  its cache into the kept buffers and replays the same graph; a step is built (and captured) only
  for a capacity or canvas length not seen recently;
- the loop is `gpu_sampler.denoise_canvas` (device tensors, a host sync every `check_every` steps,
  where the step callback runs: cancellation is seen within check_every steps);
- the head is `fused_head` when `fused_head` is on (no [B, C, V] logits; Gumbel-max draws), else
  the logits the step writes (multinomial draws, the reference's own random numbers).
The router and expert kernels are chosen per op in diffill.kernels (Triton on CUDA tensors).

The mask process (the embedded model) stays on the reference loop: the model is small enough that a
GPU step is a few kernel launches, and its loop decides on the host every step anyway (which
positions to commit, whether the span's lines are complete for the early stop), so a captured step
and a device loop would save little; on the CPU, where it runs for most users, there is no graph.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from diffill.model.gpu import gpu_sampler
from diffill.model.gpu.static_step import StaticDenoiser

PARTS = ("router", "experts", "graph", "fused_head", "device_sampler")
MIN_CAPACITY = 256


@dataclass
class FastParts:
    """Which fast parts are on, and why each one that is off is off (part -> reason)."""
    graph: bool = True
    fused_head: bool = True
    device_sampler: bool = True
    off: dict[str, str] = field(default_factory=dict)

    def turn_off(self, part: str, reason: str) -> None:
        if part in ("graph", "fused_head", "device_sampler"):
            setattr(self, part, False)
        self.off.setdefault(part, reason)


def capacity_for(length: int) -> int:
    """Cache capacity of the step that serves a cache of `length` positions: a power of two >= 256."""
    cap = MIN_CAPACITY
    while cap < length:
        cap *= 2
    return cap


class FastDenoiser:
    def __init__(self, model, parts: FastParts, check_every: int = 2, keep: int = 3, log=None,
                 capture: bool | None = None):
        """capture: capture the steps as CUDA graphs while `parts.graph` is on (default: on CUDA)."""
        self.model, self.parts, self.check_every, self.keep = model, parts, check_every, keep
        self.capture = model.device.type == "cuda" if capture is None else capture
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._steps: OrderedDict[tuple, StaticDenoiser] = OrderedDict()

    def step_for(self, cache, canvas_length: int) -> StaticDenoiser:
        fused = self.parts.fused_head
        key = (capacity_for(cache.length), canvas_length, cache.batch_size, fused)
        step = self._steps.pop(key, None)
        if step is not None:
            step.bind(cache)
        else:
            capture = self.parts.graph and self.capture
            try:
                step = StaticDenoiser(self.model, cache, canvas_length, with_logits=not fused, capture=capture,
                                      capacity=key[0])
            except Exception as exc:  # a capture that worked at load may still fail (memory): go on eagerly
                if not capture:
                    raise
                self.parts.turn_off("graph", f"capture failed: {type(exc).__name__}: {exc}")
                self.log(f"diffill worker: the CUDA graph is off from now on: {self.parts.off['graph']}")
                step = StaticDenoiser(self.model, cache, canvas_length, with_logits=not fused, capture=False,
                                      capacity=key[0])
        self._steps[key] = step
        while len(self._steps) > self.keep:
            self._steps.popitem(last=False)
        return step

    def __call__(self, model, cache, b, c, settings, max_steps, gen, clamp, report, confidence_out=None):
        """One canvas of the uniform process over `cache`: `sampler._denoise_uniform`'s contract."""
        step = self.step_for(cache, c)
        fused = self.parts.fused_head
        return gpu_sampler.denoise_canvas(
            model, step, settings, max_steps, gen, check_every=self.check_every, fused=fused,
            draw="gumbel" if fused else "multinomial", clamp=clamp, report=report, confidence_out=confidence_out)


def uniform_denoiser(model, parts: FastParts, **kwargs) -> FastDenoiser | None:
    """What the Infiller should denoise the uniform process with: the fast path, or None (the
    reference) when the device sampler is off or the model uses the mask process."""
    if model.config.noise != "uniform" or not parts.device_sampler:
        return None
    return FastDenoiser(model, parts, **kwargs)
