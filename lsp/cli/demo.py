"""`diffill demo`: complete the hole in the bundled example file and print the file with it filled."""
from __future__ import annotations

import sys
from pathlib import Path
from diffill.lsp.cli.model_options import add_model_arguments

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fizzbuzz.py"
HOLE = (8, 9)  # 1-based line and column of the cursor in the example: the empty loop body


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help='print {"text", "steps", "ms"} only')


def run(args) -> int:
    import time

    from diffill.lsp.cli.complete import complete_text, read_source, split_at
    from diffill.lsp.code.syntax import language_from_path
    from diffill.lsp.cli.model_options import open_model
    from diffill.model.engine.infill import Infiller

    text = read_source(EXAMPLE)
    prefix, suffix = split_at(text, *HOLE)
    t0 = time.perf_counter()
    model, note = open_model(args.model, args.device, args.dtype)
    load_ms = (time.perf_counter() - t0) * 1000
    completion, res, _ = complete_text(Infiller(model), language_from_path(str(EXAMPLE)), prefix, suffix,
                                       args.steps, args.seed)
    if args.json:
        import json
        print(json.dumps({"text": completion, "steps": res.steps if res else 0,
                          "ms": round(res.ms, 1) if res else 0.0}))
        return 0
    print(f"diffill demo: completing {EXAMPLE.name} at line {HOLE[0]}, column {HOLE[1]}")
    print(f"model: {model.path} ({model.num_parameters() / 1e6:.1f}M parameters, loaded in {load_ms:.0f} ms)")
    if note:
        print(note)
    print(f"filled in {res.steps if res else 0} denoising steps, {res.ms if res else 0:.0f} ms\n")
    print("-" * 60)
    sys.stdout.write(prefix + "\x1b[1m" * sys.stdout.isatty() + completion + "\x1b[0m" * sys.stdout.isatty() + suffix)
    print("-" * 60)
    return 0
