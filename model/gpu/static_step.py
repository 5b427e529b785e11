"""The decoder pass with fixed shapes, for CUDA-graph capture: static cache, static canvas.

`DiffusionGemma.decode_hidden` builds its keys by concatenating the cache with the canvas every step.
Here every layer owns one preallocated key and one value buffer, [B, hkv, S_l + C, D]: the first S_l
positions hold the part of a prefix cache the layer reads (the last W - 1 positions for sliding
layers, all of them for full layers, up to the buffers' capacity), the last C positions are the
canvas slot, written in place each step. Unused cache slots are masked, so a step built for a
capacity serves every cache up to it: `bind` copies a new cache, its masks and its RoPE tables into
the same buffers, and the captured graph replays for it (one capture per capacity and canvas length,
not per fill). Inputs live in fixed buffers too (`canvas` ids, `soft` the self-conditioning
embedding, zero on the first step: a zero signal gives exactly the no-signal path since the gated
MLP has no biases), so one step is the same kernels on the same addresses every time, with no host
syncs and no Python-side shape changes. On CUDA the step is captured once as a torch.cuda.CUDAGraph
and replayed; elsewhere it runs eagerly (same code).

Same math as `decode_hidden` (+ `head` when `with_logits`): tests/test_engine_static.py checks it.
Letters: B batch, C canvas length, S cached positions, H hidden size, V vocabulary, D head dim.
"""
from __future__ import annotations

import torch

from diffill.model.engine.kv_cache import KVCache
from diffill.model.engine.transformer import DiffusionGemma, additive_mask


class StaticDenoiser:
    def __init__(self, model: DiffusionGemma, cache: KVCache, canvas_length: int, with_logits: bool = True,
                 capture: bool | None = None, warmup: int = 2, capacity: int | None = None):
        """Buffers for caches of up to `capacity` positions (at least this cache's length), bound to
        `cache`; on CUDA (or capture=True) the step is captured once. `bind` puts another cache of
        the same batch size into the same buffers, so the captured graph serves it too."""
        if cache is None or cache.length == 0:
            raise ValueError("the decoder reads the encoder's cache: encode a prompt first")
        cfg = model.config
        self.model, self.with_logits = model, with_logits
        b, c = cache.batch_size, canvas_length
        self.capacity = max(cache.length, capacity or 0)
        dev, dt = model.device, model.dtype
        self.canvas = torch.zeros(b, c, dtype=torch.long, device=dev)            # input [B, C]
        self.soft = torch.zeros(b, c, cfg.hidden_size, dtype=dt, device=dev)     # input [B, C, H]
        self.hidden = torch.zeros(b, c, cfg.hidden_size, dtype=dt, device=dev)   # output [B, C, H]
        self.logits = torch.zeros(b, c, cfg.vocab_size, device=dev) if with_logits else None  # [B, C, V] fp32
        # per layer kind, how many cached positions its buffers hold: all (full) or the window (sliding)
        self.held = {"full_attention": self.capacity,
                     "sliding_attention": min(self.capacity, max(0, cfg.sliding_window - 1))}
        self.masks = {kind: torch.zeros(b, 1, 1, n + c, dtype=dt, device=dev) for kind, n in self.held.items()}
        self.k, self.v = [], []
        for i, layer in enumerate(model.layers):
            n = self.held[layer.self_attn.spec.kind]
            for bufs, src in ((self.k, cache.k[i]), (self.v, cache.v[i])):
                bufs.append(torch.zeros(b, src.shape[1], n + c, src.shape[3], dtype=src.dtype, device=dev))
        tables = model._rope(torch.arange(c, device=dev), dt)
        self.ropes = [(cos.clone(), sin.clone()) for cos, sin in tables]
        self.bind(cache)
        self.graph = None
        if capture is None:
            capture = self.canvas.is_cuda
        if capture:
            self._capture(warmup)

    def bind(self, cache: KVCache) -> None:
        """Copy what the decoder reads of `cache` into the buffers: per layer, its cached keys and values
        (the last W - 1 positions on sliding layers), the additive masks (cached padding and the unused
        end of each buffer are masked) and the canvas's RoPE tables (positions S .. S + C - 1)."""
        cfg, c = self.model.config, self.canvas.shape[1]
        b, s = cache.batch_size, cache.length
        if s == 0 or s > self.capacity or b != self.canvas.shape[0]:
            raise ValueError(f"this step holds caches of batch {self.canvas.shape[0]} and up to {self.capacity} "
                             f"positions, not batch {b} with {s}")
        first = {"full_attention": 0, "sliding_attention": max(0, s - (cfg.sliding_window - 1))}
        for kind, n in self.held.items():
            allowed = torch.zeros(b, n + c, dtype=torch.bool, device=self.canvas.device)  # [B, S_l + C]
            allowed[:, : s - first[kind]] = ~cache.pad[:, first[kind]:]
            allowed[:, n:] = True                                             # the canvas sees itself
            self.masks[kind].copy_(additive_mask(allowed[:, None, None, :], self.masks[kind].dtype))
        for i, layer in enumerate(self.model.layers):
            f = first[layer.self_attn.spec.kind]
            self.k[i][:, :, : s - f].copy_(cache.k[i][:, :, f:])
            self.v[i][:, :, : s - f].copy_(cache.v[i][:, :, f:])
        for (cos, sin), (new_cos, new_sin) in zip(self.ropes, self.model._rope(
                torch.arange(s, s + c, device=self.canvas.device), self.soft.dtype)):
            cos.copy_(new_cos)
            sin.copy_(new_sin)

    @torch.inference_mode()
    def _forward(self):
        m, c = self.model, self.canvas.shape[1]
        x = m.self_conditioning(m.embed(self.canvas), self.soft)
        for i, layer in enumerate(m.layers):
            cos, sin = self.ropes[i]
            kind = layer.self_attn.spec.kind

            def attn_out(xn, i=i, layer=layer, cos=cos, sin=sin, kind=kind):
                q, k, v = layer.self_attn.qkv(xn, cos, sin)
                keys, values = self.k[i], self.v[i]
                keys[:, :, -c:].copy_(k)
                values[:, :, -c:].copy_(v)
                return layer.self_attn.attend(q, keys, values, self.masks[kind])

            x = layer(x, attn_out, encoder=False)
        self.hidden.copy_(m.norm(x))
        if self.with_logits:
            self.logits.copy_(m.head(self.hidden))

    def _capture(self, warmup: int):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up compiles the Triton kernels and settles the allocator
            for _ in range(warmup):
                self._forward()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._forward()

    def run(self, canvas: torch.Tensor | None = None, soft: torch.Tensor | None = None):
        """One decoder pass. canvas [B, C] ids and soft [B, C, H] (None: zero, i.e. no self-conditioning)
        are copied into the input buffers when given. Returns the logits buffer [B, C, V] (fp32,
        soft-capped) or, without logits, the final hidden buffer [B, C, H]: both are overwritten by
        the next run."""
        if canvas is not None:
            self.canvas.copy_(canvas)
        if soft is not None:
            self.soft.copy_(soft)
        elif canvas is not None:
            self.soft.zero_()
        if self.graph is not None:
            self.graph.replay()
        else:
            self._forward()
        return self.logits if self.with_logits else self.hidden
