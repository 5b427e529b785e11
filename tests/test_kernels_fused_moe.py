"""The grouped expert GEMMs (Triton, interpreter on CPU) against moe_reference.fused_moe, for
plain, fp8 and int4 weights, with the edge cases of routing: experts without tokens, fewer
tokens than a block, top_k = 1 and top_k = E."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from diffill.kernels import moe_reference  # noqa: E402
from diffill.kernels.fused_moe_triton import default_config, fused_moe  # noqa: E402
from diffill.kernels.quant import quantize  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def random_ids(M, K, E, g):
    return torch.stack([torch.randperm(E, generator=g)[:K] for _ in range(M)]).int()


def moe_inputs(M, H, I, E, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, H, generator=g)
    gate_up = torch.randn(E, 2 * I, H, generator=g) / H ** 0.5
    down = torch.randn(E, H, I, generator=g) / I ** 0.5
    ids = random_ids(M, K, E, g)
    weights = torch.rand(M, K, generator=g)
    return x, gate_up, down, weights, ids


def on_device(*ts):
    return [t.to(DEVICE) for t in ts]


def expected(x, gate_up, down, weights, ids):
    """The reference in fp32 on the values the kernel reads (weights dequantised)."""
    gate_up = gate_up if isinstance(gate_up, torch.Tensor) else gate_up.dequantize()
    down = down if isinstance(down, torch.Tensor) else down.dequantize()
    return moe_reference.fused_moe(x.float(), gate_up.float(), down.float(), weights, ids)


def assert_close_to(out, ref, rel):
    assert out.shape == ref.shape
    err = (out.float().cpu() - ref).abs().max().item()
    assert err <= rel * ref.abs().max().item(), f"max error {err:.3g} vs scale {ref.abs().max().item():.3g}"


# (M, H, I, E, K): several blocks per expert, M below one block, top_k = 1, top_k = E
SHAPES = [(40, 64, 32, 8, 4), (3, 32, 16, 8, 2), (21, 64, 32, 4, 1), (10, 32, 16, 4, 4)]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("M,H,I,E,K", SHAPES)
def test_fused_moe_matches_reference(M, H, I, E, K, dtype):
    x, gate_up, down, weights, ids = moe_inputs(M, H, I, E, K)
    x, gate_up, down = x.to(dtype), gate_up.to(dtype), down.to(dtype)
    out = fused_moe(*on_device(x, gate_up, down, weights, ids))
    assert out.dtype == dtype
    assert_close_to(out, expected(x, gate_up, down, weights, ids), TOLERANCE[dtype])


@pytest.mark.parametrize("fmt,group", [("fp8", 0), ("int4", 32), ("int4", 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_moe_reads_quantised_weights(fmt, group, dtype):
    # I = 48 with group 32 and group 128: K tiles inside a group, and a short last group (ceil(K / G)).
    # (int4 needs BK >= 32 on a GPU: its dots run over BK / 2.)
    x, gate_up, down, weights, ids = moe_inputs(24, 64, 48, 8, 3, seed=1)
    x = x.to(dtype)
    gate_up, down = quantize(gate_up, fmt, group, dtype=dtype), quantize(down, fmt, group, dtype=dtype)
    out = fused_moe(x.to(DEVICE), gate_up.to(DEVICE), down.to(DEVICE), weights.to(DEVICE), ids.to(DEVICE))
    assert_close_to(out, expected(x, gate_up, down, weights, ids), TOLERANCE[dtype])
    # and the reference path reads the same QuantWeight
    assert_close_to(moe_reference.fused_moe(x, gate_up, down, weights, ids),
                    expected(x, gate_up, down, weights, ids), TOLERANCE[dtype])


def test_experts_without_tokens_contribute_nothing():
    x, gate_up, down, weights, _ = moe_inputs(5, 32, 16, 8, 2)
    ids = torch.tensor([[0, 5], [5, 0], [0, 5], [5, 0], [0, 5]], dtype=torch.int32)
    gate_up[[1, 2, 3, 4, 6, 7]] = float("nan")                               # never read
    down[[1, 2, 3, 4, 6, 7]] = float("nan")
    out = fused_moe(*on_device(x, gate_up, down, weights, ids))
    assert torch.isfinite(out).all()
    assert_close_to(out, expected(x, gate_up, down, weights, ids), 1e-5)


def test_block_sizes_change_nothing_but_rounding():
    x, gate_up, down, weights, ids = moe_inputs(40, 64, 32, 8, 4, seed=2)
    ref = expected(x, gate_up, down, weights, ids)
    small = {"BLOCK_M": 16, "gemm1": {"BLOCK_N": 16, "BLOCK_K": 16}, "gemm2": {"BLOCK_N": 32, "BLOCK_K": 16}}
    large = {"BLOCK_M": 64, "gemm1": {"BLOCK_N": 32, "BLOCK_K": 64}, "gemm2": {"BLOCK_N": 64, "BLOCK_K": 32}}
    for config in (small, large):
        assert_close_to(fused_moe(*on_device(x, gate_up, down, weights, ids), config=config), ref, 1e-5)


def test_deterministic_mode_repeats_bit_for_bit():
    x, gate_up, down, weights, ids = (t.half() if t.is_floating_point() and i < 3 else t
                                      for i, t in enumerate(moe_inputs(33, 64, 32, 8, 8, seed=3)))
    args = on_device(x, gate_up, down, weights, ids)
    first = fused_moe(*args, deterministic=True)
    assert torch.equal(first, fused_moe(*args, deterministic=True))
    assert_close_to(first, fused_moe(*args, deterministic=False).float().cpu(), 2e-3)


def test_deterministic_mode_follows_torch_setting():
    x, gate_up, down, weights, ids = on_device(*moe_inputs(6, 32, 16, 4, 2))
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        out = fused_moe(x, gate_up, down, weights, ids)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(out, fused_moe(x, gate_up, down, weights, ids, deterministic=True))


def test_no_tokens_gives_an_empty_output():
    x, gate_up, down, weights, ids = moe_inputs(1, 32, 16, 4, 2)
    out = fused_moe(*on_device(x[:0], gate_up, down, weights[:0], ids[:0]))
    assert out.shape == (0, 32)


def test_mismatched_shapes_are_refused():
    x, gate_up, down, weights, ids = moe_inputs(2, 32, 16, 4, 2)
    with pytest.raises(ValueError, match="gate_up"):
        fused_moe(x, gate_up, down.transpose(1, 2), weights, ids)


def test_interpreter_default_config_uses_big_blocks():
    assert default_config(256, "bf16", interpret=True)["gemm1"]["BLOCK_K"] >= 64
