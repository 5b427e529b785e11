"""The compiled kernels at DiffusionGemma's real shape against the reference (needs CUDA).

The interpreter does not enforce hardware limits (dot sizes, shared memory, register pressure),
so the kernels must also be checked compiled, with the default config and this GPU's tuned tables."""
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

E, H, I, TOP_K = 128, 2816, 704, 8


@pytest.fixture(scope="module")
def weights():
    g = torch.Generator(device="cuda").manual_seed(0)
    gate_up = (torch.randn(E, 2 * I, H, device="cuda", generator=g) * H ** -0.5).bfloat16()
    down = (torch.randn(E, H, I, device="cuda", generator=g) * I ** -0.5).bfloat16()
    return gate_up, down


def routed(M, seed=0):
    from diffill.kernels import route
    g = torch.Generator(device="cuda").manual_seed(seed)
    h = (torch.randn(M, H, device="cuda", generator=g) * 3).bfloat16()
    proj = torch.randn(E, H, device="cuda", generator=g).bfloat16() * 0.05
    scale = (torch.rand(H, device="cuda", generator=g) + 0.5).bfloat16()
    per_expert_scale = (torch.rand(E, device="cuda", generator=g) + 0.5).bfloat16()
    weights, ids = route(h, proj, scale, per_expert_scale, TOP_K, 1e-6)
    return h, (proj, scale, per_expert_scale), weights, ids


@pytest.mark.parametrize("M", [1, 37, 256, 1024])
def test_router_kernel_at_the_real_shape(M):
    from diffill.kernels import moe_reference
    from diffill.kernels.route_triton import route
    h, router, _, _ = routed(M)
    w, ids = route(h, *router, TOP_K, 1e-6)
    w_ref, ids_ref = moe_reference.route(h.float(), *(t.float() for t in router), TOP_K, 1e-6)
    assert (ids == ids_ref).float().mean() > 0.999           # fp32 accumulation order: near-ties only
    same = (ids == ids_ref).all(1)
    torch.testing.assert_close(w[same], w_ref[same], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fmt", ["bf16", "fp8", "int4"])
@pytest.mark.parametrize("M", [1, 64, 256, 4096])
def test_fused_moe_compiled_at_the_real_shape(weights, fmt, M):
    from diffill import kernels
    from diffill.kernels import fused_moe_triton, moe_reference
    from diffill.kernels.quant import quantize
    gate_up, down = weights
    if fmt != "bf16":
        gate_up, down = quantize(gate_up, fmt), quantize(down, fmt)
    x, _, topk_weights, topk_ids = routed(M, seed=M)
    assert kernels.get_backend() == "auto"
    out = kernels.fused_moe(x, gate_up, down, topk_weights, topk_ids)       # auto: the Triton path on CUDA
    ref = moe_reference.fused_moe(x.float(), _dense(gate_up), _dense(down), topk_weights, topk_ids)
    err = (out.float() - ref).abs().max().item()
    assert err <= 2e-2 * ref.abs().max().item(), err
    det = fused_moe_triton.fused_moe(x, gate_up, down, topk_weights, topk_ids, deterministic=True)
    assert torch.equal(det, fused_moe_triton.fused_moe(x, gate_up, down, topk_weights, topk_ids, deterministic=True))


def test_every_config_of_this_gpus_tables_compiles_and_is_right(weights):
    from diffill.kernels import fused_moe_triton as fm
    from diffill.kernels import moe_reference
    from diffill.kernels.quant import quantize
    x, _, topk_weights, topk_ids = routed(256, seed=7)
    for fmt in ("bf16", "fp8", "int4"):
        table = fm.load_config_table(E, H, I, fm.device_name("cuda"), fmt)
        if table is None:
            pytest.skip(f"no config table for {fm.device_name('cuda')}")
        gate_up, down = weights if fmt == "bf16" else (quantize(weights[0], fmt), quantize(weights[1], fmt))
        ref = moe_reference.fused_moe(x.float(), _dense(gate_up), _dense(down), topk_weights, topk_ids)
        for M, config in table.items():
            out = fm.fused_moe(x, gate_up, down, topk_weights, topk_ids, config=config).float()
            assert (out - ref).abs().max() <= 2e-2 * ref.abs().max(), (fmt, M, config)


def _dense(w):
    return w.float() if isinstance(w, torch.Tensor) else w.dequantize().float()
