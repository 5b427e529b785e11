"""Junk through the pipeline: what the completer shows on held-out holes, and how much of it is junk.

The holes are bench/heldout_holes.py's (hypothesis, 300 line, 300 line-rest and 300 block holes,
seed 0: code neither the training corpus nor the public sets hold). Each goes through the pipeline
the server runs (lsp/pipeline/complete.py: window, span, fill, confidence gate, trim) with
- the embedded model (its raw fills are kept in bench/results/fills/, see fill_cache.py), and
- a tiny random-weight FIM checkpoint (`build_random_checkpoint(fim=True, noise="mask",
  prompt_format="fim", canvas_length=32)`), whose every fill is noise: it should show nearly nothing.

For each: the share of holes where something is shown; of what is shown, the share that adds a
syntax error to the file (Python's own parser, see `adds_syntax_error`; goal 0) and the share that
is exactly the hole's middle (trailing blanks aside). The same fills shaped with the confidence gate
off (threshold 0), and without any gate (threshold 0 and the trim's filters less parse_gate,
repetition, unreachable, word_at_cursor, word_after_cursor and cursor_spacing) show what each removes.

    .venv/bin/python bench/junk.py                    # both models (the embedded model's fills kept)
    .venv/bin/python bench/junk.py --models random --per-kind 100

Writes bench/results/junk.json and junk.md.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fill_cache  # noqa: E402
import heldout_holes  # noqa: E402
from record import write_results  # noqa: E402

from diffill.lsp.code import trim as trim_module  # noqa: E402
from diffill.lsp.pipeline import complete as pipeline  # noqa: E402
from diffill.lsp.pipeline import confidence_gate  # noqa: E402

GATES = ("parse_gate", "repetition", "unreachable", "word_at_cursor", "word_after_cursor", "cursor_spacing")


@contextlib.contextmanager
def without_gates():
    """The trim with its filters less the gates (for the comparison only)."""
    saved = trim_module.FILTERS
    trim_module.FILTERS = tuple(f for f in saved if trim_module.filter_name(f) not in GATES)
    try:
        yield
    finally:
        trim_module.FILTERS = saved


_ERRORS: dict[str, tuple | None] = {}


def first_error(source: str) -> tuple[str, int] | None:
    """(message, character offset) of the first syntax error Python's parser reports, or None."""
    if source in _ERRORS:
        return _ERRORS[source]
    try:
        compile(source, "<hole>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        found = None
    except SyntaxError as exc:
        line_start = 0
        for _ in range(max(0, (exc.lineno or 1) - 1)):
            nl = source.find("\n", line_start)
            line_start = len(source) if nl < 0 else nl + 1
        found = (exc.msg, line_start + max(0, (exc.offset or 1) - 1))
    except ValueError as exc:
        found = (str(exc), 0)
    if len(_ERRORS) > 64:
        _ERRORS.clear()
    _ERRORS[source] = found
    return found


def adds_syntax_error(hole: dict, text: str, replace: int) -> bool:
    """Does the file with the completion have a syntax error the file without it does not? The
    document without the hole's middle may itself not parse (a line the user is in the middle of):
    then the first error with the completion must be that same error, at the same place (offsets
    after the completion shifted back), or a bracket the user opened that is still open, else the
    completion added it."""
    prefix, suffix = hole["prefix"], hole["suffix"]
    found = first_error(prefix + text + suffix[replace:])
    if found is None:
        return False
    before = first_error(prefix + suffix)
    if before is None:
        return True
    c, n = len(prefix), len(text)
    message, at = found
    if c <= at < c + n:
        return True
    if message.endswith("was never closed") and at < c and before[0].endswith("was never closed"):
        return False  # a bracket the user opened is still open (the completion may have closed another)
    return (message, at if at < c else at - n + replace) != before


def judge(hole: dict, text: str, replace: int) -> dict:
    shown = bool(text.strip())
    exact = shown and replace == 0 and text.rstrip() == hole["middle"].rstrip()
    return {"shown": shown, "adds_syntax_error": shown and adds_syntax_error(hole, text, replace), "exact": exact}


def shape_all(holes, replies, context: int, windows, threshold: float) -> list[dict]:
    out = []
    for hole in holes:
        plan = fill_cache.plan_for(hole, context, windows, min_confidence=threshold)
        reply = replies[hole["id"]]
        outcome = pipeline.shape(plan, reply) if plan.canvas > 0 else None
        text, replace = (outcome.text, outcome.replace) if outcome is not None else ("", 0)
        row = judge(hole, text, replace)
        row.update(id=hole["id"], kind=hole["kind"], text=text, raw=reply.text,
                   cut_by=[c.filter for c in outcome.trimmed.trace] if outcome and outcome.trimmed else [])
        out.append(row)
    return out


def summarise(rows: list[dict]) -> dict:
    n = len(rows)
    shown = [r for r in rows if r["shown"]]
    k = len(shown)
    return {"holes": n, "shown": k, "shown_rate": round(k / n, 4) if n else None,
            "adds_syntax_error": sum(r["adds_syntax_error"] for r in shown),
            "adds_syntax_error_rate": round(sum(r["adds_syntax_error"] for r in shown) / k, 4) if k else None,
            "exact": sum(r["exact"] for r in shown),
            "exact_rate_of_shown": round(sum(r["exact"] for r in shown) / k, 4) if k else None,
            "exact_rate_of_holes": round(sum(r["exact"] for r in shown) / n, 4) if n else None}


def by_kind(rows: list[dict]) -> dict:
    out = {"all": summarise(rows)}
    for kind in heldout_holes.KINDS:
        out[kind] = summarise([r for r in rows if r["kind"] == kind])
    return out


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="embedded,random")
    ap.add_argument("--source", default="hypothesis", choices=("hypothesis", "lib2to3"))
    ap.add_argument("--per-kind", type=int, default=300)
    ap.add_argument("--take", type=int, default=None, help="only the first N holes of each kind of that draw")
    ap.add_argument("--threshold", type=float, default=confidence_gate.THRESHOLD,
                    help="confidence gate threshold (default: confidence_gate.THRESHOLD)")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    holes = heldout_holes.holes(args.source, args.per_kind, seed=0, take=args.take)
    results: dict = {"source": args.source, "source_version": heldout_holes.source_version(args.source),
                     "holes": len(holes), "threshold": args.threshold, "models": {}}
    md = [f"Held-out holes: {len(holes)} from `{args.source}` {results['source_version']} "
          f"(bench/heldout_holes.py, seed 0). Confidence gate threshold {args.threshold}.\n",
          "| model | shaped | kind | holes | shown % | adds a syntax error (% of shown) | exact (% of shown) | exact (% of holes) |",
          "|---|---|---|---|---|---|---|---|"]
    examples: dict = {}
    for name in args.models.split(","):
        t0 = time.time()
        replies, meta = fill_cache.load_fills(name, holes, args.source, log=lambda m: print(m, file=sys.stderr))
        context, windows = meta["context_tokens"], meta["windows"]
        gated = shape_all(holes, replies, context, windows, args.threshold)
        structural = shape_all(holes, replies, context, windows, 0.0)
        with without_gates():
            ungated = shape_all(holes, replies, context, windows, 0.0)
        results["models"][name] = {"fills_run": meta["run"], "fills_kept": meta["kept"],
                                   "gated": by_kind(gated), "gates_without_confidence": by_kind(structural),
                                   "without_gates": by_kind(ungated), "seconds": round(time.time() - t0)}
        examples[name] = [{k: r[k] for k in ("id", "raw", "text", "cut_by")} for r in gated if r["shown"]][:40]
        for label, table in (("gated", results["models"][name]["gated"]),
                             ("gates, threshold 0", results["models"][name]["gates_without_confidence"]),
                             ("without gates", results["models"][name]["without_gates"])):
            for kind, s in table.items():
                md.append(f"| {name} | {label} | {kind} | {s['holes']} | {_pct(s['shown_rate'])} | "
                          f"{_pct(s['adds_syntax_error_rate'])} ({s['adds_syntax_error']}) | "
                          f"{_pct(s['exact_rate_of_shown'])} ({s['exact']}) | {_pct(s['exact_rate_of_holes'])} |")
        print(f"{name}: {results['models'][name]['gated']['all']}", file=sys.stderr)
    md.append("\n*Shown*: the pipeline's text is not blank. *Adds a syntax error*: Python's parser (`ast`) "
              "rejects the file with the completion in place, and either accepts it without (the hole's "
              "middle taken out) or stops there at another error or place (offsets after the completion "
              "shifted back). "
              "*Exact*: the shown text is the hole's middle, trailing blanks aside. *Gates, threshold 0*: "
              "the pipeline with the confidence gate off. *Without gates*: the same fills through the trim "
              "less " + ", ".join(GATES) + ", threshold 0.")
    results["examples_shown"] = examples
    write_results("junk", results, "\n".join(md), "Junk through the pipeline on held-out holes", argv,
                  out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
