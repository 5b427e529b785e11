"""Quantised expert weights: fp8 e4m3 per output channel, and int4 with group scales (w4a16).

Letters: E experts, N output features (rows), K input features (the reduced dimension).

Formats
- "fp8": `data` float8_e4m3fn [E, N, K]; `scale` fp32 [E, N]; w = data * scale[..., None].
  The scale maps each row's absolute maximum to 448, the largest finite e4m3 value.
- "int4": `data` uint8 [E, N, K // 2], two signed 4-bit values per byte along K: byte j holds
  column 2j in its low nibble and column 2j + 1 in its high nibble, each stored as q + 8 with
  q in [-8, 7]; `scale` bfloat16 [E, N, ceil(K / G)] for groups of G = group_size columns (the last
  group is shorter when G does not divide K, as for the 704-wide down projection);
  w = q * scale[..., k // G]. The scale maps each group's absolute maximum to 7.

On disk (safetensors) the quantised tensor keeps the original key and its scale is stored under
`key + "_scale"`; config.json carries
`{"quantization_config": {"quant_method": "diffill", "format": ..., "group_size": G, "targets": ["experts"]}}`.

Round-trip error (see tests/test_quant.py): fp8 |w - w'| <= |w| / 16 + scale / 1024 per element;
int4 |w - w'| <= scale / 2 per element, that is 1/14 of the group's absolute maximum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FORMATS = ("fp8", "int4")
QUANT_METHOD = "diffill"
FP8_MAX = 448.0           # largest finite float8_e4m3fn
INT4_MAX = 7              # q in [-8, 7]; the scale maps |w|max to 7
DEFAULT_GROUP_SIZE = 128


@dataclass
class QuantWeight:
    """A quantised stack of expert matrices, logically [E, N, K] in `dtype`."""
    data: torch.Tensor
    scale: torch.Tensor
    format: str
    group_size: int
    shape: tuple
    dtype: torch.dtype

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        check(self)

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def nbytes(self) -> int:
        """Bytes a kernel streams to read every expert: data plus scales."""
        return self.data.numel() * self.data.element_size() + self.scale.numel() * self.scale.element_size()

    def expert_nbytes(self) -> int:
        return self.nbytes // self.shape[0]

    def to(self, device) -> "QuantWeight":
        return QuantWeight(self.data.to(device), self.scale.to(device), self.format, self.group_size,
                           self.shape, self.dtype)

    def dequantize(self, expert=None) -> torch.Tensor:
        """The weights in `dtype`: [E, N, K], or [N, K] for one expert index."""
        data = self.data if expert is None else self.data[expert]
        scale = self.scale if expert is None else self.scale[expert]
        if self.format == "fp8":
            w = data.float() * scale.float().unsqueeze(-1)
        else:
            K = self.shape[2]
            q = unpack_int4(data).float()                                    # [..., N, K]
            s = scale.float().repeat_interleave(self.group_size, dim=-1)[..., :K]
            w = q * s
        return w.to(self.dtype)


def check(w: QuantWeight) -> None:
    """Raise ValueError when the tensors do not match the format's layout."""
    E, N, K = w.shape
    if w.format == "fp8":
        want_data, want_scale = (E, N, K), (E, N)
        if w.data.dtype != torch.float8_e4m3fn:
            raise ValueError(f"fp8 weights must be float8_e4m3fn, got {w.data.dtype}")
    elif w.format == "int4":
        if w.group_size <= 0 or K % 2:
            raise ValueError(f"int4 needs an even K and a positive group size, got K={K}, group_size={w.group_size}")
        want_data, want_scale = (E, N, K // 2), (E, N, math.ceil(K / w.group_size))
        if w.data.dtype != torch.uint8:
            raise ValueError(f"int4 weights must be packed into uint8, got {w.data.dtype}")
    else:
        raise ValueError(f"unknown quantisation format {w.format!r}; expected one of {FORMATS}")
    if tuple(w.data.shape) != want_data or tuple(w.scale.shape) != want_scale:
        raise ValueError(f"{w.format} weight of shape {w.shape} needs data {want_data} and scale {want_scale}, "
                         f"got {tuple(w.data.shape)} and {tuple(w.scale.shape)}")


def quantize(w: torch.Tensor, format: str, group_size: int = DEFAULT_GROUP_SIZE, dtype=None) -> QuantWeight:
    """Quantise expert weights w [E, N, K]; `dtype` (default w.dtype) is what dequantize returns."""
    if w.dim() != 3:
        raise ValueError(f"expert weights must be [E, N, K], got shape {tuple(w.shape)}")
    dtype = dtype or w.dtype
    if format == "fp8":
        pieces = [_quantize_fp8(w[e]) for e in range(w.shape[0])]           # one expert at a time
        data, scale = torch.stack([p[0] for p in pieces]), torch.stack([p[1] for p in pieces])
        return QuantWeight(data, scale, "fp8", 0, tuple(w.shape), dtype)
    if format == "int4":
        if w.shape[2] % 2:
            raise ValueError(f"int4 packs two columns per byte: K must be even, got {w.shape[2]}")
        pieces = [_quantize_int4(w[e], group_size) for e in range(w.shape[0])]
        data, scale = torch.stack([p[0] for p in pieces]), torch.stack([p[1] for p in pieces])
        return QuantWeight(data, scale, "int4", group_size, tuple(w.shape), dtype)
    raise ValueError(f"unknown quantisation format {format!r}; expected one of {FORMATS}")


def _quantize_fp8(w):                                                       # w: [N, K]
    w = w.float()
    amax = w.abs().amax(dim=-1)
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (w / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


def _quantize_int4(w, group_size):                                          # w: [N, K]
    N, K = w.shape
    groups = math.ceil(K / group_size)
    padded = torch.zeros(N, groups * group_size, dtype=torch.float32, device=w.device)
    padded[:, :K] = w.float()
    g = padded.view(N, groups, group_size)
    amax = g.abs().amax(dim=-1)
    scale = torch.where(amax > 0, amax / INT4_MAX, torch.ones_like(amax)).to(torch.bfloat16)
    q = torch.round(g / scale.float().unsqueeze(-1)).clamp(-8, INT4_MAX)
    q = q.view(N, groups * group_size)[:, :K]
    return pack_int4(q.to(torch.int8)), scale


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Signed values in [-8, 7], [..., K] -> uint8 [..., K // 2] (column 2j low nibble, 2j + 1 high)."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [..., K // 2] -> int8 [..., K] in [-8, 7]."""
    lo = (packed & 0xF).to(torch.int8) - 8
    hi = (packed >> 4).to(torch.int8) - 8
    return torch.stack([lo, hi], dim=-1).flatten(-2)


def quantization_config(format: str, group_size: int = DEFAULT_GROUP_SIZE) -> dict:
    """The config.json entry a quantised checkpoint carries."""
    if format not in FORMATS:
        raise ValueError(f"unknown quantisation format {format!r}; expected one of {FORMATS}")
    return {"quant_method": QUANT_METHOD, "format": format, "group_size": group_size, "targets": ["experts"]}


def load_quant_weight(data: torch.Tensor, scale: torch.Tensor, qcfg: dict, dtype: torch.dtype) -> QuantWeight:
    """Wrap a checkpoint's quantised tensor and its `_scale` companion.

    qcfg: the config's "quantization_config" (or the whole config dict holding it);
    dtype: the compute dtype (what the model runs in).
    """
    qcfg = qcfg.get("quantization_config", qcfg)
    if qcfg.get("quant_method", QUANT_METHOD) != QUANT_METHOD:
        raise ValueError(f"quantization_config has quant_method {qcfg.get('quant_method')!r}; "
                         f"this loader reads only {QUANT_METHOD!r} checkpoints")
    format = qcfg.get("format")
    if format == "fp8":
        return QuantWeight(data, scale.float(), "fp8", 0, tuple(data.shape), dtype)
    if format == "int4":
        E, N, half = data.shape
        return QuantWeight(data, scale, "int4", int(qcfg.get("group_size", DEFAULT_GROUP_SIZE)), (E, N, 2 * half),
                           dtype)
    raise ValueError(f"unknown quantisation format {format!r} in quantization_config; expected one of {FORMATS}")
