"""Indentation: measuring it, detecting a file's style, and re-indenting completion lines."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

TAB_COLUMNS = 4


def leading_whitespace(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def columns(line: str, tab_columns: int = TAB_COLUMNS) -> int:
    """Width in columns of a line's leading whitespace (tabs advance to the next tab stop)."""
    col = 0
    for ch in leading_whitespace(line):
        col = (col // tab_columns + 1) * tab_columns if ch == "\t" else col + 1
    return col


@dataclass(frozen=True)
class IndentStyle:
    """How a text indents: with tabs (`unit` "\\t") or with `unit` = N spaces.

    `confident` is False when the text had too few indented lines to tell.
    """

    unit: str
    confident: bool

    @property
    def uses_tabs(self) -> bool:
        return self.unit == "\t"


def detect_style(text: str) -> IndentStyle:
    """The indentation style of `text`: tabs if most indented lines start with a tab, else
    spaces with the most common positive step between consecutive indented lines (default 4)."""
    tabs = spaces = 0
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        ws = leading_whitespace(line)
        if ws.startswith("\t"):
            tabs += 1
        elif ws.startswith(" "):
            spaces += 1
            width = len(ws)
            if width > previous and "\t" not in ws:
                steps[width - previous] += 1
            previous = width
            continue
        previous = len(ws) if "\t" not in ws else previous
    if tabs > spaces:
        return IndentStyle("\t", tabs >= 2)
    if not steps:
        return IndentStyle("    ", False)
    step = steps.most_common(1)[0][0]
    if step not in (2, 3, 4, 8):
        step = 4
    return IndentStyle(" " * step, sum(steps.values()) >= 2)


def _space_step(lines: list[str], base: int) -> int:
    """The indentation step of space-indented `lines` relative to a base column (gcd of offsets)."""
    step = 0
    for line in lines:
        if line.strip():
            off = len(leading_whitespace(line)) - base
            if off > 0:
                step = math.gcd(step, off)
    return step


def reindent(text: str, file_style: IndentStyle, base_line: str, nearby: str = "") -> str:
    """Re-indent the continuation lines of a completion (every line after the first) into the
    file's style. `base_line` is the cursor's line up to the cursor: its indentation is the
    column the completion's levels count from.

    Only clear mismatches are changed: tab-indented lines in a space-indented file (or the
    reverse) unless the code `nearby` (the lines around the cursor) indents that way itself, and
    space levels narrower than the file's when the file's width is known and the nearby code
    does not itself use those columns.
    Lines that already fit the file are left as they are.
    """
    lines = text.split("\n")
    rest = [line for line in lines[1:] if line.strip()]
    if not rest:
        return text
    base_ws = leading_whitespace(base_line)
    uses_tabs = any(leading_whitespace(line).startswith("\t") for line in rest)
    uses_spaces = any(leading_whitespace(line).startswith(" ") for line in rest)
    near = [leading_whitespace(line) for line in nearby.split("\n") if line.strip()]
    if uses_tabs and not uses_spaces and any(ws.startswith("\t") for ws in near):
        return text  # the code around the cursor indents with tabs too (a file that mixes them)
    if uses_spaces and not uses_tabs and any(ws.startswith(" ") for ws in near):
        if file_style.uses_tabs:
            return text  # the code around the cursor indents with spaces too
    if file_style.uses_tabs and uses_spaces and not uses_tabs and file_style.confident:
        step = _space_step(rest, 0) or TAB_COLUMNS
        if step not in (2, 4, 8):
            return text
        out = [lines[0]]
        for line in lines[1:]:
            ws = leading_whitespace(line)
            out.append("\t" * (len(ws) // step) + " " * (len(ws) % step) + line[len(ws):])
        return "\n".join(out)
    if not file_style.uses_tabs and uses_tabs and not uses_spaces and file_style.confident:
        out = [lines[0]]
        for line in lines[1:]:
            ws = leading_whitespace(line)
            out.append(ws.replace("\t", file_style.unit) + line[len(ws):])
        return "\n".join(out)
    if not file_style.uses_tabs and uses_spaces and not uses_tabs and file_style.confident:
        want = len(file_style.unit)
        base = len(base_ws) if "\t" not in base_ws else None
        if base is None:
            return text
        step = _space_step(rest, base)
        if step not in (2, 3) or step >= want:
            return text
        if base % want:
            return text  # the cursor's own line is off the file's grid: nothing to align to
        off_grid = {len(leading_whitespace(line)) for line in rest if len(leading_whitespace(line)) % want}
        if 2 * sum(1 for line in rest if len(leading_whitespace(line)) in off_grid) < len(rest):
            return text  # most lines already sit on the file's levels
        used_nearby = {len(leading_whitespace(line)) for line in nearby.split("\n") if line.strip()}
        if off_grid & used_nearby:
            return text  # the code around the cursor uses these columns itself
        if any(len(leading_whitespace(line)) < base for line in rest):
            return text
        out = [lines[0]]
        for line in lines[1:]:
            ws = leading_whitespace(line)
            if not line.strip():
                out.append(line)
                continue
            levels, extra = divmod(len(ws) - base, step)
            out.append(" " * (base + levels * want + extra) + line[len(ws):])
        return "\n".join(out)
    return text
