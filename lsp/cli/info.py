"""`diffill info`: what a checkpoint holds and what it needs.

Reads config.json and tokenizer.json only (the model is instantiated on the meta device, no weight
is read), so it answers for a checkpoint larger than this machine. The memory estimate
(model/engine/memory.py) is given per part for each form of the experts, and compared with the
free memory of --device (a CUDA GPU) or with --free-gb.
"""
import json
import sys

FORM_CHOICES = ["auto", "none", "fp8", "int4"]


def add_arguments(p):
    p.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    p.add_argument("--device", default="cpu",
                   help="cuda or cuda:N: compare the estimate with that GPU's free memory (default: cpu, not compared)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype; auto: bfloat16 on CUDA, float32 on the CPU")
    p.add_argument("--experts", default="auto", choices=FORM_CHOICES,
                   help="experts' form: auto picks the first of none (unquantised), fp8, int4 that fits")
    p.add_argument("--context-tokens", type=int,
                   help="prefix + suffix tokens to plan for (default: the checkpoint's budget, else the server's)")
    p.add_argument("--free-gb", type=float, help="plan for this much free memory (GB) instead of the device's")
    p.add_argument("--json", action="store_true")


def describe(model) -> dict:
    from diffill.model.engine.memory import active_parameters, kv_bytes_per_token

    cfg = model.config
    kinds = [s.kind for s in cfg.layers]
    n = model.num_parameters()
    return {
        "path": str(getattr(model, "path", "")),
        "parameters": n,
        "active_parameters_per_token": active_parameters(cfg),
        "layers": cfg.num_layers,
        "sliding_layers": kinds.count("sliding_attention"),
        "full_layers": kinds.count("full_attention"),
        "hidden_size": cfg.hidden_size,
        "experts": cfg.num_experts,
        "experts_per_token": cfg.top_k,
        "vocab_size": cfg.vocab_size,
        "canvas_length": cfg.canvas_length,
        "noise": cfg.noise,
        "prompt_format": cfg.prompt_format or ("fim" if model.tokenizer.fim else "chat"),
        "dtype": str(model.dtype).replace("torch.", ""),
        "memory_gb": {dt: round(n * b / 1e9, 3) for dt, b in (("float32", 4), ("bfloat16", 2), ("fp8", 1))},
        "kv_cache_bytes_per_token_bf16": kv_bytes_per_token(cfg, "bfloat16"),
    }


def memory_section(cfg, dtype, device: str, experts: str, context_tokens, free_gb) -> dict:
    """The estimate per form and the plan, as plain numbers (bytes) and one line."""
    from diffill.model.engine import memory

    if free_gb is not None:
        free, where = int(free_gb * 1e9), "as given (--free-gb)"
    elif device.startswith("cuda"):
        free = memory.free_device_bytes(device)
        where = f"on {device}" if free is not None else "unknown (torch sees no CUDA GPU)"
    else:
        free, where = None, "unknown (not checked for the CPU; give --device cuda or --free-gb)"
    plan = memory.plan_for_device(cfg, dtype, experts, free, context_tokens)
    some = plan.estimate
    return {
        "dtype": str(some.dtype).replace("torch.", ""),
        "context_tokens": some.cached_tokens - cfg.canvas_length,
        "canvas_length": cfg.canvas_length,
        "free_bytes": free,
        "free": where,
        "forms": {memory.form_name(f, dtype): e.parts() for f, e in plan.estimates.items()},
        "plan": {"experts": plan.experts or "none", "fits": plan.fits, "message": plan.message},
    }


def print_memory(m: dict) -> None:
    forms = list(m["forms"])
    print(f"\nmemory estimate (GB)           {m['dtype']}, context {m['context_tokens']} + canvas "
          f"{m['canvas_length']} tokens; free memory {m['free']}"
          + ("" if m["free_bytes"] is None else f": {m['free_bytes'] / 1e9:.1f} GB"))
    print(f"{'':30} " + "".join(f"{f:>14}" for f in forms))
    for part in m["forms"][forms[0]]:
        print(f"  {part:28} " + "".join(f"{m['forms'][f][part] / 1e9:14.3f}" for f in forms))
    print(f"{'plan':30} {m['plan']['message']}")


def run(args) -> int:
    from diffill.model import CheckpointError, resolve_dtype

    try:
        model, note = _meta_model(args.model)
        dtype = resolve_dtype(args.dtype, args.device)
        d = describe(model)
        d["dtype"] = str(dtype).replace("torch.", "")
        d["memory_estimate"] = memory_section(model.config, dtype, args.device,
                                              None if args.experts == "none" else args.experts,
                                              args.context_tokens, args.free_gb)
    except CheckpointError as exc:
        print(f"diffill: cannot read the model: {exc}", file=sys.stderr)
        return 1
    if note:
        d["note"] = note
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    m = d.pop("memory_estimate")
    for k, v in d.items():
        print(f"{k:30} {v}")
    print_memory(m)
    return 0


def _meta_model(path):
    """(model on the meta device with its tokenizer and path, note): no weight is read."""
    import torch

    from diffill.model import DiffusionGemma, ModelConfig
    from diffill.model.engine.checkpoint import resolve_path
    from diffill.model.engine.default import default_model_path
    from diffill.model.engine.tokenizer import Tokenizer

    note = None
    if not path:
        path, random = default_model_path()
        if random:
            note = "diffill: no embedded model in this build; describing a random-weight checkpoint"
    directory = resolve_path(path)
    cfg = ModelConfig.from_file(directory / "config.json")
    with torch.device("meta"):
        model = DiffusionGemma(cfg)
    model.tokenizer = Tokenizer.from_dir(directory)
    model.path = directory
    return model, note
