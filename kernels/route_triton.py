"""Gemma 4's router as one Triton kernel: RMSNorm (no weight), * scale * H^-0.5, linear to E
scores, softmax, top-k, renormalise, * per_expert_scale. Same signature and results as
moe_reference.route.

Each program takes BLOCK_M tokens: one pass over H for the RMS, a second for the scores
[BLOCK_M, E] (fp32 accumulation), then K rounds of argmax over the row. The softmax denominator
cancels in the top-k renormalisation, so only exp(s - max) is formed. Ties go to the lower expert
index. The scores are computed in fp32 whatever the input dtype, so in bf16 an expert whose score
ties the k-th within bf16 rounding may differ from the reference, which rounds the normed
activations to bf16 first.
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _route_kernel(h_ptr, proj_ptr, scale_ptr, expert_scale_ptr, weights_ptr, ids_ptr,
                  M, H, E, eps, root,
                  stride_hm, stride_pe, stride_wm, stride_im,
                  TOP_K: tl.constexpr, K_PAD: tl.constexpr, E_PAD: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_mask = rows < M
    experts = tl.arange(0, E_PAD)
    expert_mask = experts < E

    sumsq = tl.zeros([BLOCK_M], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_H):
        k = k0 + tl.arange(0, BLOCK_H)
        h = tl.load(h_ptr + rows[:, None] * stride_hm + k[None, :], mask=row_mask[:, None] & (k[None, :] < H),
                    other=0.0).to(tl.float32)
        sumsq += tl.sum(h * h, axis=1)
    rstd = 1.0 / tl.sqrt(sumsq / H + eps)

    scores = tl.zeros([BLOCK_M, E_PAD], dtype=tl.float32)
    for k0 in range(0, H, BLOCK_H):
        k = k0 + tl.arange(0, BLOCK_H)
        k_mask = k < H
        h = tl.load(h_ptr + rows[:, None] * stride_hm + k[None, :], mask=row_mask[:, None] & k_mask[None, :],
                    other=0.0).to(tl.float32)
        s = tl.load(scale_ptr + k, mask=k_mask, other=0.0).to(tl.float32)
        xn = h * rstd[:, None] * (s * root)[None, :]
        p = tl.load(proj_ptr + experts[None, :] * stride_pe + k[:, None],
                    mask=expert_mask[None, :] & k_mask[:, None], other=0.0).to(tl.float32)   # [BLOCK_H, E_PAD]
        scores += tl.dot(xn, p, input_precision="ieee")

    scores = tl.where(expert_mask[None, :], scores, float("-inf"))
    p = tl.exp(scores - tl.max(scores, axis=1)[:, None])                     # softmax numerators, in [0, 1]
    cols = tl.arange(0, K_PAD)
    top_w = tl.zeros([BLOCK_M, K_PAD], dtype=tl.float32)
    top_i = tl.zeros([BLOCK_M, K_PAD], dtype=tl.int32)
    for j in tl.static_range(TOP_K):
        best = tl.max(p, axis=1)
        idx = tl.min(tl.where(p == best[:, None], experts[None, :], E_PAD), axis=1)
        top_w = tl.where(cols[None, :] == j, best[:, None], top_w)
        top_i = tl.where(cols[None, :] == j, idx[:, None], top_i)
        p = tl.where(experts[None, :] == idx[:, None], -1.0, p)              # taken
    out_mask = row_mask[:, None] & (cols[None, :] < TOP_K)
    top_w = top_w / tl.sum(top_w, axis=1)[:, None]
    top_w = top_w * tl.load(expert_scale_ptr + top_i, mask=out_mask, other=0.0).to(tl.float32)
    tl.store(weights_ptr + rows[:, None] * stride_wm + cols[None, :], top_w, mask=out_mask)
    tl.store(ids_ptr + rows[:, None] * stride_im + cols[None, :], top_i, mask=out_mask)


def route(h, proj, scale, per_expert_scale, top_k: int, eps: float, *, block_m: int = 16, block_h: int = None):
    """h: [M, H], proj: [E, H], scale: [H], per_expert_scale: [E].
    Returns (topk_weights [M, K] fp32, topk_ids [M, K] int32)."""
    M, H = h.shape
    E = proj.shape[0]
    if not 1 <= top_k <= E:
        raise ValueError(f"top_k must be in [1, {E}], got {top_k}")
    h = h.contiguous()
    proj = proj.contiguous()
    weights = torch.empty(M, top_k, dtype=torch.float32, device=h.device)
    ids = torch.empty(M, top_k, dtype=torch.int32, device=h.device)
    if M == 0:
        return weights, ids
    if block_h is None:                     # the interpreter prefers few big tiles, the GPU fewer registers
        block_h = 64 if h.is_cuda else 128
    _route_kernel[(triton.cdiv(M, block_m),)](
        h, proj, scale.contiguous(), per_expert_scale.contiguous(), weights, ids,
        M, H, E, eps, H ** -0.5,
        h.stride(0), proj.stride(0), weights.stride(0), ids.stride(0),
        TOP_K=top_k, K_PAD=max(2, triton.next_power_of_2(top_k)), E_PAD=max(16, triton.next_power_of_2(E)),
        BLOCK_M=block_m, BLOCK_H=block_h, num_warps=4)
    return weights, ids
