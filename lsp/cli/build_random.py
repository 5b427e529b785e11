"""`diffill build-random`: a random-weight checkpoint in the real layout (tests, benchmarks)."""
import json


def add_arguments(p):
    p.add_argument("out", help="output directory")
    p.add_argument("--preset", choices=["tiny", "real"], default="tiny",
                   help="tiny (tests) or the real 26B-A4B text shapes (about 50 GB in bf16)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="text-config override, e.g. --set hidden_size=256 (JSON values)")
    p.add_argument("--canvas-length", type=int, default=32)
    p.add_argument("--noise", choices=["uniform", "mask"], default="uniform")
    p.add_argument("--fim", action="store_true", help="add FIM tokens to the tokenizer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")


def run(args) -> int:
    import torch
    from diffill.model import build_random_checkpoint

    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = json.loads(v)
    out = build_random_checkpoint(args.out, config_overrides=overrides, seed=args.seed, preset=args.preset,
                                  canvas_length=args.canvas_length, noise=args.noise, fim=args.fim,
                                  dtype=getattr(torch, args.dtype), max_shard_bytes=4 << 30)
    print(out)
    return 0
