"""What the completion gates cost per completion in a large file.

The document is held-out Python (the `hypothesis` package's modules, bench/heldout_holes.py's
source) concatenated to at least --kb kilobytes (300 by default). Cursors: line, line-rest and
block holes punched into it with a fixed seed (the hole's middle taken out of the document). Each
cursor gets two completions, as a model over-generating might write them:
  echo   the hole's middle followed by 400 characters of the code below it
  junk   400 characters that do not belong there (the same length of another hole's code, on the
         cursor's line: every cut the parse gate tries fails, its worst case)

Per completion, as the pipeline runs it: `decide_span` (not counted: it runs before the fill), then
the trim's filters in order on a `Context`, each timed (the loop of `trim()`, with a clock around
each filter). Reported: p50/p95 of the gates' total (parse_gate, repetition, unreachable,
word_at_cursor, word_after_cursor, cursor_spacing; goal p50 <= 5 ms; span_end's rule for a line
span that opens a block is part of span_end) and of each,
and of the whole trim, in ms.

    .venv/bin/python bench/gate_latency.py            # bench/results/gate_latency.{json,md}
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import heldout_holes  # noqa: E402
from record import percentile, write_results  # noqa: E402

from diffill.lsp.code.cursor import normalise_newlines  # noqa: E402
from diffill.lsp.code.span import decide_span  # noqa: E402
from diffill.lsp.code.trim import FILTERS, filter_name  # noqa: E402
from diffill.lsp.code.trim.context import Context  # noqa: E402

GATES = ("parse_gate", "repetition", "unreachable", "word_at_cursor", "word_after_cursor", "cursor_spacing")
OVERRUN = 400


def big_document(kb: int) -> str:
    parts, size = [], 0
    for path in heldout_holes.source_files("hypothesis"):
        text = path.read_text(encoding="utf-8")
        parts.append(text if text.endswith("\n") else text + "\n")
        size += len(text.encode("utf-8"))
        if size >= kb * 1024:
            break
    return "\n\n".join(parts)


def cursors(document: str, per_kind: int, seed: int) -> list[dict]:
    """Holes punched into the document (the same candidate rules as bench/heldout_holes.py)."""
    data = document.encode("utf-8")
    tree = heldout_holes._parser().parse(data)
    pool = heldout_holes._candidates(data, tree)
    rng = random.Random(seed)
    out = []
    for kind in heldout_holes.KINDS:
        for a, b, _ in sorted(rng.sample(pool[kind], min(per_kind, len(pool[kind])))):
            out.append({"kind": kind, "prefix": data[:a].decode("utf-8"), "middle": data[a:b].decode("utf-8"),
                        "suffix": data[b:].decode("utf-8")})
    return out


def timed_trim(language: str, prefix: str, suffix: str, completion: str) -> dict[str, float]:
    """The filters of trim() on one completion, each timed (ms); "trim" is their sum."""
    span = decide_span(language, prefix, suffix)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    ctx = Context.of(language, prefix, suffix, span)
    times["context"] = (time.perf_counter() - t0) * 1000
    text = normalise_newlines(completion)
    for step in FILTERS:
        t0 = time.perf_counter()
        text = step.apply(ctx, text) if text else text
        times[filter_name(step)] = (time.perf_counter() - t0) * 1000
    times["gates"] = sum(v for k, v in times.items() if k in GATES)
    times["trim"] = sum(times.values()) - times["gates"]
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kb", type=int, default=300)
    ap.add_argument("--per-kind", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    document = big_document(args.kb)
    holes = cursors(document, args.per_kind, args.seed)
    samples: dict[str, dict[str, list[float]]] = {"echo": {}, "junk": {}}
    for i, hole in enumerate(holes):
        other = holes[(i + len(holes) // 2) % len(holes)]
        completions = {"echo": hole["middle"] + hole["suffix"][:OVERRUN],
                       "junk": (other["middle"] + other["suffix"])[:OVERRUN]}
        for mode, completion in completions.items():
            for name, ms in timed_trim("python", hole["prefix"], hole["suffix"], completion).items():
                samples[mode].setdefault(name, []).append(ms)

    names = ["gates", *GATES, "trim"]
    data: dict = {"document_kb": round(len(document.encode("utf-8")) / 1024), "cursors": len(holes),
                  "completions_per_mode": len(holes), "ms": {}}
    md = [f"Document: {data['document_kb']} KB of held-out Python (`hypothesis` modules concatenated); "
          f"{len(holes)} cursors (line, line-rest and block holes, seed {args.seed}), each with an *echo* "
          f"completion (the middle and {OVERRUN} characters of the code below) and a *junk* one ({OVERRUN} "
          "characters of another hole's code). Times in ms per completion; *gates* is the sum of the "
          "gate filters, *trim* everything else in the trim (the other filters and the context).\n",
          "| completion | what | p50 ms | p95 ms | max ms |", "|---|---|---|---|---|"]
    for mode in ("echo", "junk"):
        data["ms"][mode] = {}
        for name in names:
            xs = samples[mode].get(name, [])
            row = {"p50": percentile(xs, 0.5, 3), "p95": percentile(xs, 0.95, 3), "max": round(max(xs), 3) if xs else None}
            data["ms"][mode][name] = row
            md.append(f"| {mode} | {name} | {row['p50']} | {row['p95']} | {row['max']} |")
    both = samples["echo"]["gates"] + samples["junk"]["gates"]
    data["gates_p50_ms"] = percentile(both, 0.5, 3)
    data["goal_p50_ms"] = 5.0
    md.append(f"\nGates, both kinds of completion together: p50 {data['gates_p50_ms']} ms (goal <= 5 ms).")
    write_results("gate_latency", data, "\n".join(md), "Completion gates: cost per completion in a large file",
                  argv, out_dir=args.out_dir)
    print(f"gates p50 {data['gates_p50_ms']} ms; echo {data['ms']['echo']['gates']}, junk {data['ms']['junk']['gates']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
