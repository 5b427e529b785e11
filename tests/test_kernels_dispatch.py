"""diffill.kernels.route / fused_moe pick the reference or the Triton kernels by device and setting."""
import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from diffill import kernels  # noqa: E402
from diffill.kernels import fused_moe_triton, moe_reference, route_triton  # noqa: E402
from diffill.kernels.quant import quantize  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def backend():
    before = kernels.get_backend()
    yield kernels.set_backend
    kernels.set_backend(before)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(6, 32, generator=g)
    router = (torch.randn(4, 32, generator=g), torch.rand(32, generator=g) + 0.5, torch.rand(4, generator=g) + 0.5)
    gate_up, down = torch.randn(4, 32, 32, generator=g) / 6, torch.randn(4, 32, 16, generator=g) / 4
    return h, router, gate_up, down


def test_cpu_tensors_take_the_reference_by_default(backend):
    backend("auto")
    h, router, gate_up, down = inputs()
    w, ids = kernels.route(h, *router, 2, 1e-6)
    w_ref, ids_ref = moe_reference.route(h, *router, 2, 1e-6)
    assert torch.equal(w, w_ref) and torch.equal(ids, ids_ref)
    assert torch.equal(kernels.fused_moe(h, gate_up, down, w, ids), moe_reference.fused_moe(h, gate_up, down, w, ids))


def test_forcing_triton_runs_the_kernels(backend):
    backend("triton")
    h, router, gate_up, down = inputs()
    h, gate_up, down, router = h.to(DEVICE), gate_up.to(DEVICE), down.to(DEVICE), [t.to(DEVICE) for t in router]
    w, ids = kernels.route(h, *router, 2, 1e-6)
    w_t, ids_t = route_triton.route(h, *router, 2, 1e-6)
    assert torch.equal(w, w_t) and torch.equal(ids, ids_t)
    q = quantize(gate_up, "int4", 32), quantize(down, "int4", 32)
    out = kernels.fused_moe(h, *q, w, ids)
    assert torch.equal(out, fused_moe_triton.fused_moe(h, *q, w, ids))
    torch.testing.assert_close(out, moe_reference.fused_moe(h, *q, w, ids), rtol=1e-4, atol=1e-5)


def test_gradients_never_go_through_the_triton_kernels(backend):
    h, router, gate_up, down = inputs()
    gate_up = gate_up.to(DEVICE).requires_grad_()
    h, down, router = h.to(DEVICE), down.to(DEVICE), [t.to(DEVICE) for t in router]
    w, ids = moe_reference.route(h, *router, 2, 1e-6)
    backend("auto")                                       # falls back to the reference, which has a backward
    kernels.fused_moe(h, gate_up, down, w, ids).sum().backward()
    assert gate_up.grad is not None and gate_up.grad.abs().sum() > 0
    backend("triton")
    with pytest.raises(RuntimeError, match="no backward"):
        kernels.fused_moe(h, gate_up, down, w, ids)
    with torch.no_grad():                                 # inference: the kernels run
        assert kernels.fused_moe(h, gate_up, down, w, ids).shape == h.shape


def test_unknown_backend_is_refused(backend):
    with pytest.raises(ValueError, match="choose one of auto, reference, triton"):
        backend("cuda")


def test_backend_from_the_environment():
    code = "import diffill.kernels as k; print(k.get_backend())"
    env = dict(os.environ, DIFFILL_MOE_BACKEND="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "reference"
    env["DIFFILL_MOE_BACKEND"] = "fast"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "DIFFILL_MOE_BACKEND: unknown MoE backend 'fast'" in out.stderr


def test_importing_kernels_does_not_import_triton():
    code = "import sys, diffill.kernels; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_engine_gives_the_same_logits_on_either_backend(backend, tiny_checkpoint):
    from diffill.model import load_model
    model = load_model(tiny_checkpoint, device=DEVICE)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(5, 300, (1, 10), generator=g).to(DEVICE)
    canvas = torch.randint(5, 300, (1, 16), generator=g).to(DEVICE)
    results = {}
    for name in ("reference", "triton"):
        backend(name)
        with torch.no_grad():
            results[name] = model.denoise(canvas, model.encode(prompt))
    torch.testing.assert_close(results["triton"], results["reference"], rtol=1e-4, atol=1e-4)
