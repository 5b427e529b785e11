"""diffill.kernels: MoE routing and expert GEMMs.

`route` and `fused_moe` pick an implementation per call: the pure-PyTorch reference
(`moe_reference`) everywhere, the Triton kernels on CUDA once they exist. This package never
imports diffill.model or diffill.lsp.
"""
from .moe_reference import fused_moe, route

__all__ = ["route", "fused_moe"]
