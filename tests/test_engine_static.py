"""The static-shape engine pieces (static decoder step, device-side sampler, fused head) against the
reference they replace, on the CPU at a tiny config. CUDA-graph capture is skipped here."""
import pytest
import torch

from diffill.model.builder import TINY_TEXT, build_model, make_config
from diffill.model.config import GenerationSettings
from diffill.model.static_step import StaticDenoiser

C = 8


@pytest.fixture(scope="module")
def model():
    m = build_model(make_config(dict(TINY_TEXT), canvas_length=C), seed=3)
    torch.manual_seed(0)  # a wider spread than init's, so that logits and entropies differ per position
    with torch.no_grad():
        m.embed_tokens.weight.normal_(0, 1.0)
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
