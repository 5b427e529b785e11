"""The fused router kernel against moe_reference.route (Triton interpreter on CPU)."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from diffill.kernels import moe_reference  # noqa: E402
from diffill.kernels.route_triton import route  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def router_inputs(M, H, E, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(M, H, generator=g) * 4
    proj = torch.randn(E, H, generator=g)
    scale = torch.rand(H, generator=g) + 0.5
    per_expert_scale = torch.rand(E, generator=g) + 0.5
    return [t.to(dtype) for t in (h, proj, scale, per_expert_scale)]


def run_both(M, H, E, K, dtype, seed=0):
    """Kernel on `dtype` inputs; reference in fp32 on the same (rounded) values, which is what the
    kernel computes: it accumulates in fp32 and never rounds the normed activations."""
    inputs = router_inputs(M, H, E, dtype, seed)
    w, ids = route(*(t.to(DEVICE) for t in inputs), K, 1e-6)
    w_ref, ids_ref = moe_reference.route(*(t.float() for t in inputs), K, 1e-6)
    return w.cpu(), ids.cpu(), w_ref, ids_ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("M,H,E,K", [(1, 32, 4, 2), (37, 96, 16, 4), (20, 64, 128, 8)])
def test_route_matches_reference(M, H, E, K, dtype):
    w, ids, w_ref, ids_ref = run_both(M, H, E, K, dtype)
    assert ids.dtype == torch.int32 and w.dtype == torch.float32
    assert torch.equal(ids, ids_ref)
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-6)


def test_route_top_1_returns_the_expert_scale():
    w, ids, w_ref, ids_ref = run_both(19, 32, 8, 1, torch.float32)
    assert torch.equal(ids, ids_ref)
    _, _, _, per_expert_scale = router_inputs(19, 32, 8, torch.float32)
    torch.testing.assert_close(w[:, 0], per_expert_scale[ids[:, 0].long()])


def test_route_top_k_equal_to_e_ranks_every_expert():
    w, ids, w_ref, ids_ref = run_both(18, 32, 8, 8, torch.float32)
    assert torch.equal(ids.sort(dim=1).values, torch.arange(8, dtype=torch.int32).expand(18, 8))
    assert torch.equal(ids, ids_ref)
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-6)


def test_route_bf16_agrees_with_the_bf16_reference_except_near_ties():
    # The bf16 reference rounds the normed activations to bf16 before the projection; the kernel
    # does not. Any expert the two disagree on must be a near-tie in the reference's own scores.
    M, H, E, K = 64, 128, 32, 4
    inputs = router_inputs(M, H, E, torch.bfloat16, seed=1)
    _, ids = route(*(t.to(DEVICE) for t in inputs), K, 1e-6)
    _, ids_ref = moe_reference.route(*inputs, K, 1e-6)
    ids = ids.cpu()
    x = inputs[0].float()
    x = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)) * inputs[2].float() * H ** -0.5
    scores = x @ inputs[1].float().T
    kth = scores.topk(K, dim=1).values[:, -1:]
    chosen_by_one = ids.sort(1).values != ids_ref.sort(1).values
    rows = chosen_by_one.any(1)
    assert rows.float().mean() < 0.1
    gap = (scores.gather(1, ids[rows].long()) - kth[rows]).abs().min(1).values
    assert (gap < 0.05 * scores.abs().max()).all()


def test_route_of_no_tokens_is_empty():
    inputs = router_inputs(0, 32, 4, torch.float32)
    w, ids = route(*(t.to(DEVICE) for t in inputs), 2, 1e-6)
    assert w.shape == (0, 2) and ids.shape == (0, 2)
