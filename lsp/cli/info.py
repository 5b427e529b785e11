"""`diffill info`: what a checkpoint holds and what it needs."""
import json


def add_arguments(p):
    p.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    p.add_argument("--json", action="store_true")


def describe(model) -> dict:
    cfg = model.config
    n = model.num_parameters()
    e, i, h = cfg.num_experts, cfg.moe_intermediate_size, cfg.hidden_size
    expert_params = cfg.num_layers * e * 3 * i * h
    active = n - expert_params + cfg.num_layers * cfg.top_k * 3 * i * h
    kinds = [s.kind for s in cfg.layers]
    kv_bytes_per_token = sum(2 * s.num_kv_heads * s.head_dim for s in cfg.layers) * 2
    return {
        "path": str(getattr(model, "path", "")),
        "parameters": n,
        "active_parameters_per_token": active,
        "layers": cfg.num_layers,
        "sliding_layers": kinds.count("sliding_attention"),
        "full_layers": kinds.count("full_attention"),
        "hidden_size": h,
        "experts": e,
        "experts_per_token": cfg.top_k,
        "vocab_size": cfg.vocab_size,
        "canvas_length": cfg.canvas_length,
        "noise": cfg.noise,
        "prompt_format": cfg.prompt_format or ("fim" if model.tokenizer.fim else "chat"),
        "dtype": str(model.dtype).replace("torch.", ""),
        "memory_gb": {dt: round(n * b / 1e9, 3) for dt, b in (("float32", 4), ("bfloat16", 2), ("fp8", 1))},
        "kv_cache_bytes_per_token_bf16": kv_bytes_per_token,
    }


def run(args) -> int:
    from diffill.lsp.cli.model_options import open_model

    model, note = open_model(args.model)
    d = describe(model)
    if note:
        d["note"] = note
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    for k, v in d.items():
        print(f"{k:30} {v}")
    return 0
