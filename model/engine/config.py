"""Model and generation settings, read from an HF-layout checkpoint's config.json and generation_config.json.

The text stack of DiffusionGemma is described by `ModelConfig`; everything the engine needs per layer
(head dim, kv heads, window, RoPE) is resolved here once, so the network code never parses JSON.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

ARCHITECTURE = "DiffusionGemmaForBlockDiffusion"
MODEL_TYPE = "diffusion_gemma"


# Gemma 4's RoPE per layer kind: sliding layers rotate all of head_dim at theta 1e4, full layers a
# quarter of it ("proportional") at theta 1e6.
GEMMA4_ROPE = {
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
}


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded; the message says what is wrong and what to do."""


@dataclass
class LayerSpec:
    kind: str  # "sliding_attention" | "full_attention"
    head_dim: int
    num_kv_heads: int
    rope_theta: float
    rope_fraction: float  # share of head_dim that rotates ("proportional" RoPE); 1.0 for default RoPE
    k_eq_v: bool  # full layers have no v_proj: values are the (un-normed) keys

    @property
    def sliding(self) -> bool:
        return self.kind == "sliding_attention"


@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # dense GeGLU MLP (and the self-conditioning MLP)
    num_layers: int
    num_heads: int
    layers: list[LayerSpec]
    sliding_window: int
    num_experts: int
    top_k: int
    moe_intermediate_size: int
    rms_norm_eps: float = 1e-6
    final_logit_softcapping: float | None = 30.0
    canvas_length: int = 256
    tie_word_embeddings: bool = True
    eos_token_id: int | list[int] | None = 1
    noise: str = "uniform"  # "uniform" (DiffusionGemma) | "mask" (absorbing, trained by this project)
    prompt_format: str | None = None  # "fim" | "chat" | "clamped"; None: decided from the tokenizer
    raw: dict = field(default_factory=dict, repr=False)  # the config.json this came from

    @classmethod
    def from_dict(cls, cfg: dict) -> "ModelConfig":
        if not isinstance(cfg, dict):
            raise CheckpointError(f"config.json must hold a JSON object, not a {type(cfg).__name__}")
        arch = cfg.get("architectures") or []
        if cfg.get("model_type") != MODEL_TYPE and ARCHITECTURE not in arch:
            raise CheckpointError(
                f"this checkpoint is a {cfg.get('model_type') or arch or 'unknown model'}, not DiffusionGemma "
                f"(model_type {MODEL_TYPE!r}); diffill runs DiffusionGemma-architecture checkpoints only"
            )
        t = cfg.get("text_config")
        if not isinstance(t, dict):
            raise CheckpointError("config.json has no text_config: not a DiffusionGemma checkpoint")
        _check_numbers(cfg, t)
        try:
            n = int(t["num_hidden_layers"])
            kinds = list(t.get("layer_types") or [
                "sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(n)])
            if len(kinds) != n:
                raise CheckpointError(f"config.json lists {len(kinds)} layer_types for {n} layers")
            head_dim = int(t.get("head_dim", 256))
            kv = int(t.get("num_key_value_heads", 4))
            if "per_layer_config" in t:
                overrides = {int(k): v for k, v in (t["per_layer_config"] or {}).items()}
            else:  # older configs: global_* keys describe the full-attention layers
                full = {"head_dim": int(t.get("global_head_dim", 512))}
                if t.get("num_global_key_value_heads") is not None:
                    full["num_key_value_heads"] = int(t["num_global_key_value_heads"])
                overrides = {i: full for i, k in enumerate(kinds) if k == "full_attention"}
            rope = t.get("rope_parameters") or GEMMA4_ROPE
            layers = []
            for i, kind in enumerate(kinds):
                o = overrides.get(i, {})
                r = rope[kind]
                if r.get("rope_type", "default") not in ("default", "proportional"):
                    raise CheckpointError(f"unsupported rope_type {r.get('rope_type')!r} on {kind} layers")
                layers.append(LayerSpec(
                    kind=kind,
                    head_dim=int(o.get("head_dim", head_dim)),
                    num_kv_heads=int(o.get("num_key_value_heads", kv)),
                    rope_theta=float(r["rope_theta"]),
                    rope_fraction=float(r.get("partial_rotary_factor", 1.0)) if r.get("rope_type") == "proportional" else 1.0,
                    k_eq_v=(kind == "full_attention"),
                ))
            if t.get("use_bidirectional_attention") == "all":
                raise CheckpointError("use_bidirectional_attention='all' (a bidirectional encoder) is not supported")
            softcap = t.get("final_logit_softcapping", 30.0)
            return cls(
                vocab_size=int(t["vocab_size"]),
                hidden_size=int(t["hidden_size"]),
                intermediate_size=int(t["intermediate_size"]),
                num_layers=n,
                num_heads=int(t["num_attention_heads"]),
                layers=layers,
                sliding_window=int(t.get("sliding_window", 512)),
                num_experts=int(t["num_experts"]),
                top_k=int(t["top_k_experts"]),
                moe_intermediate_size=int(t["moe_intermediate_size"]),
                rms_norm_eps=float(t.get("rms_norm_eps", 1e-6)),
                final_logit_softcapping=None if softcap is None else float(softcap),
                canvas_length=int(cfg.get("canvas_length", 256)),
                tie_word_embeddings=bool(cfg.get("tie_word_embeddings", t.get("tie_word_embeddings", True))),
                eos_token_id=t.get("eos_token_id", 1),
                noise=str(cfg.get("diffill_noise", "uniform")),
                prompt_format=cfg.get("diffill_prompt_format"),
                raw=cfg,
            )
        except KeyError as exc:
            raise CheckpointError(f"config.json text_config lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise CheckpointError(f"config.json has a malformed text_config: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a checkpoint directory needs config.json")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
        c = cls.from_dict(cfg)
        if c.noise not in ("uniform", "mask"):
            raise CheckpointError(f"unknown diffill_noise {c.noise!r} in {path} (expected 'uniform' or 'mask')")
        return c


# text_config sizes that must be whole numbers of at least this much (when present)
_SIZES = {"vocab_size": 1, "hidden_size": 1, "intermediate_size": 1, "num_hidden_layers": 1,
          "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 1, "global_head_dim": 1,
          "num_global_key_value_heads": 1, "sliding_window": 1, "num_experts": 1, "top_k_experts": 1,
          "moe_intermediate_size": 1}


def _check_numbers(cfg: dict, t: dict) -> None:
    """Sizes that are whole and positive, a top-k the experts can give, finite positive scales: a
    config.json that breaks these is refused here, with its key, instead of failing deep in torch."""
    def whole(where: str, key: str, value, least: int) -> None:
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value != int(value) or value < least):
            raise CheckpointError(f"config.json {where}{key} must be a whole number of at least {least}, "
                                  f"got {value!r}")

    for key, least in _SIZES.items():
        if t.get(key) is not None:
            whole("text_config.", key, t[key], least)
    if cfg.get("canvas_length") is not None:
        whole("", "canvas_length", cfg["canvas_length"], 1)
    if isinstance(t.get("top_k_experts"), int) and isinstance(t.get("num_experts"), int) \
            and t["top_k_experts"] > t["num_experts"]:
        raise CheckpointError(f"config.json text_config.top_k_experts ({t['top_k_experts']}) exceeds "
                              f"num_experts ({t['num_experts']})")
    for key in ("rms_norm_eps", "final_logit_softcapping"):
        value = t.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise CheckpointError(f"config.json text_config.{key} must be a positive number, got {value!r}")
    for kind, r in (t.get("rope_parameters") or {}).items():
        if not isinstance(r, dict):
            raise CheckpointError(f"config.json text_config.rope_parameters.{kind} must be an object")
        theta, fraction = r.get("rope_theta"), r.get("partial_rotary_factor", 1.0)
        if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not math.isfinite(theta) or theta <= 0:
            raise CheckpointError(f"config.json rope_parameters.{kind}.rope_theta must be a positive number, "
                                  f"got {theta!r}")
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
            raise CheckpointError(f"config.json rope_parameters.{kind}.partial_rotary_factor must be in (0, 1], "
                                  f"got {fraction!r}")


@dataclass
class GenerationSettings:
    """Sampler defaults (generation_config.json), overridable per request."""
    max_denoising_steps: int = 48
    entropy_bound: float = 0.1
    t_min: float = 0.4
    t_max: float = 0.8
    stability_threshold: int = 1
    confidence_threshold: float = 0.005
    max_new_tokens: int = 256
    eos_token_id: list[int] = field(default_factory=lambda: [1])

    @classmethod
    def from_file(cls, path: str | Path, eos_default=None) -> "GenerationSettings":
        s = cls()
        if eos_default is not None:
            s.eos_token_id = list(eos_default) if isinstance(eos_default, (list, tuple)) else [int(eos_default)]
        path = Path(path)
        if not path.is_file():
            return s
        try:
            g = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(g, dict):
            raise CheckpointError(f"{path} must hold a JSON object, not a {type(g).__name__}")
        for key in ("max_denoising_steps", "t_min", "t_max", "stability_threshold",
                    "confidence_threshold", "max_new_tokens"):
            if g.get(key) is not None:
                try:
                    setattr(s, key, type(getattr(s, key))(g[key]))
                except (TypeError, ValueError, OverflowError):
                    raise CheckpointError(f"{path}: {key} must be a number, got {g[key]!r}") from None
        sc = g.get("sampler_config")
        if isinstance(sc, dict) and sc.get("entropy_bound") is not None:
            s.entropy_bound = float(sc["entropy_bound"])
        elif g.get("entropy_bound") is not None:
            s.entropy_bound = float(g["entropy_bound"])
        if g.get("eos_token_id") is not None:
            e = g["eos_token_id"]
            s.eos_token_id = list(e) if isinstance(e, list) else [int(e)]
        return s
