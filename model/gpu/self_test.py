"""The fast parts, each run once on a small input against the reference it replaces, before the worker
says it is ready. A part that fails to compile, to capture or to match is turned off (its reference
serves instead) and the reason is kept for the status; nothing here raises.

Parts, in order (each check uses the loaded model's own weights and dtype, so "per dtype" is the
dtype and expert form this worker runs):
- router: the Triton router kernel against `moe_reference.route` (the dense routing matrix);
- experts: the Triton expert GEMMs (bf16, fp8 or int4 weights, as loaded) against `moe_reference.fused_moe`;
- graph: a `StaticDenoiser` against `DiffusionGemma.denoise`, eagerly, then captured (on CUDA); a
  static step that is wrong even eagerly also turns the device sampler off (it runs on that step);
- device_sampler: `gpu_sampler.denoise_canvas` against `sampler._denoise_uniform` with the same draws;
- fused_head: `fused_head` against the reference head's argmax, entropy and self-conditioning signal.
Router and experts are checked only where the Triton kernels would run (CUDA tensors); graph capture
only on CUDA (elsewhere the static step is checked eagerly). Tolerances are relative to the
reference's magnitude and loose enough for bf16 rounding, tight enough for a wrong kernel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from diffill import kernels
from diffill.kernels import moe_reference
from diffill.model.engine import sampler as reference_sampler
from diffill.model.engine.config import GenerationSettings
from diffill.model.gpu import fused_head as fused_head_module
from diffill.model.gpu import gpu_sampler
from diffill.model.gpu.fast_path import PARTS, FastParts
from diffill.model.gpu.static_step import StaticDenoiser

TOLERANCE = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 4e-2}
SAMPLER_AGREEMENT = 0.8  # share of canvas positions where the device loop and the reference agree


class Mismatch(Exception):
    pass


@dataclass
class Verdict:
    part: str
    ok: bool
    detail: str   # "ok (error 1.2e-3)", "off (setting)", "not used here (...)", or why it failed
    ms: float = 0.0


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.float(), want.float()
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    return float((got - want).abs().max() / want.abs().max().clamp(min=1e-6))


def _close(got, want, tol: float, what: str) -> str:
    err = _relative_error(got, want)
    if not err <= tol:
        raise Mismatch(f"{what} differs from the reference by {err:.3g} (tolerance {tol:g})")
    return f"ok (error {err:.2g})"


def _moe_layer(model):
    return model.layers[0]


def _inputs(model, m: int, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(m, model.config.hidden_size, generator=g).to(model.device, model.dtype)


def check_router(model) -> str:
    layer, cfg = _moe_layer(model), model.config
    h = _inputs(model, 37, 1)
    args = (h, layer.router.proj.weight, layer.router.scale, layer.router.per_expert_scale, layer.top_k, layer.eps)
    got_w, got_ids = kernels._triton_modules()[0].route(*args)
    want_w, want_ids = moe_reference.route(*args)

    def dense(w, ids):  # [M, E]: the routing weights, whatever order the top k come in
        return torch.zeros(h.shape[0], cfg.num_experts, device=h.device).scatter_(1, ids.long(), w.float())

    return _close(dense(got_w, got_ids), dense(want_w, want_ids), TOLERANCE[model.dtype], "the router kernel")


def check_experts(model) -> str:
    layer = _moe_layer(model)
    x = _inputs(model, 16, 2)
    w, ids = moe_reference.route(x, layer.router.proj.weight, layer.router.scale, layer.router.per_expert_scale,
                                 layer.top_k, layer.eps)
    gate_up, down = layer.experts.gate_up_proj, layer.experts.down_proj
    got = kernels._triton_modules()[1].fused_moe(x, gate_up, down, w, ids)
    want = moe_reference.fused_moe(x, gate_up, down, w, ids)
    form = getattr(gate_up, "format", str(gate_up.dtype).replace("torch.", ""))
    return _close(got, want, TOLERANCE[model.dtype], f"the expert kernel ({form} weights)")


def _small_cache(model, t: int = 24):
    g = torch.Generator(device="cpu").manual_seed(3)
    ids = torch.randint(0, model.config.vocab_size, (1, t), generator=g).to(model.device)
    return model.encode(ids)


def _canvas(model, c: int, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (1, c), generator=g).to(model.device)


class StaticStepWrong(Mismatch):
    """The static step is wrong even without a graph: nothing that runs on it may be used."""


def check_graph(model, capture: bool) -> str:
    """The static step eagerly (bound to two caches in turn), then, with capture, the captured graph."""
    cache, other = _small_cache(model), _small_cache(model, 29)
    canvas = _canvas(model, 16, 4)
    tol = TOLERANCE[model.dtype]
    step = StaticDenoiser(model, cache, 16, capture=False, capacity=32)
    try:
        verdict = _close(step.run(canvas), model.denoise(canvas, cache), tol, "the static step")
        step.bind(other)  # a second cache in the same buffers: what every fill does
        _close(step.run(canvas), model.denoise(canvas, other), tol, "the static step bound to a new cache")
    except Mismatch as exc:
        raise StaticStepWrong(str(exc)) from None
    if not capture:
        return verdict + ", eager: no CUDA graph on this device"
    step = StaticDenoiser(model, cache, 16, capture=True, capacity=32)
    verdict = _close(step.run(canvas).clone(), model.denoise(canvas, cache), tol, "the captured step")
    step.bind(other)
    _close(step.run(canvas), model.denoise(canvas, other), tol, "the captured step bound to a new cache")
    return verdict


def check_fused_head(model) -> str:
    cache = _small_cache(model)
    hidden = model.decode_hidden(_canvas(model, 16, 5), cache)[0]                 # [C, H]
    w, cap, temp = model.output_embedding, model.config.final_logit_softcapping, 0.7
    st = gpu_sampler.fused_head(hidden, w, cap, temp, chunk=max(1, w.shape[0] // 4))  # what the loop calls
    z = fused_head_module.processed_logits(hidden, w, cap, temp)                  # [C, V] fp32
    probs = torch.softmax(z, -1)
    tol = TOLERANCE[model.dtype]
    top2 = z.topk(2, -1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-3 * top2[:, 0].abs().clamp(min=1)
    if not bool((st.argmax[clear] == z.argmax(-1)[clear]).all()):
        raise Mismatch("the fused head's argmax differs from the reference's")
    _close(st.entropy, reference_sampler._entropy(z, probs), tol, "the fused head's entropy")
    return _close(st.soft, model.soft_embedding(probs=probs), tol, "the fused head's self-conditioning signal")


def check_device_sampler(model) -> str:
    cache = _small_cache(model)
    settings = GenerationSettings(confidence_threshold=0.0)  # every step runs: the whole loop is compared
    steps = 6
    gen = torch.Generator(device=model.device).manual_seed(7)
    want, _ = reference_sampler._denoise_uniform(model, cache, 1, 16, settings, steps, gen, None,
                                                 lambda *a: None)
    step = StaticDenoiser(model, cache, 16, capture=False)
    gen = torch.Generator(device=model.device).manual_seed(7)
    got, got_steps = gpu_sampler.denoise_canvas(model, step, settings, steps, gen)
    agree = float((got == want).float().mean())
    if got_steps != steps or agree < SAMPLER_AGREEMENT:
        raise Mismatch(f"the device sampler agrees with the reference on {agree:.0%} of the canvas "
                       f"after {got_steps} of {steps} steps")
    return f"ok ({agree:.0%} of the canvas as the reference)"


def run(model, off: set[str] | frozenset = frozenset(), log=None,
        check_kernels: bool | None = None) -> tuple[FastParts, list[Verdict]]:
    """Check every fast part this device would use; returns the parts to use and a verdict per part.

    off: parts the settings turn off ("all" for every one). Router or expert kernels that fail are
    turned off in diffill.kernels for the rest of the process. check_kernels: check the Triton
    kernels (default: on CUDA; True elsewhere runs them in Triton's interpreter, for tests)."""
    log = log or (lambda message: None)
    parts, verdicts = FastParts(), []
    cuda = model.device.type == "cuda"
    kernels_here = cuda if check_kernels is None else check_kernels
    if "all" in off:
        off = set(PARTS)

    def decide(part: str, check, applies: bool = True, why_not: str = "") -> None:
        started = time.perf_counter()
        if part in off:
            parts.turn_off(part, "off (setting)")
            verdicts.append(Verdict(part, False, "off (setting)"))
        elif not applies:
            verdicts.append(Verdict(part, True, f"not used here ({why_not})"))
        else:
            try:
                with torch.inference_mode():
                    detail = check()
                verdicts.append(Verdict(part, True, detail, (time.perf_counter() - started) * 1000))
                return
            except StaticStepWrong as exc:
                reason = str(exc)
                parts.turn_off("device_sampler", "it runs on the static decoder step, which failed its check")
            except Mismatch as exc:
                reason = str(exc)
            except Exception as exc:  # a compile error, a capture error, out of memory, ...
                reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            parts.turn_off(part, reason)
            verdicts.append(Verdict(part, False, reason, (time.perf_counter() - started) * 1000))
            log(f"diffill worker: fast part {part} is off, its reference serves instead: {reason}")
        if part in ("router", "experts") and part in parts.off:
            kernels.set_backend("reference", op="route" if part == "router" else "fused_moe")

    uniform = model.config.noise == "uniform"
    kernel_why = "the Triton kernels run on CUDA tensors only; the reference serves"
    decide("router", lambda: check_router(model), kernels_here and kernels.get_backend("route") != "reference",
           kernel_why)
    decide("experts", lambda: check_experts(model),
           kernels_here and kernels.get_backend("fused_moe") != "reference", kernel_why)
    sampler_why = "the mask process runs the reference loop"
    decide("graph", lambda: check_graph(model, capture=cuda), uniform and "device_sampler" not in off,
           "the device sampler is off" if uniform else sampler_why)
    decide("device_sampler", lambda: check_device_sampler(model), uniform and parts.device_sampler,
           parts.off.get("device_sampler", sampler_why))
    decide("fused_head", lambda: check_fused_head(model), uniform and parts.device_sampler,
           "the device sampler is off" if uniform else sampler_why)
    return parts, verdicts


def degraded(verdicts: list[Verdict]) -> str | None:
    """'graph: capture failed ...; fused_head: ...' for the parts that failed (not those turned off
    by a setting), or None."""
    failed = [f"{v.part}: {v.detail}" for v in verdicts if not v.ok and v.detail != "off (setting)"]
    return "; ".join(failed) or None
