"""The MoE experts in two grouped Triton GEMMs. Same signature and results as
moe_reference.fused_moe; weights may be plain tensors or quant.QuantWeight (fp8, int4).

Letters: M tokens, H hidden, E experts, I expert intermediate size, K experts per token,
S = M * K slots, BM/BN/BK the block sizes.

1. align: slots grouped by expert, each expert's run padded to BM rows (align.py).
2. GEMM 1: for each BM block (one expert) and BN columns of I, gather the block's token rows of x,
   multiply by the expert's gate rows and up rows (two accumulators over H), and write
   gelu_tanh(gate) * up to `inter` [P, I] in x's dtype (the GeGLU fused in the epilogue).
3. GEMM 2: for each BM block and BN columns of H, inter @ down[e]^T, times the slot's routing
   weight, added into the token's output row with fp32 atomics: the top-k sum needs no pass over
   [S, H]. Deterministic mode writes each slot's row to an [S, H] buffer instead and sums over
   K in order (it follows torch.are_deterministic_algorithms_enabled() unless told).

Weights are read as [BK, BN] tiles of the [N, K] rows of one expert. fp8 tiles are converted to
x's dtype before the dot and the per-channel scale multiplies the accumulator in the epilogue;
int4 tiles are unpacked into the even and odd columns of K (x is loaded as two strided halves, so
nothing is interleaved) and each BK tile's dot is scaled by its group's scale (BK divides G).
Programs run with the M blocks fastest, so the blocks of one expert read a weight tile while it
is still in L2.

The launcher picks a config (block sizes, warps, stages) from the table for (E, H, I, device,
weight format) by the nearest token count; the kernels have no policy. Tables are measurements:
tune.py writes one on the GPU it tunes for, into configs/ (or $DIFFILL_MOE_CONFIG_DIR). Without a
table for the device the launcher uses default_config and logs once that it does.
"""
import functools
import json
import logging
import os
from pathlib import Path

import torch
import triton
import triton.language as tl

from .align import align
from .quant import QuantWeight

PLAIN, FP8, INT4 = 0, 1, 2
CONFIG_DIR = Path(__file__).parent / "configs"
logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- kernels

@triton.jit
def _gelu_tanh(x):
    # 0.5 x (1 + tanh(z)) == x * sigmoid(2 z), z = sqrt(2 / pi) (x + 0.044715 x^3)
    z = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return x * tl.sigmoid(2.0 * z)


@triton.jit
def _dot(a, b, DOT_FP32: tl.constexpr):
    if DOT_FP32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _load_a(a_rows, row_mask, k0, K, BLOCK_K: tl.constexpr, FORMAT: tl.constexpr):
    """Rows of activations for one K tile; for int4 its even and odd columns as two halves."""
    if FORMAT == 2:
        k = k0 + 2 * tl.arange(0, BLOCK_K // 2)
        a0 = tl.load(a_rows[:, None] + k[None, :], mask=row_mask[:, None] & (k[None, :] < K), other=0.0)
        a1 = tl.load(a_rows[:, None] + k[None, :] + 1, mask=row_mask[:, None] & (k[None, :] + 1 < K), other=0.0)
    else:
        k = k0 + tl.arange(0, BLOCK_K)
        a0 = tl.load(a_rows[:, None] + k[None, :], mask=row_mask[:, None] & (k[None, :] < K), other=0.0)
        a1 = a0
    return a0, a1


@triton.jit
def _tile_dot(a0, a1, w_rows, n_mask, s_rows, k0, K, stride_sg,
              BLOCK_K: tl.constexpr, FORMAT: tl.constexpr, GROUP: tl.constexpr, DOT_FP32: tl.constexpr):
    """[BM, BN] partial product of one K tile with the weight rows w_rows (pointers, [BN])."""
    if FORMAT == 2:
        j = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        packed = tl.load(w_rows[None, :] + j[:, None], mask=n_mask[None, :] & (j[:, None] < K // 2), other=0x88)
        lo = ((packed & 0xF).to(tl.int32) - 8).to(a0.dtype)                 # columns k0 + 2j'
        hi = ((packed >> 4).to(tl.int32) - 8).to(a0.dtype)                  # columns k0 + 2j' + 1
        s = tl.load(s_rows + (k0 // GROUP) * stride_sg, mask=n_mask, other=0.0).to(tl.float32)
        return (_dot(a0, lo, DOT_FP32) + _dot(a1, hi, DOT_FP32)) * s[None, :]
    else:
        k = k0 + tl.arange(0, BLOCK_K)
        b = tl.load(w_rows[None, :] + k[:, None], mask=n_mask[None, :] & (k[:, None] < K), other=0.0)
        return _dot(a0, b.to(a0.dtype), DOT_FP32)


@triton.jit
def _gemm1_geglu_kernel(x_ptr, w_ptr, s_ptr, inter_ptr, sorted_slots_ptr, block_expert_ptr,
                        H, I, top_k, num_slots,
                        stride_xm, stride_we, stride_wn, stride_se, stride_sn, stride_sg, stride_im,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        FORMAT: tl.constexpr, GROUP: tl.constexpr, DOT_FP32: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    e = tl.load(block_expert_ptr + pid_m)
    if e < 0:
        return
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slots = tl.load(sorted_slots_ptr + rows)
    row_mask = slots < num_slots
    a_rows = x_ptr + (slots // top_k).to(tl.int64) * stride_xm
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = n < I
    w_e = w_ptr + e.to(tl.int64) * stride_we
    s_e = s_ptr + e.to(tl.int64) * stride_se
    gate_rows, up_rows = w_e + n * stride_wn, w_e + (n + I) * stride_wn
    gate_s, up_s = s_e + n * stride_sn, s_e + (n + I) * stride_sn
    acc_gate = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        a0, a1 = _load_a(a_rows, row_mask, k0, H, BLOCK_K, FORMAT)
        acc_gate += _tile_dot(a0, a1, gate_rows, n_mask, gate_s, k0, H, stride_sg, BLOCK_K, FORMAT, GROUP, DOT_FP32)
        acc_up += _tile_dot(a0, a1, up_rows, n_mask, up_s, k0, H, stride_sg, BLOCK_K, FORMAT, GROUP, DOT_FP32)
    if FORMAT == 1:
        acc_gate *= tl.load(gate_s, mask=n_mask, other=0.0)[None, :]
        acc_up *= tl.load(up_s, mask=n_mask, other=0.0)[None, :]
    out = _gelu_tanh(acc_gate) * acc_up
    tl.store(inter_ptr + rows[:, None].to(tl.int64) * stride_im + n[None, :],
             out.to(inter_ptr.dtype.element_ty), mask=row_mask[:, None] & n_mask[None, :])


@triton.jit
def _gemm2_down_kernel(inter_ptr, w_ptr, s_ptr, out_ptr, topk_weights_ptr, sorted_slots_ptr, block_expert_ptr,
                       H, I, top_k, num_slots,
                       stride_im, stride_we, stride_wn, stride_se, stride_sn, stride_sg, stride_om,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                       FORMAT: tl.constexpr, GROUP: tl.constexpr, DOT_FP32: tl.constexpr,
                       PER_SLOT: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    e = tl.load(block_expert_ptr + pid_m)
    if e < 0:
        return
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slots = tl.load(sorted_slots_ptr + rows)
    row_mask = slots < num_slots
    a_rows = inter_ptr + rows.to(tl.int64) * stride_im
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = n < H
    w_rows = w_ptr + e.to(tl.int64) * stride_we + n * stride_wn
    s_rows = s_ptr + e.to(tl.int64) * stride_se + n * stride_sn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, I, BLOCK_K):
        a0, a1 = _load_a(a_rows, row_mask, k0, I, BLOCK_K, FORMAT)
        acc += _tile_dot(a0, a1, w_rows, n_mask, s_rows, k0, I, stride_sg, BLOCK_K, FORMAT, GROUP, DOT_FP32)
    if FORMAT == 1:
        acc *= tl.load(s_rows, mask=n_mask, other=0.0)[None, :]
    acc *= tl.load(topk_weights_ptr + slots, mask=row_mask, other=0.0)[:, None]
    mask = row_mask[:, None] & n_mask[None, :]
    if PER_SLOT:
        tl.store(out_ptr + slots[:, None].to(tl.int64) * stride_om + n[None, :], acc, mask=mask)
    else:
        tl.atomic_add(out_ptr + (slots // top_k)[:, None].to(tl.int64) * stride_om + n[None, :], acc, mask=mask,
                      sem="relaxed")


# ----------------------------------------------------------------------------------------- configs

def weight_format(w) -> str:
    """Config-table name of a weight's format: "bf16" (any plain float weight), "fp8" or "int4"."""
    return w.format if isinstance(w, QuantWeight) else "bf16"


@functools.lru_cache(maxsize=None)
def device_name(device=None) -> str:
    """The name configs are filed under, e.g. NVIDIA_H100_80GB_HBM3; "cpu" when interpreting."""
    if device is not None and torch.device(device).type != "cuda":
        return "cpu"
    return torch.cuda.get_device_name(device).replace(" ", "_")


def config_file_name(E: int, H: int, I: int, device: str, fmt: str) -> str:
    return f"E={E},H={H},I={I},device={device},dtype={fmt}.json"


@functools.lru_cache(maxsize=None)
def load_config_table(E: int, H: int, I: int, device: str, fmt: str):
    """{M: config} from configs/ (or $DIFFILL_MOE_CONFIG_DIR), or None when there is no file (said
    once per table: the result is cached)."""
    folder = Path(os.environ.get("DIFFILL_MOE_CONFIG_DIR", CONFIG_DIR))
    path = folder / config_file_name(E, H, I, device, fmt)
    if not path.is_file():
        logger.warning("Using default MoE config. Performance might be sub-optimal! Config file not found at %s "
                       "(python -m diffill.kernels.tune writes it on this GPU)", path)
        return None
    table = json.loads(path.read_text())
    return {int(m): cfg for m, cfg in table.items() if not m.startswith("_")}


def default_config(M: int, fmt: str, interpret: bool = False) -> dict:
    """Config when no table matches. The interpreter runs one program at a time: big blocks."""
    if interpret:
        return {"BLOCK_M": 16, "gemm1": {"BLOCK_N": 64, "BLOCK_K": 64}, "gemm2": {"BLOCK_N": 64, "BLOCK_K": 64}}
    block_m = 16 if M <= 64 else 32 if M <= 512 else 64
    gemm = {"BLOCK_N": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 4 if fmt == "bf16" else 3}
    return {"BLOCK_M": block_m, "gemm1": dict(gemm), "gemm2": dict(gemm)}


def get_config(M: int, E: int, H: int, I: int, fmt: str, device: str) -> dict:
    """The table entry with the nearest token count (the smaller on a tie), else the default."""
    table = load_config_table(E, H, I, device, fmt)
    if table:
        return table[min(table, key=lambda m: (abs(m - M), m))]
    return default_config(M, fmt, interpret=device == "cpu")


# ----------------------------------------------------------------------------------------- launcher

def _weight_args(w):
    """(data, scale, FORMAT, GROUP, weight strides, scale strides) for a tensor or QuantWeight."""
    if isinstance(w, QuantWeight):
        data, scale = w.data.contiguous(), w.scale.contiguous()
        if w.format == "fp8":
            return data, scale, FP8, 1, data.stride(), (scale.stride(0), scale.stride(1), 0)
        return data, scale, INT4, w.group_size, data.stride(), scale.stride()
    data = w.contiguous()
    return data, data, PLAIN, 1, data.stride(), (0, 0, 0)


def _block_k(gemm_cfg: dict, w) -> int:
    """int4 needs each K tile inside one scale group: BK divides the group size."""
    bk = gemm_cfg["BLOCK_K"]
    if isinstance(w, QuantWeight) and w.format == "int4":
        while w.group_size % bk:
            bk //= 2
        if bk < 32 and w.data.is_cuda:
            raise ValueError(f"int4 group size {w.group_size} is too small for the GPU kernels: their K tiles "
                             "must be at least 32 wide and inside one group (use a multiple of 32, such as 128)")
    return bk


def fused_moe(x, gate_up, down, topk_weights, topk_ids, *, config: dict = None, deterministic: bool = None):
    """x: [M, H], gate_up: [E, 2I, H], down: [E, H, I] (tensors or QuantWeight),
    topk_weights: [M, K] fp32, topk_ids: [M, K] int. Returns [M, H] in x's dtype."""
    M, H = x.shape
    E, two_i, H1 = gate_up.shape
    I = two_i // 2
    if H1 != H or tuple(down.shape) != (E, H, I):
        raise ValueError(f"shapes disagree: x {tuple(x.shape)}, gate_up {tuple(gate_up.shape)}, "
                         f"down {tuple(down.shape)}; want gate_up [E, 2I, H] and down [E, H, I]")
    top_k = topk_ids.shape[1]
    if M == 0:
        return torch.zeros_like(x)
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    if config is None:
        config = get_config(M, E, H, I, weight_format(gate_up), device_name(x.device))
    routing = align(topk_ids, E, config["BLOCK_M"])
    inter = gemm1(x.contiguous(), gate_up, routing, top_k, config)
    out = gemm2(inter, down, topk_weights, routing, M, top_k, config, deterministic)
    return out.to(x.dtype)


def _dot_fp32(t: torch.Tensor) -> bool:
    """fp32 inputs use exact fp32 dots; the interpreter's bf16 dot is wrong, so bf16 goes via fp32 there."""
    return t.dtype == torch.float32 or (not t.is_cuda and t.dtype == torch.bfloat16)


def gemm1(x, gate_up, routing, top_k: int, config: dict):
    """GEMM 1 with GeGLU: inter [P, I] (x's dtype), row p for position p of sorted_slots."""
    sorted_slots, block_expert, _ = routing
    M, H = x.shape
    I = gate_up.shape[1] // 2
    inter = torch.empty(sorted_slots.numel(), I, dtype=x.dtype, device=x.device)
    w, s, fmt, group, ws, ss = _weight_args(gate_up)
    cfg = config["gemm1"]
    _gemm1_geglu_kernel[(block_expert.numel(), triton.cdiv(I, cfg["BLOCK_N"]))](
        x, w, s, inter, sorted_slots, block_expert, H, I, top_k, M * top_k,
        x.stride(0), ws[0], ws[1], ss[0], ss[1], ss[2], inter.stride(0),
        BLOCK_M=config["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=_block_k(cfg, gate_up), FORMAT=fmt, GROUP=group,
        DOT_FP32=_dot_fp32(x), **_launch_opts(cfg))
    return inter


def gemm2(inter, down, topk_weights, routing, M: int, top_k: int, config: dict, deterministic: bool = False):
    """GEMM 2 with the routing weight and the top-k sum: fp32 [M, H]."""
    sorted_slots, block_expert, _ = routing
    H, I = down.shape[1], down.shape[2]
    S = M * top_k
    topk_weights = topk_weights.reshape(-1).float().contiguous()
    if deterministic:
        out = torch.empty(S, H, dtype=torch.float32, device=inter.device)
    else:
        out = torch.zeros(M, H, dtype=torch.float32, device=inter.device)
    w, s, fmt, group, ws, ss = _weight_args(down)
    cfg = config["gemm2"]
    _gemm2_down_kernel[(block_expert.numel(), triton.cdiv(H, cfg["BLOCK_N"]))](
        inter, w, s, out, topk_weights, sorted_slots, block_expert, H, I, top_k, S,
        inter.stride(0), ws[0], ws[1], ss[0], ss[1], ss[2], out.stride(0),
        BLOCK_M=config["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=_block_k(cfg, down), FORMAT=fmt, GROUP=group,
        DOT_FP32=_dot_fp32(inter), PER_SLOT=deterministic, **_launch_opts(cfg))
    if deterministic:
        out = out.view(M, top_k, H).sum(dim=1)
    return out


def _launch_opts(cfg: dict) -> dict:
    return {k: cfg[k] for k in ("num_warps", "num_stages") if k in cfg}
