"""The memory estimate (model/engine/memory.py) against the real 26B-A4B config, a meta-device
instance of it and the embedded model's files; the picker's choices and refusals; experts quantised
while loading (load_model(experts=...)) against `diffill quantize` then load; `diffill info`'s estimate."""
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from diffill.kernels.quant import QuantWeight
from diffill.model import build_random_checkpoint, load_model
from diffill.model.engine import memory
from diffill.model.engine.builder import REAL_TEXT, make_config
from diffill.model.engine.config import CheckpointError, ModelConfig
from diffill.model.engine.default import EMBEDDED_DIR
from diffill.model.engine.infill import Infiller
from diffill.model.engine.quantize import quantize_checkpoint
from diffill.model.engine.transformer import DiffusionGemma, Experts, RMSNorm

GB = 1e9


def real_config(**extra) -> ModelConfig:
    return ModelConfig.from_dict({**make_config(dict(REAL_TEXT)), **extra})


def group_of(name: str, module) -> str:
    """Our parameter or buffer name -> the estimate's weight group."""
    if name.startswith("embed_tokens") or name.startswith("lm_head"):
        return "embedding"
    if isinstance(module, RMSNorm) or name.endswith("layer_scalar"):
        return "norms"
    for part, group in ((".self_attn.", "attention"), (".router.", "router"), (".experts.", "experts")):
        if part in name:
            return group
    return "mlp"  # layers' dense MLPs and the self-conditioning MLP


def test_real_26b_parameter_count_matches_a_meta_instance_group_by_group_and_the_published_25_2b():
    cfg = real_config()
    with torch.device("meta"):
        model = DiffusionGemma(cfg)
    counted = dict.fromkeys(memory.WEIGHT_GROUPS, 0)
    for mod_name, mod in model.named_modules():
        for attr, t in list(mod._parameters.items()) + list(mod._buffers.items()):
            if t is not None and attr not in mod._non_persistent_buffers_set:  # RoPE tables are computed
                counted[group_of(f"{mod_name}.{attr}", mod)] += t.numel()
    assert memory.parameter_counts(cfg) == counted
    total = sum(counted.values())
    assert total == model.num_parameters() + 2 * cfg.num_layers  # + the two layer scalars (buffers) per layer
    assert 25.2e9 <= total < 25.3e9                               # the model card's 25.2B
    assert 22.8e9 <= counted["experts"] < 22.9e9                  # docs/kernels.md: 22.8B of the 25.2B in experts
    assert 3.8e9 <= memory.active_parameters(cfg) < 3.9e9         # "3.8B active per token"


def test_real_26b_weights_are_50_5_gb_in_bf16_and_the_expert_forms_match_the_documented_sizes():
    cfg = real_config()
    bf16 = memory.weight_bytes(cfg, torch.bfloat16)
    assert 50.4 * GB < sum(bf16.values()) < 50.6 * GB            # docs/kernels.md: bf16 50.5 GB
    rest = sum(bf16.values()) - bf16["experts"]
    fp8 = memory.weight_bytes(cfg, torch.bfloat16, "fp8")["experts"]
    int4 = memory.weight_bytes(cfg, torch.bfloat16, "int4")["experts"]
    assert 25.2 * GB < fp8 + rest / 2 < 25.4 * GB                 # everything fp8: 25.2 GB, + 65 MB of fp32 row scales
    assert fp8 - bf16["experts"] / 2 == 30 * 128 * (1408 + 2816) * 4
    assert 14.1 * GB < int4 + rest / 2 < 14.3 * GB                # int4 experts (group-128 scales) + fp8 rest: 14.2 GB


@pytest.mark.parametrize("fmt,group", [("fp8", 128), ("int4", 128), ("int4", 32)])
def test_quantised_expert_bytes_equal_what_kernels_quant_stores(fmt, group):
    from diffill.kernels.quant import quantize
    for shape in ((3, 48, 64), (2, 64, 24)):  # K a multiple of the group, and a shorter last group
        w = torch.randn(shape)
        assert memory.quantised_bytes(shape, fmt, group) == quantize(w, fmt, group).nbytes


def test_kv_cache_estimate_equals_the_bytes_the_encoder_caches():
    model = load_model(EMBEDDED_DIR, dtype=torch.bfloat16)
    cache = model.encode(torch.randint(5, 300, (1, 37)))
    cached = sum(t.numel() * t.element_size() for t in cache.k + cache.v)
    assert cached == 37 * memory.kv_bytes_per_token(model.config, torch.bfloat16)
    est = memory.estimate(model.config, torch.bfloat16, context_tokens=100, canvas_length=28)
    assert est.cached_tokens == 128 and est.kv_cache == 128 * memory.kv_bytes_per_token(model.config, torch.bfloat16)


def test_real_26b_kv_cache_per_token_follows_the_layer_layout():
    # 25 sliding layers: 8 kv heads x 256; 5 full layers: 2 kv heads x 512 (k = v shares the
    # projection; the cache holds normed+rotated keys and normed values, both), bf16
    assert memory.kv_bytes_per_token(real_config(), torch.bfloat16) == (25 * 8 * 256 + 5 * 2 * 512) * 2 * 2


def test_embedded_weight_estimate_equals_its_safetensors_tensor_sizes():
    stored = 0
    with safe_open(str(EMBEDDED_DIR / "model.safetensors"), framework="pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            stored += t.numel() * t.element_size()
            assert t.dtype == torch.bfloat16
    cfg = ModelConfig.from_file(EMBEDDED_DIR / "config.json")
    assert sum(memory.weight_bytes(cfg, torch.bfloat16).values()) == stored


@pytest.mark.parametrize("fmt", ["fp8", "int4"])
def test_embedded_model_loaded_with_quantised_experts_holds_the_estimated_bytes(fmt):
    model = load_model(EMBEDDED_DIR, dtype=torch.bfloat16, experts=fmt)
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    held += sum(b.numel() * b.element_size() for n, b in model.named_buffers() if "inv_freq" not in n)
    held += sum(getattr(layer.experts, a).nbytes for layer in model.layers for a in ("gate_up_proj", "down_proj"))
    assert held == sum(memory.weight_bytes(model.config, torch.bfloat16, fmt).values())


def test_a_longer_context_and_the_unfused_head_need_more():
    cfg = real_config()
    base = memory.estimate(cfg, torch.bfloat16, context_tokens=2048)
    assert memory.estimate(cfg, torch.bfloat16, context_tokens=8192).total > base.total
    fused = memory.estimate(cfg, torch.bfloat16, context_tokens=2048, head_chunk=16384)
    # the unfused head keeps six [256, 262144] fp32 tensors (1.6 GB); the fused one [256, 16384] chunks
    assert 1.4 * GB < base.activations - fused.activations < 1.7 * GB
    assert memory.estimate(cfg, torch.bfloat16, documents=3).kv_cache == 3 * base.kv_cache


def test_default_context_is_the_servers_budget_and_a_checkpoint_may_name_its_own():
    from diffill.lsp.pipeline.complete import DEFAULT_CONTEXT_TOKENS
    assert memory.DEFAULT_CONTEXT_TOKENS == DEFAULT_CONTEXT_TOKENS
    assert memory.estimate(real_config(), "bfloat16").cached_tokens == DEFAULT_CONTEXT_TOKENS + 256
    embedded = ModelConfig.from_file(EMBEDDED_DIR / "config.json")
    assert memory.estimate(embedded, "bfloat16").cached_tokens == 256 + 256  # its diffill_context_tokens


# ---- the picker ----------------------------------------------------------------------------------

def totals(cfg, dtype=torch.bfloat16):
    return {f: memory.estimate(cfg, dtype, f).total for f in memory.FORMS}


def test_real_26b_totals_fall_from_bf16_to_fp8_to_int4_experts():
    t = totals(real_config())
    assert 52 * GB < t[None] < 60 * GB and 29 * GB < t["fp8"] < 35 * GB and 18 * GB < t["int4"] < 23 * GB


def test_auto_picks_the_first_form_that_fits():
    cfg = real_config()
    t = totals(cfg)
    for free, want in ((t[None], None), (t[None] - 1, "fp8"), (t["fp8"], "fp8"), (t["fp8"] - 1, "int4"),
                       (t["int4"], "int4")):
        plan = memory.plan_for_device(cfg, torch.bfloat16, "auto", int(free))
        assert plan.fits is True and plan.experts == want and plan.estimate.total <= free


def test_plan_message_names_every_form_and_what_fits():
    plan = memory.plan_for_device(real_config(), "bfloat16", "auto", int(24 * GB))
    assert re.fullmatch(r"needs [\d.]+ GB in bf16, [\d.]+ GB with fp8 experts, [\d.]+ GB with int4 experts; "
                        r"24\.0 GB free: int4 experts fit", plan.message), plan.message
    plan = memory.plan_for_device(real_config(), "bfloat16", "auto", int(80 * GB))
    assert plan.message.endswith("80.0 GB free: bf16 fits") and plan.experts is None


def test_nothing_fitting_is_refused_with_how_much_more_is_needed():
    cfg = real_config()
    t = totals(cfg)
    plan = memory.plan_for_device(cfg, torch.bfloat16, "auto", int(t["int4"] - 3 * GB))
    assert plan.fits is False and plan.experts == "int4"
    assert "nothing fits: int4 experts need 3.0 GB more than is free" in plan.message


def test_a_fixed_form_that_does_not_fit_names_the_one_that_would():
    cfg = real_config()
    t = totals(cfg)
    plan = memory.plan_for_device(cfg, torch.bfloat16, "fp8", int(t["int4"] + 0.5 * GB))
    assert plan.fits is False and plan.experts == "fp8"
    assert "int4 experts would fit (ask for experts int4, or auto)" in plan.message
    plan = memory.plan_for_device(cfg, torch.bfloat16, "none", int(t["fp8"]))
    assert plan.fits is False and "fp8 experts would fit" in plan.message
    assert memory.plan_for_device(cfg, torch.bfloat16, None, int(t[None])).fits is True


def test_unknown_free_memory_plans_the_first_candidate_without_a_verdict():
    plan = memory.plan_for_device(real_config(), torch.bfloat16, "auto", None)
    assert plan.fits is None and plan.experts is None and "free memory unknown" in plan.message


def test_a_quantised_checkpoint_keeps_its_form():
    cfg = real_config(quantization_config={"quant_method": "diffill", "format": "int4", "group_size": 128,
                                           "targets": ["experts"]})
    plan = memory.plan_for_device(cfg, torch.bfloat16, "auto", int(80 * GB))
    assert plan.experts == "int4" and plan.fits is True and list(plan.estimates) == ["int4"]
    assert plan.estimate.loading == 0                            # nothing to quantise while loading
    assert memory.estimate(real_config(), torch.bfloat16, "int4").loading > 1 * GB  # the bf16 checkpoint's case
    plan = memory.plan_for_device(cfg, torch.bfloat16, "fp8", int(80 * GB))
    assert plan.experts == "int4" and "stores int4 experts" in plan.message


def test_an_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown experts form"):
        memory.plan_for_device(real_config(), torch.bfloat16, "int2", None)


# ---- quantising while loading ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """fp32 random weights, K = 64 and 32: two int4 groups of 32 in gate_up, one in down."""
    return build_random_checkpoint(tmp_path_factory.mktemp("orig"), seed=7, canvas_length=8,
                                   config_overrides={"hidden_size": 64, "moe_intermediate_size": 32})


def same_quant(a: QuantWeight, b: QuantWeight) -> bool:
    return (a.format, a.group_size, a.shape, a.dtype) == (b.format, b.group_size, b.shape, b.dtype) \
        and torch.equal(a.data.view(torch.uint8), b.data.view(torch.uint8)) and torch.equal(a.scale, b.scale)


@pytest.mark.parametrize("fmt,group", [("fp8", 128), ("int4", 32)])
def test_loading_with_quantised_experts_equals_diffill_quantize_then_load(checkpoint, tmp_path, fmt, group):
    quantised = quantize_checkpoint(checkpoint, tmp_path / fmt, fmt, group, log=lambda m: None)
    want = load_model(quantised, dtype=torch.bfloat16)
    got = load_model(checkpoint, dtype=torch.bfloat16, experts=fmt, group_size=group)
    for a, b in zip(want.layers, got.layers):
        for attr in ("gate_up_proj", "down_proj"):
            assert isinstance(getattr(b.experts, attr), QuantWeight)
            assert same_quant(getattr(a.experts, attr), getattr(b.experts, attr))
    want_state, got_state = want.state_dict(), got.state_dict()
    assert want_state.keys() == got_state.keys()
    assert all(torch.equal(want_state[k], got_state[k]) for k in want_state)

    ids = torch.randint(5, 300, (1, 12), generator=torch.Generator().manual_seed(0))
    canvas = torch.randint(5, 300, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(want.denoise(canvas, want.encode(ids)), got.denoise(canvas, got.encode(ids)))
    r = Infiller(got).fill("def f(x):\n    return ", "\n", max_steps=3)
    assert r.steps >= 1 and len(r.tokens) > 0 and not r.cancelled


def test_experts_load_as_stored_by_default(checkpoint):
    model = load_model(checkpoint)
    assert isinstance(model.layers[0].experts, Experts)
    assert isinstance(model.layers[0].experts.gate_up_proj, torch.nn.Parameter)


def test_a_quantised_checkpoint_refuses_another_form_and_accepts_its_own(checkpoint, tmp_path):
    quantised = quantize_checkpoint(checkpoint, tmp_path / "q", "int4", 32, log=lambda m: None)
    with pytest.raises(CheckpointError, match="stores int4 experts"):
        load_model(quantised, experts="fp8")
    assert load_model(quantised, experts="int4").layers[0].experts.down_proj.format == "int4"
    with pytest.raises(CheckpointError, match="unknown experts form"):
        load_model(checkpoint, experts="int2")


# ---- diffill info ------------------------------------------------------------------------------------

def info(*args):
    p = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "info", *map(str, args)], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def real_config_only(tmp_path_factory, checkpoint):
    """The 26B-A4B config.json with a tokenizer and no weights at all: info must not need them."""
    d = tmp_path_factory.mktemp("real")
    (d / "config.json").write_text(json.dumps(make_config(dict(REAL_TEXT))))
    shutil.copy(checkpoint / "tokenizer.json", d / "tokenizer.json")
    return d


def test_info_without_a_gpu_says_free_memory_is_unknown_and_prints_every_form(real_config_only):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: its free memory is known")
    out = info("--model", real_config_only, "--device", "cuda")
    assert "free memory unknown (torch sees no CUDA GPU)" in out
    want = {f: memory.estimate(real_config(), torch.bfloat16, f) for f in memory.FORMS}
    total = next(line for line in out.splitlines() if line.strip().startswith("total"))
    assert total.split()[1:] == [f"{want[f].total / GB:.3f}" for f in memory.FORMS]
    assert re.search(r"bf16 +fp8 experts +int4 experts", out)
    assert "parameters                     25250986752" in out  # the existing output stays


def test_info_with_free_gb_says_what_fits(real_config_only):
    d = json.loads(info("--model", real_config_only, "--device", "cuda", "--free-gb", "24", "--json"))
    m = d["memory_estimate"]
    assert m["plan"] == {"experts": "int4", "fits": True,
                         "message": memory.plan_for_device(real_config(), "bfloat16", "auto", int(24e9)).message}
    assert m["forms"]["int4 experts"]["total"] == memory.estimate(real_config(), "bfloat16", "int4").total
    assert d["dtype"] == "bfloat16" and d["parameters"] == 25250986752
    out = info("--model", real_config_only, "--free-gb", "10", "--experts", "fp8")
    assert "10.0 GB free: nothing fits" in out


# ---- on a GPU -----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fmt", [None, "fp8", "int4"])
def test_a_fill_on_the_gpu_allocates_the_estimated_weights_and_stays_within_the_estimate(fmt):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    model = load_model(EMBEDDED_DIR, device="cuda", dtype=torch.bfloat16, experts=fmt)
    weights = torch.cuda.memory_allocated() - base
    est = memory.estimate(model.config, torch.bfloat16, fmt, context_tokens=256, canvas_length=256)
    assert est.weight_total <= weights <= est.weight_total * 1.02 + (1 << 20)  # + RoPE tables, allocator rounding
    Infiller(model).fill("def f(x):\n    y = x\n" * 20, "\n", max_steps=4)
    assert torch.cuda.max_memory_allocated() - base <= est.total - est.margin
    del model
    torch.cuda.empty_cache()
