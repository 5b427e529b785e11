"""Faults injected into the fast parts, to test the self-test and its fallbacks end to end.

DIFFILL_FAST_FAULTS="part=kind,..." (parts of fast_path.PARTS; kinds: "compile" and "capture" make the
part raise when it is called, "mismatch" makes it return wrong numbers) replaces the part's function
where the product calls it, for the whole process: the worker's self-test must then turn the part
off, and the text must come from its reference. Nothing is changed when the variable is unset.
"""
from __future__ import annotations

import os

import torch

ENV = "DIFFILL_FAST_FAULTS"
KINDS = ("compile", "capture", "mismatch")


def parse(spec: str) -> dict[str, str]:
    from diffill.model.gpu.fast_path import PARTS

    faults = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        part, _, kind = item.partition("=")
        if part not in PARTS or kind not in KINDS:
            raise ValueError(f"{ENV}: {item!r} is not PART=KIND (parts: {', '.join(PARTS)}; kinds: {', '.join(KINDS)})")
        faults[part] = kind
    return faults


def _raising(part: str, kind: str):
    def broken(*args, **kwargs):
        raise RuntimeError(f"injected {kind} error in {part}")
    return broken


def _shifted(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return (tokens + 1) % vocab


def install(faults: dict[str, str]) -> None:
    from diffill import kernels
    from diffill.model.gpu import gpu_sampler, static_step

    for part, kind in faults.items():
        if part in ("router", "experts"):
            module = kernels._triton_modules()[0 if part == "router" else 1]
            name = "route" if part == "router" else "fused_moe"
            real = getattr(module, name)
            if kind == "mismatch":
                def wrong(*args, real=real, part=part):
                    out = real(*args)
                    return (out[0] * 0.5, out[1]) if part == "router" else out * 1.5
                setattr(module, name, wrong)
            else:
                setattr(module, name, _raising(part, kind))
        elif part == "graph":
            if kind == "mismatch":
                real_forward = static_step.StaticDenoiser._forward

                def wrong_forward(self, real_forward=real_forward):
                    real_forward(self)
                    self.hidden.mul_(-1.0)
                    if self.logits is not None:
                        self.logits.mul_(-1.0)
                static_step.StaticDenoiser._forward = wrong_forward
            else:
                static_step.StaticDenoiser._capture = _raising(part, kind)
        elif part == "fused_head":
            real_head = gpu_sampler.fused_head
            if kind == "mismatch":
                def wrong_head(hidden, weight, *args, real_head=real_head, **kwargs):
                    st = real_head(hidden, weight, *args, **kwargs)
                    st.argmax = _shifted(st.argmax, weight.shape[0])
                    if st.sample is not None:
                        st.sample = _shifted(st.sample, weight.shape[0])
                    st.entropy = st.entropy + 1.0
                    st.soft = -st.soft
                    return st
                gpu_sampler.fused_head = wrong_head
            else:
                gpu_sampler.fused_head = _raising(part, kind)
        elif part == "device_sampler":
            real_loop = gpu_sampler.denoise_canvas
            if kind == "mismatch":
                def wrong_loop(model, *args, real_loop=real_loop, **kwargs):
                    tokens, steps = real_loop(model, *args, **kwargs)
                    return _shifted(tokens, model.config.vocab_size), steps
                gpu_sampler.denoise_canvas = wrong_loop
            else:
                gpu_sampler.denoise_canvas = _raising(part, kind)


def install_from_env() -> dict[str, str]:
    faults = parse(os.environ.get(ENV, ""))
    if faults:
        install(faults)
    return faults
