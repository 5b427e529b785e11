"""The static-shape engine pieces (static decoder step, device-side sampler, fused head) against the
reference they replace, on the CPU at a tiny config. CUDA-graph capture is skipped here."""
import pytest
import torch

from diffill.model.engine.builder import TINY_TEXT, build_model, make_config
from diffill.model.engine.config import GenerationSettings
from diffill.model.gpu.static_step import StaticDenoiser

C = 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    m = build_model(make_config(dict(TINY_TEXT), canvas_length=C), seed=3)
    torch.manual_seed(0)  # a wider spread than init's, so that logits and entropies differ per position
    with torch.no_grad():
        m.embed_tokens.weight.normal_(0, 1.0)
    return m


@pytest.fixture(scope="module")
def steady_model():
    """The argmax follows the sign of one hidden dimension that mostly stays positive: canvases settle
    within a few steps, rows of a batch at different steps (the early stop and the row freeze run)."""
    m = build_model(make_config(dict(TINY_TEXT), canvas_length=C), seed=3)
    torch.manual_seed(0)
    with torch.no_grad():
        m.embed_tokens.weight.normal_(0, 1.0)
        m.embed_tokens.weight[:, 0] += 2.0
        m.norm.weight.zero_()
        m.norm.weight[0] = 1.0
    return m


def _prompt(model, t=24, b=1, pad=0):
    ids = torch.randint(5, model.config.vocab_size, (b, t), generator=torch.Generator().manual_seed(t + b))
    mask = None
    if pad:
        mask = torch.zeros(b, t, dtype=torch.bool)
        mask[0, :pad] = True
    return ids, mask


@pytest.mark.parametrize("t,b,pad", [(24, 1, 0), (5, 1, 0), (30, 2, 3)])
def test_static_step_equals_denoise_over_several_steps(model, t, b, pad):
    ids, mask = _prompt(model, t, b, pad)
    cache = model.encode(ids, pad_mask=mask)
    step = StaticDenoiser(model, cache, C)
    assert step.graph is None  # no capture on the CPU
    g = torch.Generator().manual_seed(1)
    probs = None
    with torch.inference_mode():
        for _ in range(4):
            canvas = torch.randint(0, model.config.vocab_size, (b, C), generator=g)
            want = model.denoise(canvas, cache, self_cond_probs=probs)
            soft = None if probs is None else model.soft_embedding(probs=probs)
            got = step.run(canvas, soft)
            assert (got - want).abs().max() <= 1e-5
            probs = torch.softmax(want / 0.7, -1)
    assert cache.length == t  # the reference cache is untouched


@pytest.mark.parametrize("b,pad", [(1, 0), (2, 3)])
def test_one_static_step_rebound_to_caches_of_other_lengths_equals_denoise_for_each(model, b, pad):
    """Built for a capacity of 40 on a 24-token cache, then bound to shorter and longer ones (below and
    above the sliding window of 16, padded rows among them): the buffers, masks and RoPE tables a
    captured graph would replay give denoise's logits for every cache, also after going back."""
    ids, mask = _prompt(model, 24, b, pad)
    first = model.encode(ids, pad_mask=mask)
    step = StaticDenoiser(model, first, C, capacity=40)
    assert step.capacity == 40
    g = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        for t in (5, 16, 17, 40, 24, 3):
            ids, mask = _prompt(model, t, b, min(pad, t - 1))
            cache = model.encode(ids, pad_mask=mask)
            step.bind(cache)
            canvas = torch.randint(0, model.config.vocab_size, (b, C), generator=g)
            assert (step.run(canvas) - model.denoise(canvas, cache)).abs().max() <= 5e-5, t  # float sums only
        with pytest.raises(ValueError, match="up to 40 positions"):
            step.bind(model.encode(_prompt(model, 41, b)[0]))


def test_static_step_hidden_only_matches_decode_hidden(model):
    ids, _ = _prompt(model)
    cache = model.encode(ids)
    step = StaticDenoiser(model, cache, C, with_logits=False)
    canvas = torch.randint(0, model.config.vocab_size, (1, C), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        want = model.decode_hidden(canvas, cache)
        got = step.run(canvas)
    assert step.logits is None
    assert (got - want).abs().max() <= 1e-5


# -- the device-side sampler ------------------------------------------------------------------------

def _reference_canvas(model, cache, settings, steps, seed):
    from diffill.model.engine.sampler import _denoise_uniform
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        return _denoise_uniform(model, cache, cache.batch_size, C, settings, steps, gen, None, lambda *a: None)


def _gpu_canvas(model, cache, settings, steps, seed, **kw):
    from diffill.model.gpu.gpu_sampler import sample_canvas
    return sample_canvas(model, cache, C, settings=settings, max_steps=steps,
                         generator=torch.Generator().manual_seed(seed), **kw)


STOPPING = [GenerationSettings(),                                           # runs every step
            GenerationSettings(confidence_threshold=10.0),                  # stops once the argmax is stable
            GenerationSettings(confidence_threshold=10.0, stability_threshold=2),
            GenerationSettings(confidence_threshold=10.0, stability_threshold=0, entropy_bound=3.0)]


@pytest.mark.parametrize("settings", STOPPING)
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("which", ["model", "steady_model"])
def test_device_sampler_gives_the_reference_tokens_and_steps(request, which, settings, b):
    model = request.getfixturevalue(which)
    ids, mask = _prompt(model, 20, b, pad=2 if b > 1 else 0)
    cache = model.encode(ids, pad_mask=mask)
    for seed in (0, 1):
        want, want_steps = _reference_canvas(model, cache, settings, 12, seed)
        got, got_steps = _gpu_canvas(model, cache, settings, 12, seed)
        assert torch.equal(got, want) and got_steps == want_steps


def test_early_stop_is_exercised(steady_model):
    ids, mask = _prompt(steady_model, 20, 3, pad=2)
    cache = steady_model.encode(ids, pad_mask=mask)
    steps = {_reference_canvas(steady_model, cache, STOPPING[1], 12, seed)[1] for seed in (2, 3)}
    assert max(steps) < 12 and len(steps) > 1


def test_checking_the_stop_flag_every_few_steps_gives_the_same_canvas(steady_model):
    model = steady_model
    ids, mask = _prompt(model, 20, 3, pad=2)
    cache = model.encode(ids, pad_mask=mask)
    for settings in STOPPING:
        want, want_steps = _gpu_canvas(model, cache, settings, 12, 5)
        got, got_steps = _gpu_canvas(model, cache, settings, 12, 5, check_every=4)
        assert torch.equal(got, want) and got_steps == want_steps


# -- the fused head ---------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [64, 100, 320, 1000])
def test_fused_head_equals_the_reference_quantities(model, chunk):
    from diffill.model.gpu.fused_head import fused_head, gumbel_chunks, processed_logits
    from diffill.model.engine.sampler import _entropy
    n, v = 24, model.config.vocab_size
    hidden = torch.randn(n, model.config.hidden_size, generator=torch.Generator().manual_seed(4))
    w, cap, temp = model.embed_tokens.weight, model.config.final_logit_softcapping, 0.55
    with torch.inference_mode():
        z = processed_logits(hidden, w, cap, temp)
        assert torch.equal(z, model.head(hidden) / temp)
        probs = torch.softmax(z, -1)
        g = torch.cat(list(gumbel_chunks(n, v, chunk, torch.Generator().manual_seed(9))), -1)
        st = fused_head(hidden, w, cap, temp, noise=gumbel_chunks(n, v, chunk, torch.Generator().manual_seed(9)),
                        chunk=chunk)
        assert torch.equal(st.argmax, z.argmax(-1))
        assert torch.equal(st.sample, (z + g).argmax(-1))
        assert torch.allclose(st.lse, z.logsumexp(-1), atol=1e-5)
        assert torch.allclose(st.entropy, _entropy(z, probs), atol=1e-4)
        assert torch.allclose(st.soft, model.soft_embedding(probs=probs), atol=1e-5)


def test_gumbel_draws_follow_the_softmax(model):
    from diffill.model.gpu.fused_head import fused_head, gumbel_chunks
    w = model.embed_tokens.weight[:6]  # a 6-token vocabulary, one position, many draws
    hidden = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(1)) * 0.05
    gen = torch.Generator().manual_seed(2)
    draws = [int(fused_head(hidden, w, 30.0, 1.0, noise=gumbel_chunks(1, 6, 4, gen), chunk=4).sample)
             for _ in range(3000)]
    freq = torch.bincount(torch.tensor(draws), minlength=6).float() / len(draws)
    want = torch.softmax(torch.tanh(hidden @ w.T / 30) * 30, -1)[0]
    assert (freq - want).abs().max() < 0.03


@pytest.mark.parametrize("settings", STOPPING[:2])
@pytest.mark.parametrize("which", ["model", "steady_model"])
def test_fused_sampler_equals_the_unfused_one_with_the_same_draws(request, which, settings):
    model = request.getfixturevalue(which)
    ids, mask = _prompt(model, 20, 2, pad=2)
    cache = model.encode(ids, pad_mask=mask)
    for seed in (0, 1):
        want, want_steps = _gpu_canvas(model, cache, settings, 8, seed, draw="gumbel", chunk=100)
        got, got_steps = _gpu_canvas(model, cache, settings, 8, seed, fused=True, chunk=100)
        assert torch.equal(got, want) and got_steps == want_steps


# -- the GPU benchmark, shrunk -----------------------------------------------------------------------

def test_the_gpu_benchmark_runs_shrunk_and_records_every_key(tmp_path):
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "bench" / "engine_gpu.py"
    spec = importlib.util.spec_from_file_location("engine_gpu", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--shrink", "--prompts", "16", "--context", "24", "--canvas", "8", "--steps", "16", "--peak-tbs", "0.05"]
    with pytest.raises(SystemExit):   # shrunk figures are not results: they never go to bench/results
        bench.main(argv)
    bench.main(argv + ["--out", str(tmp_path)])
    r = json.loads((tmp_path / "engine_gpu.json").read_text())
    assert r["device"] and r["shrink"] is True
    assert r["provenance"]["commit"] and r["provenance"]["date"] and "--shrink" in r["provenance"]["command"]
    for form in ("bf16", "fp8", "int4"):
        assert {"step_ms", "floor_ms", "tok_per_s_16", "peak_gb"} <= r[form].keys()
        assert r[form]["step_ms"] > 0 and r[form]["tok_per_s_16"] > 0 and r[form]["floor_ms"] > 0
    assert r["bf16"]["weight_bytes"] > r["fp8"]["weight_bytes"] > r["int4"]["weight_bytes"]
    assert r["transformers_tok_per_s_16"] > 0
    assert "| int4 |" in (tmp_path / "engine_gpu.md").read_text()
    assert (tmp_path / "engine_gpu.svg").read_text().startswith("<svg")
