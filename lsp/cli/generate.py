"""`diffill generate`: the raw continuation of a prompt, canvas by canvas."""
import json
import sys
import time
from diffill.lsp.cli.model_options import add_model_arguments


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--max-new-tokens", type=int, help="tokens to generate (default: one canvas)")
    p.add_argument("--json", action="store_true", help='print {"text", "steps", "ms"}')


def run(args) -> int:
    import torch
    from diffill.lsp.cli.model_options import open_model
    from diffill.model.engine.sampler import sample

    model, note = open_model(args.model, args.device, args.dtype)
    if note:
        print(note, file=sys.stderr)
    tok = model.tokenizer
    ids = ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(args.prompt)
    t0 = time.perf_counter()
    with torch.inference_mode():
        cache = model.encode(torch.tensor([ids], device=model.device))
        r = sample(model, cache, max_new_tokens=args.max_new_tokens, max_steps=args.steps, seed=args.seed)
    ms = (time.perf_counter() - t0) * 1000
    text = tok.decode(r.tokens[0])
    if args.json:
        print(json.dumps({"text": text, "steps": r.steps, "ms": round(ms, 1)}))
    else:
        print(text)
    return 0
