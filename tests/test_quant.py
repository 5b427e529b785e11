"""Quantised expert weights: layout contract, round-trip error bounds, safetensors round trip."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from safetensors.torch import load_file, save_file

from diffill.kernels import quant
from diffill.kernels.quant import QuantWeight, load_quant_weight, pack_int4, quantize, unpack_int4


def expert_weights(E=3, N=24, K=320, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(E, N, K, generator=g) * 0.02
    w[0, 0] *= 50                                           # one row with outliers
    w[1, 1] = 0                                             # an all-zero row
    return w


def test_fp8_layout_and_round_trip_bound():
    w = expert_weights()
    q = quantize(w, "fp8")
    assert q.data.dtype == torch.float8_e4m3fn and q.data.shape == (3, 24, 320)
    assert q.scale.dtype == torch.float32 and q.scale.shape == (3, 24)
    err = (q.dequantize() - w).abs()
    bound = w.abs() / 16 + q.scale.unsqueeze(-1) / 1024     # half an e4m3 ulp, normal or subnormal
    assert (err <= bound * (1 + 1e-6)).all()
    assert (q.dequantize()[1, 1] == 0).all()
    rows_max = q.dequantize().abs().amax(-1)
    torch.testing.assert_close(rows_max, w.abs().amax(-1))  # each row's maximum is exact


def test_int4_layout_and_round_trip_bound():
    w = expert_weights()
    q = quantize(w, "int4", group_size=128)                 # K = 320: groups of 128, 128 and 64
    assert q.data.dtype == torch.uint8 and q.data.shape == (3, 24, 160)
    assert q.scale.shape == (3, 24, 3)
    s = q.scale.float().repeat_interleave(128, dim=-1)[..., :320]
    err = (q.dequantize() - w).abs()
    assert (err <= s / 2 * (1 + 1e-5)).all()
    group_max = torch.nn.functional.pad(w.abs(), (0, 64)).view(3, 24, 3, 128).amax(-1)
    mapped = (q.scale.float() <= group_max / 7 * (1 + 2 ** -8)) | (group_max == 0)  # |w|max -> 7, bf16-rounded
    assert mapped.all()
    assert (q.dequantize()[1, 1] == 0).all()


def test_int4_relative_error_on_gaussian_weights_is_about_a_tenth():
    w = torch.randn(2, 64, 256, generator=torch.Generator().manual_seed(1))
    rel = (quantize(w, "int4").dequantize() - w).norm() / w.norm()
    assert 0.05 < rel < 0.15
    rel8 = (quantize(w, "fp8").dequantize() - w).norm() / w.norm()
    assert rel8 < 0.03


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-8, 7), min_size=2, max_size=64).filter(lambda v: len(v) % 2 == 0))
def test_int4_packing_is_lossless(values):
    q = torch.tensor(values, dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == len(values) // 2
    assert torch.equal(unpack_int4(packed), q)
    assert int(packed[0]) == (values[0] + 8) | ((values[1] + 8) << 4)  # column 2j low nibble, 2j + 1 high


def test_dequantize_one_expert_and_compute_dtype():
    w = expert_weights()
    q = quantize(w.bfloat16(), "int4")
    assert q.dtype == torch.bfloat16 and q.dequantize(2).dtype == torch.bfloat16
    assert torch.equal(q.dequantize(2), q.dequantize()[2])
    assert q.nbytes == 3 * 24 * 160 + 3 * 24 * 3 * 2


def test_safetensors_round_trip_through_load_quant_weight(tmp_path):
    w = expert_weights()
    for fmt in quant.FORMATS:
        q = quantize(w, fmt)
        key = "model.decoder.layers.0.experts.gate_up_proj"
        save_file({key: q.data, key + "_scale": q.scale}, str(tmp_path / f"{fmt}.safetensors"))
        back = load_file(str(tmp_path / f"{fmt}.safetensors"))
        config = {"quantization_config": quant.quantization_config(fmt)}
        loaded = load_quant_weight(back[key], back[key + "_scale"], config, torch.float32)
        assert loaded.shape == (3, 24, 320) and loaded.format == fmt
        assert torch.equal(loaded.dequantize(), q.dequantize())


def test_contract_violations_are_explained():
    w = expert_weights()
    with pytest.raises(ValueError, match="unknown quantisation format"):
        quantize(w, "int3")
    with pytest.raises(ValueError, match="K must be even"):
        quantize(w[..., :-1], "int4")
    q = quantize(w, "fp8")
    with pytest.raises(ValueError, match="needs data"):
        QuantWeight(q.data, q.scale[:, :-1], "fp8", 0, q.shape, torch.float32)
    with pytest.raises(ValueError, match="unknown quantisation format"):
        load_quant_weight(q.data, q.scale, {"quant_method": "diffill", "format": "nf4"}, torch.float32)
    with pytest.raises(ValueError, match="quant_method"):
        load_quant_weight(q.data, q.scale, {"quant_method": "gptq", "format": "int4"}, torch.float32)


def test_quantization_config_matches_the_documented_entry():
    assert quant.quantization_config("int4") == {"quant_method": "diffill", "format": "int4", "group_size": 128,
                                                 "targets": ["experts"]}
    assert math.ceil(704 / 128) == quantize(torch.zeros(1, 2, 704), "int4").scale.shape[-1]
