"""The confidence gate's trade-off: how much is shown, and how much of it is right, per threshold.

The fill reports, per line of its raw text, the probability of the least probable token it
committed there; the gate (lsp/pipeline/confidence_gate.py) ends the raw text before its first line
below the threshold, then the trim and the other gates run. Per threshold, through the pipeline
with the embedded model (raw fills kept by fill_cache.py, so every threshold shapes the same fills):
the share of holes where something is shown, the share of those that are exactly the hole's middle
(trailing blanks aside), the share that are a correct start of it (the middle begins with them),
and the share that add a syntax error (bench/junk.py's judge).

Two held-out sets from bench/heldout_holes.py (code neither the training corpus nor the public sets
hold): the threshold is *chosen* on lib2to3's holes (100 of each kind), and the curve is *reported*
X
never saw.

The rule: the threshold with the most shown completions that are right (exact or a correct start)
less those that are wrong, on the calibration set; a tie goes to the lower threshold (the least
gating that does as well). A wrong suggestion costs as much as a right one gains: whoever reads it
pays to reject it.

    .venv/bin/python bench/confidence_curve.py        # bench/results/confidence_curve.{json,md}
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fill_cache  # noqa: E402
import heldout_holes  # noqa: E402
import junk  # noqa: E402
from record import write_results  # noqa: E402

from diffill.lsp.pipeline import complete as pipeline  # noqa: E402
from diffill.lsp.pipeline import confidence_gate  # noqa: E402

THRESHOLDS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7,
              0.75, 0.8, 0.85, 0.9, 0.95)
SETS = {"calibration": ("lib2to3", 100, None), "evaluation": ("hypothesis", 300, None)}  # source, per kind, take


def prepare(source: str, per_kind: int, log, take: int | None = None) -> list[tuple[dict, pipeline.Plan, object]]:
    holes = heldout_holes.holes(source, per_kind, seed=0, take=take)
    replies, meta = fill_cache.load_fills("embedded", holes, source, log=log)
    out = []
    for hole in holes:
        plan = fill_cache.plan_for(hole, meta["context_tokens"], meta["windows"])
        out.append((hole, plan, replies[hole["id"]]))
    return out


def point(prepared, threshold: float) -> dict:
    shown = exact = start = broken = 0
    for hole, plan, reply in prepared:
        if plan.canvas <= 0:
            continue
        gated = dataclasses.replace(plan, request=dataclasses.replace(plan.request, min_confidence=threshold))
        outcome = pipeline.shape(gated, reply)
        text = outcome.text
        if not text.strip():
            continue
        shown += 1
        right = outcome.replace == 0 and text.rstrip() == hole["middle"].rstrip()
        exact += right
        start += right or (outcome.replace == 0 and hole["middle"].startswith(text.rstrip()))
        broken += junk.adds_syntax_error(hole, text, outcome.replace)
    n = len(prepared)
    return {"threshold": threshold, "holes": n, "shown": shown, "shown_rate": round(shown / n, 4),
            "exact": exact, "exact_of_shown": round(exact / shown, 4) if shown else None,
            "correct_start": start, "correct_start_of_shown": round(start / shown, 4) if shown else None,
            "adds_syntax_error": broken, "net": start - (shown - start)}


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def choose(curve: list[dict]) -> float:
    best = max(curve, key=lambda p: (p["net"], -p["threshold"]))
    return best["threshold"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr)

    curves = {}
    for name, (source, per_kind, take) in SETS.items():
        prepared = prepare(source, per_kind, log, take)
        curves[name] = [point(prepared, t) for t in THRESHOLDS]
        log(f"{name}: {len(prepared)} holes")
    chosen = choose(curves["calibration"])
    data = {"sets": {k: {"source": s, "source_version": heldout_holes.source_version(s), "per_kind": n,
                         "taken_per_kind": t or n} for k, (s, n, t) in SETS.items()},
            "chosen_threshold": chosen, "current_threshold": confidence_gate.THRESHOLD, "curves": curves}
    md = [f"Chosen on the calibration set (lib2to3, {SETS['calibration'][1]} holes of each kind): threshold "
          f"**{chosen}** (the most right-minus-wrong shown completions; confidence_gate.THRESHOLD is "
          f"{confidence_gate.THRESHOLD}). Evaluation set: hypothesis, {SETS['evaluation'][1]} holes of each kind.\n",
          "| set | threshold | shown % | exact % of shown | correct start % of shown | adds a syntax error | right - wrong |",
          "|---|---|---|---|---|---|---|"]
    for name, curve in curves.items():
        for p in curve:
            mark = " **(chosen)**" if p["threshold"] == chosen else ""
            md.append(f"| {name} | {p['threshold']}{mark} | {100 * p['shown_rate']:.1f} | {_pct(p['exact_of_shown'])} | "
                      f"{_pct(p['correct_start_of_shown'])} | {p['adds_syntax_error']} | {p['net']} |")
    md.append("\n*Exact*: the shown text is the hole's middle. *Correct start*: the middle begins with the shown "
              "text (exact included). *Adds a syntax error*: bench/junk.py's judge (Python's parser). "
              "*Right - wrong*: correct starts less the other shown completions.")
    write_results("confidence_curve", data, "\n".join(md), "Confidence gate: shown rate against exact match",
                  argv, out_dir=args.out_dir)
    print(f"chosen threshold {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
