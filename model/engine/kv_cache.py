"""The prefix KV cache that the encoder writes and the decoder reads.

Every layer keeps the keys and values of all encoded positions (sliding layers too: the window is
applied by the attention mask, so `truncate(n)` can go back to any earlier position and the cache of
a longest common prefix stays reusable). Letters: B batch, H kv heads, T cached positions, D head dim.
"""
from __future__ import annotations

import torch


class KVCache:
    def __init__(self, num_layers: int):
        self.k: list[torch.Tensor | None] = [None] * num_layers  # [B, H, T, D] each
        self.v: list[torch.Tensor | None] = [None] * num_layers
        self.pad: torch.Tensor | None = None  # [B, T] bool, True where the position is padding

    @property
    def length(self) -> int:
        return 0 if self.pad is None else self.pad.shape[1]

    @property
    def batch_size(self) -> int:
        return 0 if self.pad is None else self.pad.shape[0]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add new positions of one layer; returns all keys and values of that layer."""
        if self.k[layer] is None:
            self.k[layer], self.v[layer] = k, v
        else:
            self.k[layer] = torch.cat([self.k[layer], k], dim=2)
            self.v[layer] = torch.cat([self.v[layer], v], dim=2)
        return self.k[layer], self.v[layer]

    def extend_pad(self, pad: torch.Tensor) -> None:
        self.pad = pad if self.pad is None else torch.cat([self.pad, pad], dim=1)

    def truncate(self, n: int) -> "KVCache":
        """Keep the first n positions (in place); returns self."""
        if n < 0 or n > self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} positions to {n}")
        for i in range(len(self.k)):
            if self.k[i] is not None:
                self.k[i] = self.k[i][:, :, :n]
                self.v[i] = self.v[i][:, :, :n]
        if self.pad is not None:
            self.pad = self.pad[:, :n]
        return self

    def clone(self) -> "KVCache":
        c = KVCache(len(self.k))
        c.k = [None if t is None else t.clone() for t in self.k]
        c.v = [None if t is None else t.clone() for t in self.v]
        c.pad = None if self.pad is None else self.pad.clone()
        return c
