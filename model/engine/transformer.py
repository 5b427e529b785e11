"""The DiffusionGemma text stack in plain PyTorch, used in its two modes.

- encoder: causal over the prompt, writes the prefix KV cache (sliding layers see a window of W tokens);
- decoder: bidirectional over the canvas plus the cache (which it reads, never writes), with
  self-conditioning on the previous step's logits.
All weights are shared between the modes (only the layer scalars exist twice, as in the checkpoint).

Letters: B batch, T new positions, S cached positions, C canvas length, H hidden size, V vocabulary,
E experts, K experts per token, D head dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffill import kernels
from diffill.kernels.moe_reference import gelu_tanh

from diffill.model.engine.config import LayerSpec, ModelConfig
from diffill.model.engine.kv_cache import KVCache


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * w, computed in fp32 (not the 1 + w form of Gemma 2/3)."""

    def __init__(self, dim: int, eps: float, with_scale: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if with_scale else None

    def forward(self, x):
        y = x.float()
        y = y * torch.pow(y.pow(2).mean(-1, keepdim=True) + self.eps, -0.5)
        if self.weight is not None:
            y = y * self.weight.float()
        return y.type_as(x)


def rope_inv_freq(spec: LayerSpec) -> torch.Tensor:
    """[D/2] inverse frequencies; "proportional" RoPE rotates only a fraction, the rest gets frequency 0."""
    d = spec.head_dim
    if spec.rope_fraction == 1.0:
        return 1.0 / (spec.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
    angles = int(spec.rope_fraction * d // 2)
    rotated = 1.0 / (spec.rope_theta ** (torch.arange(0, 2 * angles, 2, dtype=torch.float) / d))
    return torch.cat([rotated, torch.zeros(d // 2 - angles)])


def rope_cos_sin(inv_freq, positions, dtype):
    """positions [T] -> cos, sin [T, D] in dtype."""
    freqs = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x [B, T, h, D]; cos, sin [T, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: LayerSpec):
        super().__init__()
        h, d = cfg.hidden_size, spec.head_dim
        self.spec = spec
        self.num_heads = cfg.num_heads
        self.q_proj = nn.Linear(h, cfg.num_heads * d, bias=False)
        self.k_proj = nn.Linear(h, spec.num_kv_heads * d, bias=False)
        self.v_proj = None if spec.k_eq_v else nn.Linear(h, spec.num_kv_heads * d, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * d, h, bias=False)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.v_norm = RMSNorm(d, cfg.rms_norm_eps, with_scale=False)

    def qkv(self, x, cos, sin):
        """x [B, T, H] -> q [B, h, T, D], k and v [B, hkv, T, D]."""
        b, t, _ = x.shape
        d = self.spec.head_dim
        q = apply_rope(self.q_norm(self.q_proj(x).view(b, t, -1, d)), cos, sin)
        k_raw = self.k_proj(x).view(b, t, -1, d)
        v = self.v_norm(k_raw if self.v_proj is None else self.v_proj(x).view(b, t, -1, d))
        k = apply_rope(self.k_norm(k_raw), cos, sin)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def attend(self, q, k, v, mask):
        """q [B, h, T, D] over k, v [B, hkv, S, D]; mask [B, 1, T, S] additive or None. Scaling is 1."""
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0,
                                           enable_gqa=k.shape[1] != q.shape[1])
        b, _, t, _ = o.shape
        return self.o_proj(o.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    """Dense GeGLU MLP: down(gelu_tanh(gate x) * up x)."""

    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(gelu_tanh(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.hidden_size, cfg.num_experts, bias=False)
        self.scale = nn.Parameter(torch.ones(cfg.hidden_size))
        self.per_expert_scale = nn.Parameter(torch.ones(cfg.num_experts))


class Experts(nn.Module):
    """Expert weights as 3-D tensors (or quantised `kernels.quant.QuantWeight` objects after loading)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        e, i, h = cfg.num_experts, cfg.moe_intermediate_size, cfg.hidden_size
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h))  # gate rows, then up rows
        self.down_proj = nn.Parameter(torch.empty(e, h, i))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: LayerSpec):
        super().__init__()
        h, eps = cfg.hidden_size, cfg.rms_norm_eps
        self.top_k, self.eps = cfg.top_k, eps
        self.self_attn = Attention(cfg, spec)
        self.mlp = MLP(h, cfg.intermediate_size)
        self.router = Router(cfg)
        self.experts = Experts(cfg)
        for name in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm", "post_feedforward_layernorm_1",
                     "pre_feedforward_layernorm_2", "post_feedforward_layernorm_2"):
            setattr(self, name, RMSNorm(h, eps))
        # The checkpoint stores one scalar per layer for each mode.
        self.register_buffer("layer_scalar", torch.ones(1))
        self.register_buffer("encoder_layer_scalar", torch.ones(1))

    def forward(self, x, attn_out, encoder: bool):
        """x [B, T, H]; attn_out(normed x) -> attention output [B, T, H]."""
        h = x + self.post_attention_layernorm(attn_out(self.input_layernorm(x)))
        dense = self.post_feedforward_layernorm_1(self.mlp(self.pre_feedforward_layernorm(h)))
        flat = h.reshape(-1, h.shape[-1])                                     # [B*T, H]
        w, ids = kernels.route(flat, self.router.proj.weight, self.router.scale,
                               self.router.per_expert_scale, self.top_k, self.eps)
        moe = kernels.fused_moe(self.pre_feedforward_layernorm_2(flat), self.experts.gate_up_proj,
                                self.experts.down_proj, w, ids).reshape(h.shape)
        out = h + self.post_feedforward_layernorm(dense + self.post_feedforward_layernorm_2(moe))
        return out * (self.encoder_layer_scalar if encoder else self.layer_scalar)


class SelfConditioning(nn.Module):
    """Gated MLP on the previous step's soft embedding, added to the canvas embedding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pre_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, with_scale=False)
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, embeds, soft):
        if soft is None:  # first step: the signal is zero and so is the MLP of it (no biases)
            return self.post_norm(embeds)
        n = self.pre_norm(soft)
        return self.post_norm(embeds + self.down_proj(gelu_tanh(self.gate_proj(n)) * self.up_proj(n)))


def softcapped_logits(h, weight, cap: float | None):
    """The LM head: h [.., H] @ weight [V, H]^T -> fp32 logits [.., V], soft-capped tanh(z / cap) * cap."""
    logits = F.linear(h, weight).float()
    if cap is None:
        return logits
    if logits.requires_grad:  # training: autograd needs tanh's output intact
        return torch.tanh(logits / cap) * cap
    return logits.div_(cap).tanh_().mul_(cap)  # inference: in place, [B, C, V] is large


def additive_mask(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """bool mask -> additive mask (finite minimum, so fully masked padding rows stay finite)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min)


def decoder_window(cfg: ModelConfig, cache: KVCache, c: int, dtype):
    """What the decoder's layers read of the cache: per layer kind, the first cached position
    (sliding layers see the last W - 1, full layers all of them) and the additive mask [B, 1, 1, S_l + C]
    over those positions and the canvas, or None when nothing is masked. The canvas sees itself
    entirely; only cached padding is masked."""
    b, s = cache.batch_size, cache.length
    window = {"full_attention": 0, "sliding_attention": max(0, s - (cfg.sliding_window - 1))}
    masks = {}
    for kind, start in window.items():
        pad = cache.pad[:, start:]
        masks[kind] = None if not bool(pad.any()) else additive_mask(
            torch.cat([~pad, torch.ones(b, c, dtype=torch.bool, device=pad.device)], 1)[:, None, None, :], dtype)
    return window, masks


class DiffusionGemma(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tokenizer = None  # set by load_model
        self.generation = None  # GenerationSettings, set by load_model
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, spec) for spec in cfg.layers)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_conditioning = SelfConditioning(cfg)
        self.lm_head = None if cfg.tie_word_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        for i, spec in enumerate(cfg.layers):
            self.register_buffer(f"inv_freq_{i}", rope_inv_freq(spec), persistent=False)

    # -- pieces ---------------------------------------------------------------------------------
    @property
    def device(self):
        return self.embed_tokens.weight.device

    @property
    def dtype(self):
        return self.embed_tokens.weight.dtype

    def embed(self, ids):
        w = self.embed_tokens.weight
        return F.embedding(ids, w) * torch.tensor(self.config.hidden_size ** 0.5, dtype=w.dtype)

    @property
    def output_embedding(self) -> torch.Tensor:
        """[V, H]: the tied embedding, or lm_head's own weight when the checkpoint unties them."""
        return self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight

    def head(self, h):
        """Final hidden [.., H] -> fp32 soft-capped logits [.., V]."""
        return softcapped_logits(h, self.output_embedding, self.config.final_logit_softcapping)

    def _rope(self, positions, dtype):
        tables, out = {}, []
        for i, spec in enumerate(self.config.layers):
            key = (spec.head_dim, spec.rope_theta, spec.rope_fraction)
            if key not in tables:
                tables[key] = rope_cos_sin(getattr(self, f"inv_freq_{i}"), positions, dtype)
            out.append(tables[key])
        return out

    # -- encoder ----------------------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, cache: KVCache | None = None, pad_mask: torch.Tensor | None = None,
               return_hidden: bool = False):
        """Run the causal encoder over ids [B, T], appending to cache (a new one if None).

        pad_mask [B, T] (True at padding, e.g. left padding of a batch) keeps those keys invisible.
        Returns the cache, or (cache, final hidden [B, T, H]) with return_hidden.
        """
        cfg = self.config
        b, t = ids.shape
        cache = KVCache(cfg.num_layers) if cache is None else cache
        if cache.length and cache.batch_size != b:
            raise ValueError(f"cache holds batch {cache.batch_size}, ids have batch {b}")
        s0 = cache.length
        pad = torch.zeros(b, t, dtype=torch.bool, device=ids.device) if pad_mask is None else pad_mask.bool()
        cache.extend_pad(pad)
        s = cache.length
        x = self.embed(ids)
        ropes = self._rope(torch.arange(s0, s, device=ids.device), x.dtype)
        # allowed[b, 0, q, j]: causal (j <= s0 + q) and not padding; sliding layers also j > s0 + q - W
        q_pos = torch.arange(s0, s, device=ids.device)[:, None]
        k_pos = torch.arange(s, device=ids.device)[None, :]
        causal = (k_pos <= q_pos)[None, None] & ~cache.pad[:, None, None, :]
        masks = {"full_attention": additive_mask(causal, x.dtype),
                 "sliding_attention": additive_mask(causal & (k_pos > q_pos - cfg.sliding_window), x.dtype)}
        for i, layer in enumerate(self.layers):
            cos, sin = ropes[i]

            def attn_out(xn, i=i, layer=layer, cos=cos, sin=sin):
                q, k, v = layer.self_attn.qkv(xn, cos, sin)
                keys, values = cache.append(i, k, v)
                return layer.self_attn.attend(q, keys, values, masks[layer.self_attn.spec.kind])

            x = layer(x, attn_out, encoder=True)
        if return_hidden:
            return cache, self.norm(x)
        return cache

    # -- decoder ----------------------------------------------------------------------------------
    def soft_embedding(self, logits=None, probs=None):
        """Self-conditioning signal: softmax(logits) @ E * sqrt(H) (or probs @ E when already known)."""
        w = self.embed_tokens.weight
        p = (torch.softmax(logits, dim=-1, dtype=torch.float32) if probs is None else probs).to(w.dtype)
        return (p @ w) * torch.tensor(self.config.hidden_size ** 0.5, dtype=w.dtype)

    def denoise(self, canvas_ids: torch.Tensor, cache: KVCache, self_cond_logits: torch.Tensor | None = None,
                self_cond_probs: torch.Tensor | None = None):
        """One decoder pass: canvas [B, C] over the cache -> fp32 soft-capped logits [B, C, V].

        self_cond_probs = softmax(self_cond_logits) may be passed instead when the caller has it."""
        return self.head(self.decode_hidden(canvas_ids, cache, self_cond_logits, self_cond_probs))

    def decode_hidden(self, canvas_ids, cache: KVCache, self_cond_logits=None, self_cond_probs=None):
        c = canvas_ids.shape[1]
        if cache is None or cache.length == 0:
            raise ValueError("the decoder reads the encoder's cache: encode a prompt first")
        s = cache.length
        soft = None
        if self_cond_logits is not None or self_cond_probs is not None:
            soft = self.soft_embedding(self_cond_logits, self_cond_probs)
        x = self.self_conditioning(self.embed(canvas_ids), soft)
        ropes = self._rope(torch.arange(s, s + c, device=canvas_ids.device), x.dtype)
        window, masks = decoder_window(self.config, cache, c, x.dtype)
        for i, layer in enumerate(self.layers):
            cos, sin = ropes[i]
            kind = layer.self_attn.spec.kind

            def attn_out(xn, i=i, layer=layer, cos=cos, sin=sin, kind=kind):
                q, k, v = layer.self_attn.qkv(xn, cos, sin)
                start = window[kind]
                keys = torch.cat([cache.k[i][:, :, start:], k], dim=2)
                values = torch.cat([cache.v[i][:, :, start:], v], dim=2)
                return layer.self_attn.attend(q, keys, values, masks[kind])

            x = layer(x, attn_out, encoder=False)
        return self.norm(x)

    def num_parameters(self) -> int:
        n = 0
        for mod in self.modules():
            for p in mod.parameters(recurse=False):
                n += p.numel()
            if isinstance(mod, Experts) and not isinstance(mod.gate_up_proj, nn.Parameter):
                n += math.prod(mod.gate_up_proj.shape) + math.prod(mod.down_proj.shape)
        return n

