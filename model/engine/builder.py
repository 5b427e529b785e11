"""Random-weight checkpoints in the real HF layout, at any config: tiny ones for tests, the real
26B-A4B shapes for GPU benchmarks. The files are what transformers' DiffusionGemmaForBlockDiffusion
writes (decoder keys, tied encoder weights omitted), so both engines load them.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from diffill.model.engine.checkpoint import state_for_checkpoint, write_generation_config, write_safetensors
from diffill.model.engine.config import GEMMA4_ROPE, GenerationSettings, ModelConfig
from diffill.model.engine.tokenizer import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, TURN_CLOSE, TURN_OPEN, Tokenizer, byte_level_tokenizer
from diffill.model.engine.transformer import DiffusionGemma

# The text config of google/diffusiongemma-26B-A4B-it.
REAL_TEXT = dict(
    vocab_size=262_144, hidden_size=2816, intermediate_size=2112, num_hidden_layers=30,
    num_attention_heads=16, num_key_value_heads=8, head_dim=256,
    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 5,
    sliding_window=1024, num_experts=128, top_k_experts=8, moe_intermediate_size=704,
    per_layer_config={str(i): {"head_dim": 512, "num_key_value_heads": 2} for i in range(5, 30, 6)},
)

# Tiny, for tests: vocabulary >= 261 so the byte-level tokenizer fits.
TINY_TEXT = dict(
    vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=16, layer_types=["sliding_attention", "full_attention"],
    sliding_window=16, num_experts=4, top_k_experts=2, moe_intermediate_size=16,
    per_layer_config={"1": {"head_dim": 16, "num_key_value_heads": 1}},
)

# A minimal vision config so that transformers can instantiate the class (its tower is never read by us).
TINY_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=8, global_head_dim=8, patch_size=4,
                   position_embedding_size=16, model_type="gemma4_vision")

PRESETS = {"tiny": TINY_TEXT, "real": REAL_TEXT}


def make_config(text: dict, canvas_length: int = 256, noise: str = "uniform", prompt_format: str | None = None,
                vision: dict | None = None) -> dict:
    """A full config.json dict for a DiffusionGemma checkpoint."""
    t = {"model_type": "diffusion_gemma_text", "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
         "rope_parameters": copy.deepcopy(GEMMA4_ROPE),
         "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": True,
         "attention_bias": False, "attention_dropout": 0.0, "max_position_embeddings": 131072,
         "use_bidirectional_attention": None, "final_logit_softcapping": 30.0}
    t.update(text)
    t["layer_types"] = list(t["layer_types"])
    cfg = {"architectures": ["DiffusionGemmaForBlockDiffusion"], "model_type": "diffusion_gemma",
           "canvas_length": canvas_length, "text_config": t, "vision_config": dict(vision or TINY_VISION),
           "tie_word_embeddings": True, "image_token_id": 258880, "boi_token_id": 255999, "eoi_token_id": 258882}
    if noise != "uniform":
        cfg["diffill_noise"] = noise
    if prompt_format:
        cfg["diffill_prompt_format"] = prompt_format
    return cfg


@torch.no_grad()
def init_weights_(model: DiffusionGemma, seed: int = 0, std: float = 0.02, embed_std: float | None = None,
                  jitter: float = 0.1) -> DiffusionGemma:
    """Weights drawn in place, on the model's device, from one generator seeded by `seed`.

    Matrices N(0, std) (the embedding N(0, embed_std) when given); vectors (norms, router and
    expert scales) and the layer scalars 1 + jitter * N(0, 1): near 1 but not equal by default, so
    that tests notice a norm or a scale read from the wrong place; exactly 1 with jitter=0 (no draw).
    """
    g = torch.Generator(device=model.device).manual_seed(seed)
    tensors = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if "layer_scalar" in n]
    for name, p in tensors:
        if p.dim() >= 2:
            sd = embed_std if embed_std is not None and name == "embed_tokens.weight" else std
            p.copy_(torch.randn(p.shape, generator=g, device=p.device).mul_(sd))
        elif jitter:
            p.copy_(torch.randn(p.shape, generator=g, device=p.device).mul_(jitter).add_(1.0))
        else:
            p.fill_(1.0)
    return model


def build_model(config: dict, seed: int = 0, device="cpu", dtype=torch.float32, **init) -> DiffusionGemma:
    """A random model from a config.json dict, built directly on the device (no file); `init` goes to
    init_weights_."""
    cfg = ModelConfig.from_dict(config)
    with torch.device(device):
        model = DiffusionGemma(cfg)
    init_weights_(model, seed, **init)
    return model.to(dtype).eval()


RANDOM_PREFIX = "random:"


def random_config(preset: str | dict, canvas_length: int = 256) -> dict:
    """The config.json dict of a random model of a preset's shape (or of a text-config dict)."""
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"unknown random preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return make_config(dict(PRESETS[preset] if isinstance(preset, str) else preset), canvas_length=canvas_length)


def random_model(preset: str | dict, device="cpu", dtype=torch.bfloat16, experts: str | None = None,
                 canvas_length: int = 256, seed: int = 0) -> DiffusionGemma:
    """A random-weight model of a preset's shape ("tiny", "real": 26B-A4B; or a text-config dict) built on the device, never
    written to a file, with a byte-level tokenizer (chat turn markers) and default generation settings:
    what `diffill worker --model random:PRESET` serves, to run the whole path at a real shape where a
    50 GB checkpoint cannot be written. experts "fp8" or "int4" quantises the experts layer by layer,
    freeing each unquantised tensor as it goes."""
    from diffill.kernels.quant import quantize

    config = random_config(preset, canvas_length)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the weights are drawn in dtype, never materialised in fp32
    try:
        model = build_model(config, seed=seed, device=device, dtype=dtype)
    finally:
        torch.set_default_dtype(default)
    if experts:
        for layer in model.layers:
            ex = layer.experts
            for attr in ("gate_up_proj", "down_proj"):
                qw = quantize(getattr(ex, attr).data, experts)
                del ex._parameters[attr]
                setattr(ex, attr, qw)
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
    tok = Tokenizer(byte_level_tokenizer([TURN_OPEN, TURN_CLOSE], vocab_size=model.config.vocab_size))
    model.tokenizer = tok
    model.generation = GenerationSettings(eos_token_id=tok.eos_ids)
    model.path = f"{RANDOM_PREFIX}{preset if isinstance(preset, str) else 'custom'}"
    return model


def build_random_checkpoint(out_dir, config_overrides: dict | None = None, seed: int = 0,
                            tokenizer_file: str | Path | None = None, preset: str = "tiny",
                            canvas_length: int = 32, noise: str = "uniform", prompt_format: str | None = None,
                            fim: bool = False, dtype: torch.dtype = torch.float32,
                            max_shard_bytes: int | None = None,
                            generation: GenerationSettings | None = None) -> Path:
    """Write a random-weight checkpoint (config.json, model.safetensors, tokenizer.json,
    generation_config.json) and return its directory.

    The tokenizer is tokenizer_file if given, else a byte-level one with the chat turn markers (and the
    FIM tokens when fim=True); the vocabulary grows to fit it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = dict(PRESETS[preset])
    text.update(config_overrides or {})
    if tokenizer_file is not None:
        from tokenizers import Tokenizer as HF
        hf_tok = HF.from_file(str(tokenizer_file))
    else:
        extra = [TURN_OPEN, TURN_CLOSE] + ([FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE] if fim else [])
        hf_tok = byte_level_tokenizer(extra, vocab_size=text["vocab_size"])
    text["vocab_size"] = max(text["vocab_size"], hf_tok.get_vocab_size(with_added_tokens=True))
    config = make_config(text, canvas_length=canvas_length, noise=noise, prompt_format=prompt_format)
    model = build_model(config, seed=seed, dtype=dtype)
    hf_tok.save(str(out / "tokenizer.json"))
    write_safetensors({k: v.cpu() for k, v in state_for_checkpoint(model).items()}, out, max_shard_bytes)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tok = Tokenizer(hf_tok)
    g = generation or GenerationSettings(eos_token_id=tok.eos_ids)
    write_generation_config(out, g)
    return out
