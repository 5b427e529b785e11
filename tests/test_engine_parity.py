"""Our engine against transformers' DiffusionGemmaForBlockDiffusion (the reference), fp32 on CPU."""
import pytest
import torch
from transformers import DiffusionGemmaForBlockDiffusion
from transformers.cache_utils import DynamicCache

from diffill.model import build_random_checkpoint, load_model
from diffill.model.engine.sampler import sample

CONFIGS = {
    # the default tiny shape: 1 kv head, equal head dims
    "tiny": {},
    # grouped queries, a wider full-attention head with k = v, two sliding layers, small window
    "gqa_wide_full": dict(hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                          num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention",
                                                            "full_attention"],
                          per_layer_config={"2": {"head_dim": 32, "num_key_value_heads": 1}},
                          sliding_window=8, num_experts=6, top_k_experts=3),
    # every expert for every token (top_k = E)
    "topk_all": dict(num_experts=3, top_k_experts=3, sliding_window=12),
}


def _pair(tmp_path, name, seed=0):
    d = build_random_checkpoint(tmp_path / name, config_overrides=CONFIGS[name], seed=seed, canvas_length=16)
    ours = load_model(d)
    ref = DiffusionGemmaForBlockDiffusion.from_pretrained(d, dtype=torch.float32).eval()
    return ours, ref


def _ref_cache(ref):
    return DynamicCache(config=ref.config.get_text_config(decoder=True))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_decoder_logits_and_encoder_cache_match_transformers(tmp_path, name):
    ours, ref = _pair(tmp_path, name)
    w = ours.config.sliding_window
    g = torch.Generator().manual_seed(0)
    p = 2 * w + 5  # prompt longer than the sliding window
    ids = torch.randint(5, 300, (2, p), generator=g)
    attn = torch.ones(2, p, dtype=torch.long)
    attn[1, :7] = 0  # left padding on the second row
    with torch.no_grad():
        cache = ours.encode(ids, pad_mask=attn == 0)
        hc = _ref_cache(ref)
        ref.model.encoder(input_ids=ids, attention_mask=attn, past_key_values=hc)
        for i, spec in enumerate(ours.config.layers):
            rk, rv = hc.layers[i].keys, hc.layers[i].values
            n = rk.shape[2]  # sliding layers keep only the last W-1 positions there
            assert n == (w - 1 if spec.sliding else p)
            keep = ~cache.pad[:, -n:]  # compare real tokens; padding rows are never attended
            for ours_t, ref_t in ((cache.k[i][:, :, -n:], rk), (cache.v[i][:, :, -n:], rv)):
                diff = (ours_t - ref_t).abs().amax(dim=(1, 3))  # [B, n]
                assert diff[keep].max().item() <= 1e-5
        for c in (16, 9):  # the configured canvas length and a shorter one
            canvas = torch.randint(0, ours.config.vocab_size, (2, c), generator=g)
            mask = torch.nn.functional.pad(attn, (0, c), value=1)
            for sc in (None, torch.randn(2, c, ours.config.vocab_size, generator=g) * 3):
                a = ours.denoise(canvas, cache, sc)
                b = ref(decoder_input_ids=canvas, past_key_values=hc, self_conditioning_logits=sc,
                        decoder_attention_mask=mask).logits
                assert a.dtype == torch.float32 and a.shape == (2, c, ours.config.vocab_size)
                assert (a - b).abs().max().item() <= 1e-4


def test_extending_and_truncating_the_cache_equals_encoding_at_once(tmp_path):
    ours, _ = _pair(tmp_path, "gqa_wide_full")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 300, (1, 30), generator=g)
    canvas = torch.randint(0, 300, (1, 16), generator=g)
    with torch.no_grad():
        whole = ours.denoise(canvas, ours.encode(ids))
        parts = ours.encode(ids[:, 20:], ours.encode(ids[:, :20]))
        assert torch.allclose(ours.denoise(canvas, parts), whole, atol=1e-5)
        other = ours.encode(torch.randint(5, 300, (1, 12), generator=g), ours.encode(ids[:, :11]))
        other.truncate(11)
        assert other.length == 11
        ours.encode(ids[:, 11:], other)
        assert torch.allclose(ours.denoise(canvas, other), whole, atol=1e-5)


@pytest.mark.parametrize("steps,seed", [(8, 0), (8, 1), (48, 2)])
def test_generated_tokens_match_transformers_generate(tmp_path, steps, seed):
    """Same seed, same order of random draws: the whole generation (two chained canvases) is equal."""
    ours, ref = _pair(tmp_path, "tiny", seed=5)
    ids = torch.randint(5, 300, (1, 20), generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    with torch.no_grad():
        out = ref.generate(ids, max_new_tokens=32, max_denoising_steps=steps)
    theirs = out.sequences[0, 20:].tolist()
    r = sample(ours, ours.encode(ids), max_new_tokens=32, max_steps=steps, seed=seed)
    eos = set(ours.tokenizer.eos_ids)
    if r.ended[0]:  # transformers keeps the eos and pads after it; we stop before the eos
        cut = next(i for i, t in enumerate(theirs) if t in eos)
        assert theirs[:cut] == r.tokens[0]
    else:
        assert theirs == r.tokens[0]
    assert 1 <= r.steps <= 2 * steps


def test_a_checkpoint_written_by_transformers_loads_and_matches(tmp_path):
    from transformers import DiffusionGemmaConfig

    from diffill.model.engine.builder import TINY_TEXT, TINY_VISION
    text = dict(TINY_TEXT, per_layer_config=None)
    text.pop("per_layer_config")
    cfg = DiffusionGemmaConfig(text_config=dict(text, global_head_dim=24, num_global_key_value_heads=1),
                               vision_config=TINY_VISION, canvas_length=8)
    torch.manual_seed(0)
    ref = DiffusionGemmaForBlockDiffusion(cfg).eval()
    with torch.no_grad():  # non-trivial norms and scalars
        for n, p in ref.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    from diffill.model.engine.tokenizer import TURN_CLOSE, TURN_OPEN, byte_level_tokenizer
    byte_level_tokenizer([TURN_OPEN, TURN_CLOSE], vocab_size=320).save(str(tmp_path / "tokenizer.json"))

    read = []
    from diffill.model.engine import checkpoint
    original = checkpoint._Weights.get

    def recording_get(self, key):
        read.append(key)
        return original(self, key)

    checkpoint._Weights.get = recording_get
    try:
        ours = load_model(tmp_path)
    finally:
        checkpoint._Weights.get = original
    assert read and not any("vision" in k for k in read)  # the vision tower is never read
    assert ours.config.layers[1].head_dim == 24
    ids = torch.randint(5, 300, (1, 21))
    canvas = torch.randint(0, 300, (1, 8))
    with torch.no_grad():
        hc = _ref_cache(ref)
        ref.model.encoder(input_ids=ids, past_key_values=hc)
        b = ref(decoder_input_ids=canvas, past_key_values=hc).logits
        a = ours.denoise(canvas, ours.encode(ids))
    assert (a - b).abs().max().item() <= 1e-4
