"""The fast path in the product (model/gpu/fast_path.py) and its self-test (model/gpu/self_test.py), on
the CPU at a tiny config of the real layout: fills through the Infiller against the reference Infiller,
one kept step across fills, cancellation, and every fast part failing (a compile error, a capture
error, wrong numbers) with the fill still right and the failure named."""
import pytest
import torch

from diffill import kernels
from diffill.model.engine.builder import TINY_TEXT, build_model, make_config
from diffill.model.engine.infill import Infiller
from diffill.model.gpu import faults, gpu_sampler, self_test, static_step
from diffill.model.gpu.fast_path import FastDenoiser, FastParts, capacity_for, uniform_denoiser

C = 16
HOLES = [("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"),
         ("x = [1, 2, 3]\nfor v in x:\n    ", "\nprint('done')\n"),
         ("class A:\n    def f(self):\n        return self.", "\n")]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(prompt_format):
    from diffill.model import build_random_checkpoint, load_model
    import tempfile
    d = build_random_checkpoint(tempfile.mkdtemp(prefix="fast-"), seed=1, canvas_length=C, prompt_format=prompt_format)
    m = load_model(d)
    torch.manual_seed(0)  # logits spread wide enough that positions and steps differ
    with torch.no_grad():
        m.embed_tokens.weight.normal_(0, 1.0)
    return m


@pytest.fixture(scope="module", params=["chat", "clamped"])
def model(request):
    return _model(request.param)


@pytest.fixture
def restored(monkeypatch):
    """Whatever a test injects into the fast parts is undone afterwards."""
    monkeypatch.setattr(gpu_sampler, "fused_head", gpu_sampler.fused_head)
    monkeypatch.setattr(gpu_sampler, "denoise_canvas", gpu_sampler.denoise_canvas)
    monkeypatch.setattr(static_step.StaticDenoiser, "_capture", static_step.StaticDenoiser._capture)
    monkeypatch.setattr(static_step.StaticDenoiser, "_forward", static_step.StaticDenoiser._forward)
    route_mod, moe_mod = kernels._triton_modules()
    monkeypatch.setattr(route_mod, "route", route_mod.route)
    monkeypatch.setattr(moe_mod, "fused_moe", moe_mod.fused_moe)
    yield
    kernels.set_backend("auto")


def _fills(infiller, steps=8):
    return [infiller.fill(p, s, max_steps=steps, doc_key="doc") for p, s in HOLES]


# ---- the fast path against the reference -------------------------------------------------------

def test_fills_through_the_fast_path_with_the_unfused_head_give_the_reference_text_and_steps(model):
    """Same draws (multinomial from the same generator), the prefix cache reused from fill to fill,
    the clamped format's pinned suffix tokens: the same text, tokens and steps as the reference."""
    reference = _fills(Infiller(model))
    fast = FastDenoiser(model, FastParts(fused_head=False), check_every=1)
    got = _fills(Infiller(model, uniform=fast))
    for want, have in zip(reference, got):
        assert (have.text, have.tokens, have.steps) == (want.text, want.tokens, want.steps)
        assert have.line_confidence == pytest.approx(want.line_confidence, abs=1e-4)
    assert got[1].reused_tokens > 0  # the prefix cache was reused on the way


def test_the_fused_head_fills_with_printable_text_and_a_confidence_per_line(model):
    fast = FastDenoiser(model, FastParts(), check_every=2)
    for r in _fills(Infiller(model, uniform=fast)):
        assert not r.cancelled and 1 <= r.steps <= 8
        assert all(0 <= t < model.config.vocab_size for t in r.tokens)
        assert r.line_confidence and all(0.0 <= p <= 1.0 for p in r.line_confidence)


def test_one_kept_step_serves_fills_of_one_capacity_and_canvas_length(model):
    fast = FastDenoiser(model, FastParts(fused_head=False))
    infiller = Infiller(model, uniform=fast)
    _fills(infiller)
    assert len(fast._steps) == 1  # three prompts of other lengths, one set of buffers (one graph on CUDA)
    step = next(iter(fast._steps.values()))
    infiller.fill("y = 1\n" * 3, "\n", max_steps=4, doc_key="other")
    assert next(iter(fast._steps.values())) is step
    infiller.fill("y = 1\n", "\n", canvas_length=8, max_steps=4, doc_key="other")
    assert len(fast._steps) == 2  # another canvas length: another step
    assert capacity_for(1) == 256 and capacity_for(257) == 512 and capacity_for(4096) == 4096


def test_a_fill_on_the_fast_path_stops_within_check_every_steps_of_cancellation(model):
    fast = FastDenoiser(model, FastParts(), check_every=2)
    seen = []

    def on_step(stats):
        seen.append(stats.step)
        return False  # cancel at the first check

    r = Infiller(model, uniform=fast).fill(*HOLES[0], max_steps=20, on_step=on_step, doc_key="d")
    assert r.cancelled and r.text == "" and seen == [2]


def test_the_mask_process_keeps_the_reference_loop():
    from diffill.model import build_random_checkpoint, load_model
    import tempfile
    d = build_random_checkpoint(tempfile.mkdtemp(prefix="fast-"), seed=2, canvas_length=C, fim=True, noise="mask",
                                prompt_format="fim")
    assert uniform_denoiser(load_model(d), FastParts()) is None
    parts, verdicts = self_test.run(load_model(d))
    assert {v.part: v.detail for v in verdicts}["device_sampler"].startswith("not used here")


# ---- the self-test and its fallbacks -----------------------------------------------------------

def test_every_fast_part_passes_its_self_test_on_a_sound_build(model, restored):
    kernels.set_backend("triton")  # Triton's interpreter on the CPU
    parts, verdicts = self_test.run(model, check_kernels=True)
    assert [v.part for v in verdicts] == ["router", "experts", "graph", "device_sampler", "fused_head"]
    assert all(v.ok for v in verdicts), verdicts
    assert self_test.degraded(verdicts) is None and parts.off == {}


def _reference_text(model):
    kernels.set_backend("reference")
    try:
        return [r.text for r in _fills(Infiller(model))]
    finally:
        kernels.set_backend("auto")


@pytest.mark.parametrize("part,kind", [("fused_head", "mismatch"), ("fused_head", "compile"),
                                       ("device_sampler", "mismatch"), ("device_sampler", "compile"),
                                       ("graph", "mismatch")])
def test_a_broken_fast_part_is_turned_off_named_and_the_fill_is_the_references(model, restored, part, kind):
    want = _reference_text(model)
    faults.install({part: kind})
    if kind == "mismatch" and part != "graph":  # the fault is real: the broken part gives other text
        broken = FastDenoiser(model, FastParts(fused_head=part == "fused_head"), check_every=1)
        assert [r.text for r in _fills(Infiller(model, uniform=broken))] != want
    parts, verdicts = self_test.run(model)
    verdict = {v.part: v for v in verdicts}[part]
    assert not verdict.ok and part in self_test.degraded(verdicts) and part in parts.off
    fast = uniform_denoiser(model, parts, check_every=1)
    assert [r.text for r in _fills(Infiller(model, uniform=fast))] == want


def test_a_graph_that_cannot_be_captured_falls_back_to_the_eager_step_and_says_why(model):
    """On the CPU a CUDA graph capture fails for real: at load the check names it; at fill time the
    graph is turned off and the fill goes on eagerly with the reference's text."""
    with pytest.raises(Exception):
        self_test.check_graph(model, capture=True)
    logged = []
    fast = FastDenoiser(model, FastParts(fused_head=False), check_every=1, capture=True, log=logged.append)
    got = _fills(Infiller(model, uniform=fast))
    assert not fast.parts.graph and "capture failed" in fast.parts.off["graph"] and len(logged) == 1
    assert all(step.graph is None for step in fast._steps.values())
    assert [r.text for r in got] == _reference_text(model)


@pytest.mark.parametrize("part", ["router", "experts"])
@pytest.mark.parametrize("kind", ["compile", "mismatch"])
def test_a_broken_triton_kernel_is_turned_off_and_its_reference_serves(model, restored, part, kind):
    op = "route" if part == "router" else "fused_moe"
    want = _reference_text(model)
    kernels.set_backend("triton", op=op)  # the product would call the (broken) kernel in the interpreter
    faults.install({part: kind})
    # the fused head draws other (equally likely) tokens: off here, so that the text can be compared
    parts, verdicts = self_test.run(model, off={"fused_head"}, check_kernels=True)
    assert not {v.part: v for v in verdicts}[part].ok and part in self_test.degraded(verdicts)
    assert kernels.get_backend(op) == "reference"
    fast = uniform_denoiser(model, parts, check_every=1)
    assert [r.text for r in _fills(Infiller(model, uniform=fast))] == want


def test_parts_turned_off_by_the_setting_are_off_without_counting_as_degraded(model, restored):
    parts, verdicts = self_test.run(model, off={"fused_head", "graph"})
    by = {v.part: v for v in verdicts}
    assert by["fused_head"].detail == by["graph"].detail == "off (setting)"
    assert self_test.degraded(verdicts) is None and not parts.fused_head and not parts.graph
    parts, _ = self_test.run(model, off={"all"})
    assert uniform_denoiser(model, parts) is None


def test_a_fault_spec_that_names_no_part_is_refused():
    with pytest.raises(ValueError, match="PART=KIND"):
        faults.parse("head=broken")
    assert faults.parse("graph=capture, fused_head=mismatch") == {"graph": "capture", "fused_head": "mismatch"}


def test_the_servers_fast_part_names_are_the_workers():
    """The torch-free server keeps its own copy of the part names (it may not import model/gpu)."""
    from diffill.lsp.server import settings
    from diffill.model.gpu.fast_path import PARTS
    assert settings.FAST_PARTS == PARTS + ("all",)
