"""Span and trim on a large file, keystroke after keystroke: one parse cache per role against one
shared by both.

The document is two standard-library modules end to end (_pydecimal.py and argparse.py, about
330 KB). A new line is opened deep in the file, inside a method body, and a 50-character statement
is typed there one character at a time. At each keystroke the pipeline's own steps run on the
document region around the cursor (lsp/pipeline/complete.py: `document_region`, `decide_span`,
then `trim` of a fixed two-line completion, as a fill would return one).

    fresh     no tree kept between calls: every parse starts from nothing
    shared    span and trim reparse one tree per language (both roles mapped to one cache,
              the behaviour before each role had its own), so each parses after the other's text
    per_role  `syntax.incremental_tree(language, role)`: span's tree follows the document,
              trim's the candidate completions

Rounds alternate the modes (each from empty caches, the document parsed once before its
first keystroke); percentiles are over all keystrokes of all rounds.

    .venv/bin/python bench/parse_cache.py             # 3 rounds of 50 keystrokes per mode

Writes bench/results/parse_cache.json and .md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import percentile, write_results  # noqa: E402

from diffill.lsp.code import lexing, syntax  # noqa: E402
from diffill.lsp.code.span import decide_span  # noqa: E402
from diffill.lsp.code.trim import trim  # noqa: E402
from diffill.lsp.pipeline.complete import document_region  # noqa: E402

MODULES = ("_pydecimal.py", "argparse.py")
TYPED = "result = self._rescale(other, context.rounding)  #"  # 50 keystrokes
COMPLETION = "_finish(value)\n        return result\n"
DEPTH = 0.65  # where the cursor goes, as a share of the document


def document() -> tuple[str, int]:
    """The document and the cursor: the start of a new line opened after a method-body line deep
    in the file, indented as that line."""
    lib = Path(os.__file__).parent
    text = "".join((lib / name).read_text() for name in MODULES)
    at = text.index("\n        return ", int(len(text) * DEPTH)) + 1
    end = text.index("\n", at) + 1
    return text[:end] + "        \n" + text[end:], end + 8


def _fresh(language: str, role: str) -> syntax.IncrementalTree | None:
    kept = REAL(language, role)
    return None if kept is None else syntax.IncrementalTree(kept.language)


REAL = syntax.incremental_tree
TREE_FOR = {"fresh": _fresh, "shared": lambda language, role: REAL(language, "span"), "per_role": REAL}


def keystrokes(text: str, cursor: int, mode: str) -> list[dict]:
    """Time span and trim at each keystroke of TYPED, from empty caches."""
    syntax._TREES.clear()
    lexing.lex.cache_clear()
    tree_for = TREE_FOR[mode]
    samples = []
    with mock.patch.object(syntax, "incremental_tree", tree_for):
        region = document_region(text, cursor)
        trim("python", *region, COMPLETION, decide_span("python", *region))  # the document as opened
        for k in range(1, len(TYPED) + 1):
            now = text[:cursor] + TYPED[:k] + text[cursor:]
            t0 = time.perf_counter()
            region = document_region(now, cursor + k)
            span = decide_span("python", *region)
            t1 = time.perf_counter()
            trim("python", *region, COMPLETION, span)
            t2 = time.perf_counter()
            samples.append({"span_ms": (t1 - t0) * 1000, "trim_ms": (t2 - t1) * 1000, "total_ms": (t2 - t0) * 1000})
    return samples


def summary(samples: list[dict]) -> dict:
    return {f"{key}_{name}": percentile([s[key] for s in samples], q, 2)
            for key in ("span_ms", "trim_ms", "total_ms") for name, q in (("p50", 0.5), ("p95", 0.95))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    text, cursor = document()
    samples: dict[str, list[dict]] = {mode: [] for mode in TREE_FOR}
    for r in range(args.rounds):
        for mode in TREE_FOR:
            samples[mode] += keystrokes(text, cursor, mode)
            print(f"round {r + 1} {mode}: {summary(samples[mode])}", file=sys.stderr, flush=True)
    results = {mode: {"keystrokes": len(s), **summary(s)} for mode, s in samples.items()}
    prefix, suffix = document_region(text, cursor)
    data = {"document": {"modules": list(MODULES), "chars": len(text), "cursor": cursor,
                         "region_chars": len(prefix) + len(suffix), "typed": TYPED, "completion": COMPLETION},
            "rounds": args.rounds, "results": results}
    rows = ["| parse caches | keystrokes | span p50 / p95 | trim p50 / p95 | span + trim p50 / p95 |",
            "|---|---|---|---|---|"]
    for mode, label in (("fresh", "none: every parse from scratch"), ("shared", "one shared by span and trim (before)"),
                        ("per_role", "one per role (after)")):
        r = results[mode]
        rows.append(f"| {label} | {r['keystrokes']} | {r['span_ms_p50']} / {r['span_ms_p95']} | "
                    f"{r['trim_ms_p50']} / {r['trim_ms_p95']} | {r['total_ms_p50']} / {r['total_ms_p95']} |")
    md = (f"A {len(text) // 1000} KB Python file ({' + '.join(MODULES)} from this machine's standard library); a new "
          f"line opened at character {cursor} ({DEPTH:.0%} of the file) inside a method body, where "
          f"{len(TYPED)} characters are typed one at a time. Per keystroke: `document_region` "
          f"({(len(prefix) + len(suffix)) // 1000} KB), `decide_span` on it, and `trim` of the fixed completion "
          f"{COMPLETION!r}. {args.rounds} rounds alternate the modes, each from empty caches. Milliseconds.\n\n"
          + "\n".join(rows) + "\n")
    write_results("parse_cache", data, md, "Parse caches: span and trim keystroke after keystroke", argv)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
