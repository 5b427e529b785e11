"""The confidence gate: lines the model was unsure of are not shown.

The fill reports, per line of its raw text, the probability of the least probable token it committed
there (`FillReply.line_confidence`). The raw text ends before its first line below `threshold` (the
trim then cuts what is left at a syntactic boundary); when the first line is below it, nothing is
shown. A fill that reports no confidence passes unchanged.

THRESHOLD is calibrated on held-out holes (bench/confidence_curve.py writes the trade-off between
the share of completions shown and their exact match into bench/results/).
"""
from __future__ import annotations

THRESHOLD = 0.85  # chosen by bench/confidence_curve.py on held-out lib2to3 holes (see bench/results/confidence_curve.md)


def keep(text: str, line_confidence, threshold: float = THRESHOLD) -> str:
    """`text` up to its first line whose confidence is below `threshold` ("" if that is the first)."""
    if not text or not line_confidence or threshold <= 0:
        return text
    lines = text.split("\n")
    kept = 0
    for i in range(len(lines)):
        conf = line_confidence[i] if i < len(line_confidence) else line_confidence[-1]
        if conf < threshold:
            break
        kept = i + 1
    return "\n".join(lines[:kept]).rstrip() if kept < len(lines) else text
