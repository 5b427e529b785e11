"""The output projection fused with what the sampler and self-conditioning read from it.

The reference head writes fp32 logits [B, C, V] (256 x 262,144 x 4 bytes = 268 MB per step), then the
sampler reads them several times (temperature, softmax, multinomial, argmax, entropy, soft embedding).
Here the vocabulary is walked in chunks of `chunk` rows of the embedding matrix, with an online
softmax as in flash attention: per position a running maximum m, s = sum exp(z - m),
t = sum exp(z - m) * z, the running argmax, a Gumbel-max sample, and the soft embedding numerator
sum exp(z - m) * E_v, all rescaled when m grows. Only [N, chunk] logits exist at any time.

z are the processed logits: soft-capped, then divided by the temperature. From the accumulators:
    log-sum-exp = m + log s;  entropy = log-sum-exp - t / s;  soft = (sum p_v E_v) * sqrt(H).

Sampling is Gumbel-max (argmax of z + g, g = -log(-log(u)), u uniform): the same distribution as
multinomial over softmax(z), but not the same draws as torch.multinomial. `gumbel_chunks` makes the
noise chunk by chunk from a generator, so an unfused sampler that concatenates the same chunks draws
the same tokens (the hook the sampler tests use).
Letters: N positions (B * C), H hidden size, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from diffill.model.engine.transformer import softcapped_logits

DEFAULT_CHUNK = 16384


@dataclass
class HeadStats:
    argmax: torch.Tensor    # [N] long
    sample: torch.Tensor    # [N] long (Gumbel-max), or None without noise
    entropy: torch.Tensor   # [N] fp32
    lse: torch.Tensor       # [N] fp32 log-sum-exp of z
    max_z: torch.Tensor     # [N] fp32 z at the argmax: p(argmax) = exp(max_z - lse)
    soft: torch.Tensor      # [N, H] softmax(z) @ E * sqrt(H), in E's dtype (the self-conditioning input)


def gumbel_chunks(n: int, v: int, chunk: int, generator=None, device=None):
    """Gumbel noise [n, <=chunk] for each vocabulary chunk in order, drawn from `generator`."""
    tiny = torch.finfo(torch.float32).tiny
    for v0 in range(0, v, chunk):
        u = torch.rand(n, min(chunk, v - v0), generator=generator, device=device)
        yield -torch.log(-torch.log(u.clamp_(min=tiny)))


def processed_logits(hidden, weight, softcap, temperature):
    """The reference: fp32 [N, V] z = softcap(hidden @ E^T) / temperature (temperature a float or [N, 1])."""
    return softcapped_logits(hidden, weight, softcap) / temperature


def fused_head(hidden: torch.Tensor, weight: torch.Tensor, softcap: float | None, temperature,
               noise=None, chunk: int = DEFAULT_CHUNK) -> HeadStats:
    """hidden [N, H], weight [V, H] (the tied embedding), temperature a float or fp32 [N, 1];
    noise: an iterator of Gumbel chunks [N, chunk] (gumbel_chunks) or None for no sample."""
    n, h = hidden.shape
    v = weight.shape[0]
    dev = hidden.device
    m = torch.full((n, 1), float("-inf"), device=dev)
    s = torch.zeros(n, 1, device=dev)
    t = torch.zeros(n, 1, device=dev)
    acc = torch.zeros(n, h, device=dev)                                   # sum exp(z - m) E_v, fp32
    best = torch.full((n,), float("-inf"), device=dev)
    arg = torch.zeros(n, dtype=torch.long, device=dev)
    gbest = torch.full((n,), float("-inf"), device=dev) if noise is not None else None
    garg = torch.zeros(n, dtype=torch.long, device=dev) if noise is not None else None
    for v0 in range(0, v, chunk):
        w = weight[v0: v0 + chunk]                                        # [c, H]
        z = processed_logits(hidden, w, softcap, temperature)            # [N, c] fp32
        cmax, cidx = z.max(-1)
        better = cmax > best                                              # strict: the first maximum wins
        best, arg = torch.where(better, cmax, best), torch.where(better, cidx + v0, arg)
        if noise is not None:
            gmax, gidx = (z + next(noise)).max(-1)
            gb = gmax > gbest
            gbest, garg = torch.where(gb, gmax, gbest), torch.where(gb, gidx + v0, garg)
        m_new = torch.maximum(m, cmax[:, None])
        r = torch.exp(m - m_new)                                          # [N, 1] rescale of the old sums
        e = torch.exp(z - m_new)                                          # [N, c]
        s = s * r + e.sum(-1, keepdim=True)
        t = t * r + (e * z).sum(-1, keepdim=True)
        acc = acc * r + (e.to(weight.dtype) @ w).float()
        m = m_new
    lse = (m + torch.log(s)).squeeze(-1)
    entropy = lse - (t / s).squeeze(-1)
    soft = (acc / s).to(weight.dtype) * torch.tensor(h ** 0.5, dtype=weight.dtype)
    return HeadStats(arg, garg, entropy, lse, best, soft)
