"""`diffill demo`: complete the hole in the bundled example file and print the file with it filled."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from diffill.lsp.cli.model_options import add_model_arguments

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fizzbuzz.py"
HOLE = (8, 9)  # 1-based line and column of the cursor in the example: the empty loop body


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help='print {"text", "raw", "steps", "ms"} only')


def run(args) -> int:
    from diffill.lsp.cli.complete import complete_in_process, explain, offset_at, read_source
    from diffill.lsp.cli.model_options import open_model
    from diffill.lsp.code.syntax import language_from_path

    text = read_source(EXAMPLE)
    offset = offset_at(text, *HOLE)
    t0 = time.perf_counter()
    model, note = open_model(args.model, args.device, args.dtype)
    load_ms = (time.perf_counter() - t0) * 1000
    outcome = complete_in_process(model, text, offset, language_from_path(str(EXAMPLE)), steps=args.steps,
                                  seed=args.seed, doc="demo")
    reply = outcome.reply
    if args.json:
        print(json.dumps({"text": outcome.text, "raw": outcome.raw, "steps": reply.steps if reply else 0,
                          "ms": round(reply.ms, 1) if reply else 0.0}))
        return 0
    print(f"diffill demo: completing {EXAMPLE.name} at line {HOLE[0]}, column {HOLE[1]}")
    print(f"model: {model.path} ({model.num_parameters() / 1e6:.1f}M parameters, loaded in {load_ms:.0f} ms)")
    if note:
        print(note)
    print(explain(outcome))
    if not outcome.text:
        print("\nnothing is shown: diffill refused what the model wrote (see above)")
    print("-" * 60)
    bold, plain = ("\x1b[1m", "\x1b[0m") if sys.stdout.isatty() else ("", "")
    sys.stdout.write(text[:offset] + bold + outcome.text + plain + text[offset + outcome.replace:])
    print("-" * 60)
    return 0
