"""Filter: drop everything from the first whole line that repeats the lines below the cursor.

Models that over-generate often write the suffix again. A match needs the first non-blank line of
the suffix (compared with its indentation). It is taken when the following lines keep matching to
the end of the completion or for two lines or more (a confirmed echo: `span_end` then leaves the
end to it), or when that one line is distinctive (six characters or more, not only brackets). A
line of closing brackets counts only when keeping it would close more brackets than the
completion may (see Span.close_depth).
"""
from __future__ import annotations

from diffill.lsp.code.cursor import Cursor
from diffill.lsp.code.lexing import CLOSERS, lex
from diffill.lsp.code.trim.context import Context

_DISTINCTIVE_CHARS = 6


def apply(ctx: Context, text: str) -> str:
    found = find_line_echo(ctx.cursor, text, ctx.may_close)
    if found is None:
        return text
    cut, ctx.echo_confirmed = found
    return text[:cut]


def find_line_echo(cursor: Cursor, text: str, close_depth: int) -> tuple[int, bool] | None:
    """Where whole lines of `text` (LF line breaks) start repeating the lines below the cursor:
    (offset, confirmed), or None. `confirmed`: the echo goes on for several lines or to the end."""
    suffix_lines = cursor.suffix_lines
    first = next((k for k, line in enumerate(suffix_lines[:400]) if line.strip()), None)
    if first is None:
        return None
    targets = [line for line in suffix_lines[first:first + 400] if line.strip()]
    lines = text.split("\n")
    full = [cursor.line_prefix + lines[0]] + lines[1:]
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    weak = None
    for j, line in enumerate(full):
        if j == 0 and first == 0:
            continue  # the completion's own first line against the rest of the cursor's line: see rest_of_line_echo
        if not line.strip() or not _same(line, targets[0]) and not (
                j == len(full) - 1 and j > 0 and len(line.strip()) >= _DISTINCTIVE_CHARS
                and targets[0].startswith(line.rstrip())):
            continue
        if _is_closers_only(line) and lex(text[:starts[j]] + lines[j], cursor.language).end_depth >= -close_depth:
            continue
        matched, to_end = _run_length(full, j, targets)
        cut = _cut_offset(cursor, lines, starts, j, first)
        if to_end or (matched >= 2 and sum(len(x.strip()) for x in targets[:matched]) >= 8):
            return cut, True
        if weak is None and _distinctive(line):
            weak = cut, False
    return weak


def _is_closers_only(line: str) -> bool:
    s = line.strip().rstrip(";,")
    return bool(s) and all(ch in CLOSERS or ch in " \t" for ch in s)


def _distinctive(line: str) -> bool:
    s = line.strip()
    return len(s) >= _DISTINCTIVE_CHARS and any(ch.isalnum() for ch in s)


def _same(a: str, b: str) -> bool:
    return a.rstrip() == b.rstrip()


def _run_length(lines: list[str], j: int, targets: list[str]) -> tuple[int, bool]:
    """Match completion lines from j against suffix lines (blank lines skipped on both sides).

    Returns (matched non-blank lines, whether the match reached the end of the completion); the
    completion's last line may be cut short, so it matches when it is a prefix of its target.
    """
    t = 0
    matched = 0
    last = len(lines) - 1
    for i in range(j, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        if t >= len(targets):
            return matched, False
        if _same(line, targets[t]) or (i == last and i > j and targets[t].startswith(line.rstrip())):
            matched += 1
            t += 1
            continue
        return matched, False
    return matched, True


def _cut_offset(cursor: Cursor, lines: list[str], starts: list[int], j: int, first: int) -> int:
    if j == 0:
        return 0
    if first == 0:
        # the echo is of the cursor's own line: keep the part of it that sits before the cursor
        keep = len(cursor.line_prefix) if lines[j].startswith(cursor.line_prefix) else 0
        return starts[j] + keep
    return starts[j]
