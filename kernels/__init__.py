"""diffill.kernels: MoE routing and expert GEMMs.

`route` and `fused_moe` pick an implementation per call:
- "auto" (default): the Triton kernels for CUDA tensors, the pure-PyTorch reference otherwise;
- "reference": always the reference (moe_reference.py);
- "triton": always the Triton kernels; on a machine without CUDA they run in Triton's interpreter
  (TRITON_INTERPRET=1 is set before the kernels are first imported), which is slow and meant for tests.
Choose with the environment variable DIFFILL_MOE_BACKEND or `set_backend(name)`; `set_backend(name, op)`
sets it for "route" or "fused_moe" alone (the worker's self-test turns off a kernel that failed).

The Triton kernels have no backward: when autograd needs gradients through these calls, "auto"
takes the reference and "triton" raises. Expert weights may be plain tensors or quant.QuantWeight
(fp8, int4). This package never imports
diffill.model or diffill.lsp, and imports Triton only when a Triton kernel is first used.
"""
import importlib.util
import os

import torch

from . import moe_reference
from .quant import QuantWeight, load_quant_weight

__all__ = ["route", "fused_moe", "set_backend", "get_backend", "BACKENDS", "OPS", "QuantWeight", "load_quant_weight"]

BACKENDS = ("auto", "reference", "triton")


def _checked(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown MoE backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


OPS = ("route", "fused_moe")
_backend = _checked(os.environ.get("DIFFILL_MOE_BACKEND", "auto") or "auto", "DIFFILL_MOE_BACKEND")
_op_backend: dict[str, str] = {}  # per-op overrides of _backend


def set_backend(name: str, op: str | None = None) -> None:
    """Force "reference" or "triton" for every call (or for one op of OPS), or "auto" to decide by
    device. Setting it for every call clears the per-op overrides."""
    global _backend
    _checked(name, "set_backend")
    if op is None:
        _backend = name
        _op_backend.clear()
    elif op in OPS:
        _op_backend[op] = name
    else:
        raise ValueError(f"set_backend: unknown op {op!r}; choose one of {', '.join(OPS)}")


def get_backend(op: str | None = None) -> str:
    return _op_backend.get(op, _backend) if op else _backend


def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def _needs_grad(tensors) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def _use_triton(op: str, t: torch.Tensor, *args) -> bool:
    backend = get_backend(op)
    if backend == "reference":
        return False
    if _needs_grad((t, *args)):
        if backend == "triton":
            raise RuntimeError("the MoE backend is 'triton' but gradients are needed and the Triton kernels have "
                               "no backward: run under torch.no_grad(), or use the 'auto' or 'reference' backend")
        return False
    if backend == "triton":
        if not _triton_installed():
            raise RuntimeError("the MoE backend is 'triton' but Triton is not installed: pip install triton, "
                               "or set DIFFILL_MOE_BACKEND=reference")
        if not t.is_cuda and torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("the MoE backend is 'triton' and the tensors are on the CPU: Triton runs CPU tensors "
                               "only in its interpreter; start with TRITON_INTERPRET=1 or move the tensors to CUDA")
        return True
    return t.is_cuda and _triton_installed()


def _triton_modules():
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")       # read when the kernels are defined
    from . import fused_moe_triton, route_triton
    return route_triton, fused_moe_triton


def route(h, proj, scale, per_expert_scale, top_k: int, eps: float):
    """Gemma 4 router. h: [M, H], proj: [E, H], scale: [H], per_expert_scale: [E].
    Returns (topk_weights [M, K] fp32, topk_ids [M, K] int32)."""
    if _use_triton("route", h, proj, scale, per_expert_scale):
        return _triton_modules()[0].route(h, proj, scale, per_expert_scale, top_k, eps)
    return moe_reference.route(h, proj, scale, per_expert_scale, top_k, eps)


def fused_moe(x, gate_up, down, topk_weights, topk_ids):
    """Experts: x [M, H], gate_up [E, 2I, H], down [E, H, I] (tensors or QuantWeight),
    topk_weights [M, K] fp32, topk_ids [M, K]. Returns [M, H] in x's dtype."""
    if _use_triton("fused_moe", x, gate_up, down, topk_weights):
        return _triton_modules()[1].fused_moe(x, gate_up, down, topk_weights, topk_ids)
    return moe_reference.fused_moe(x, gate_up, down, topk_weights, topk_ids)
