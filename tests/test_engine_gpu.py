"""The static engine on a GPU against the reference on the same GPU: the captured decoder step, the
device-side sampler and the fused head, at a small fp32 config (tokens equal) and at the real
26B-A4B shapes in bf16 (values close). Skipped without CUDA."""
import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "engine_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("engine_gpu", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cache(model, t, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    ids = torch.randint(5, model.config.vocab_size, (1, t), device="cuda", generator=g)
    return model.encode(ids)


@pytest.fixture(scope="module")
def small():
    return _bench().build(dict(_bench().SHRINK_TEXT), 16, torch.device("cuda"), torch.float32, "bf16")


@pytest.fixture(scope="module")
def real():
    from diffill.model.engine.builder import REAL_TEXT
    model = _bench().build(dict(REAL_TEXT), 256, torch.device("cuda"), torch.bfloat16, "bf16")
    yield model
    del model
    torch.cuda.empty_cache()


def test_captured_step_equals_denoise_small(small):
    from diffill.model.gpu.static_step import StaticDenoiser
    cache = _cache(small, 100)
    step = StaticDenoiser(small, cache, 16)
    assert step.graph is not None
    g = torch.Generator(device="cuda").manual_seed(1)
    probs = None
    with torch.inference_mode():
        for _ in range(3):
            canvas = torch.randint(0, small.config.vocab_size, (1, 16), device="cuda", generator=g)
            want = small.denoise(canvas, cache, self_cond_probs=probs)
            got = step.run(canvas, None if probs is None else small.soft_embedding(probs=probs))
            assert (got - want).abs().max() <= 1e-4
            probs = torch.softmax(want, -1)


def test_device_sampler_gives_the_reference_tokens_small(small):
    from diffill.model.engine.config import GenerationSettings
    from diffill.model.gpu.gpu_sampler import sample_canvas
    from diffill.model.engine.sampler import _denoise_uniform
    cache = _cache(small, 100)
    for settings in (GenerationSettings(), GenerationSettings(confidence_threshold=10.0)):
        with torch.inference_mode():
            want, want_steps = _denoise_uniform(small, cache, 1, 16, settings, 12,
                                                torch.Generator(device="cuda").manual_seed(3), None,
                                                lambda *a: None)
        got, got_steps = sample_canvas(small, cache, 16, settings=settings, max_steps=12,
                                       generator=torch.Generator(device="cuda").manual_seed(3))
        assert torch.equal(got, want) and got_steps == want_steps


@pytest.mark.parametrize("form", ["fp8", "int4"])
def test_captured_step_equals_denoise_with_quantised_experts(form):
    from diffill.model.gpu.static_step import StaticDenoiser
    model = _bench().build(dict(_bench().SHRINK_TEXT), 16, torch.device("cuda"), torch.bfloat16, form)
    cache = _cache(model, 64)
    step = StaticDenoiser(model, cache, 16)
    canvas = torch.randint(0, model.config.vocab_size, (1, 16), device="cuda")
    with torch.inference_mode():
        want = model.denoise(canvas, cache)
        got = step.run(canvas)
    assert (got - want).abs().max() <= 0.05


def test_captured_step_at_the_real_shape_matches_denoise(real):
    from diffill.model.gpu.static_step import StaticDenoiser
    cache = _cache(real, 1500)  # longer than the 1024 sliding window
    step = StaticDenoiser(real, cache, 256)
    assert step.graph is not None
    canvas = torch.randint(0, real.config.vocab_size, (1, 256), device="cuda")
    with torch.inference_mode():
        want = real.denoise(canvas, cache)
        got = step.run(canvas).clone()
        again = step.run(canvas)
    assert torch.equal(got, again)  # replays are repeatable
    assert (got - want).abs().max() <= 0.25  # bf16 through 30 layers; soft-capped logits span +-30
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.98


def test_fused_head_at_the_real_vocabulary_matches_the_reference(real):
    from diffill.model.gpu.fused_head import fused_head, gumbel_chunks, processed_logits
    from diffill.model.engine.sampler import _entropy
    hidden = torch.randn(256, real.config.hidden_size, device="cuda", dtype=torch.bfloat16)
    w, cap, temp = real.embed_tokens.weight, real.config.final_logit_softcapping, 0.6
    with torch.inference_mode():
        z = processed_logits(hidden, w, cap, temp)
        probs = torch.softmax(z, -1)
        g = torch.cat(list(gumbel_chunks(256, z.shape[-1], 16384, torch.Generator(device="cuda").manual_seed(1),
                                         "cuda")), -1)
        st = fused_head(hidden, w, cap, temp, chunk=16384,
                        noise=gumbel_chunks(256, z.shape[-1], 16384, torch.Generator(device="cuda").manual_seed(1),
                                            "cuda"))
        assert (st.argmax == z.argmax(-1)).float().mean() >= 0.99
        assert (st.sample == (z + g).argmax(-1)).float().mean() >= 0.99
        assert torch.allclose(st.entropy, _entropy(z, probs), atol=1e-2, rtol=1e-3)
        ref_soft = real.soft_embedding(probs=probs).float()
        assert (st.soft.float() - ref_soft).abs().max() <= 2e-2 * ref_soft.abs().max()


def test_device_sampler_at_the_real_shape_runs_a_canvas(real):
    from diffill.model.engine.config import GenerationSettings
    from diffill.model.gpu.gpu_sampler import sample_canvas
    cache = _cache(real, 1024)
    out, steps = sample_canvas(real, cache, 256, fused=True, settings=GenerationSettings(confidence_threshold=0.0),
                               max_steps=16, check_every=16, generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.shape == (1, 256) and steps == 16
    assert int(out.min()) >= 0 and int(out.max()) < real.config.vocab_size


def test_the_worker_self_test_passes_every_fast_part_on_this_gpu(small):
    """Every fast part compiles, captures and matches its reference here (the worker would not be
    degraded), and a fill through the fast path gives printable text with a confidence per line."""
    from diffill.model.engine.infill import Infiller
    from diffill.model.engine.builder import random_model
    from diffill.model.gpu import self_test
    from diffill.model.gpu.fast_path import uniform_denoiser

    model = random_model("tiny", "cuda", torch.bfloat16, canvas_length=16)
    parts, verdicts = self_test.run(model)
    assert all(v.ok and not v.detail.startswith("not used") for v in verdicts), verdicts
    infiller = Infiller(model, uniform=uniform_denoiser(model, parts))
    r = infiller.fill("def add(a, b):\n    return ", "\n", max_steps=8, doc_key="d")
    assert not r.cancelled and r.line_confidence
    assert all(s.graph is not None for s in infiller.uniform._steps.values())  # captured, replayed
