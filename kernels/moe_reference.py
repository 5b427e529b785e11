"""Pure-PyTorch reference for the MoE block: the router and the expert GEMMs.

Letters: M tokens, H hidden size, E experts, I expert intermediate size, K experts per token.
These functions define the semantics; the Triton kernels in this package must match them.
"""
import torch
import torch.nn.functional as F


def router_probs(h, proj, scale, eps: float):
    """Gemma 4 router's distribution over the experts: softmax(proj (rmsnorm(h) * scale * H^-0.5)).

    h: [M, H] (un-normed residual stream), proj: [E, H], scale: [H]. Returns [M, E] fp32.
    """
    x = h.float()
    x = x * torch.pow(x.pow(2).mean(-1, keepdim=True) + eps, -0.5)        # RMSNorm, no weight
    x = (x.to(h.dtype) * scale * h.shape[-1] ** -0.5)
    scores = F.linear(x, proj)                                               # [M, E]
    return torch.softmax(scores, dim=-1, dtype=torch.float32)


def route(h, proj, scale, per_expert_scale, top_k: int, eps: float):
    """Gemma 4 router: the top-k experts of router_probs, their weights renormalised to 1, each
    multiplied by its expert's scale.

    h: [M, H] (un-normed residual stream), proj: [E, H], scale: [H], per_expert_scale: [E].
    Returns (topk_weights [M, K] fp32, topk_ids [M, K] int32).
    """
    probs = router_probs(h, proj, scale, eps)
    w, ids = torch.topk(probs, k=top_k, dim=-1)                              # [M, K]
    w = w / w.sum(dim=-1, keepdim=True)
    w = w * per_expert_scale[ids].float()
    return w, ids.to(torch.int32)


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def expert_weight(w, e: int):
    """Expert e's matrix from a plain [E, N, K] tensor or a quant.QuantWeight (dequantised)."""
    return w[e] if isinstance(w, torch.Tensor) else w.dequantize(e)


def fused_moe(x, gate_up, down, topk_weights, topk_ids):
    """Experts: out[m] = sum_k w[m,k] * down[e](gelu_tanh(gate[e] x) * up[e] x), e = ids[m,k].

    x: [M, H], gate_up: [E, 2I, H] (gate rows then up rows), down: [E, H, I], each a tensor or a
    quant.QuantWeight, topk_weights: [M, K] fp32, topk_ids: [M, K] int. Returns [M, H] in x's dtype.
    Each token meets an expert at most once and experts are summed in order: deterministic.
    """
    M, H = x.shape
    E = gate_up.shape[0]
    out = torch.zeros(M, H, dtype=torch.float32, device=x.device)
    flat_ids = topk_ids.reshape(-1).long()                                   # [M*K]
    order = torch.argsort(flat_ids, stable=True)
    counts = torch.bincount(flat_ids, minlength=E).tolist()
    token_of = order // topk_ids.shape[1]                                    # slot -> token
    start = 0
    for e, n in enumerate(counts):
        if n == 0:
            continue
        slots = order[start:start + n]
        rows = token_of[start:start + n]
        start += n
        w1 = expert_weight(gate_up, e).to(x.dtype)                           # [2I, H]
        w2 = expert_weight(down, e).to(x.dtype)                              # [H, I]
        gate, up = F.linear(x[rows], w1).chunk(2, dim=-1)                    # [n, I] each
        y = F.linear(gelu_tanh(gate) * up, w2)                               # [n, H]
        w = topk_weights.reshape(-1)[slots].unsqueeze(-1)                    # [n, 1]
        out.index_add_(0, rows, y.float() * w)
    return out.to(x.dtype)
