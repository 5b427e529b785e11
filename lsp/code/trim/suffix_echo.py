"""Completions that repeat what is already below the cursor.

Models that over-generate often write the suffix again: the rest of the cursor's line, or whole
lines that follow it. These functions find where the echo starts so `trim` can cut there.
"""
from __future__ import annotations

from diffill.lsp.code import brackets
from diffill.lsp.code.cursor import Cursor

_DISTINCTIVE_CHARS = 6


def _is_closers_only(line: str) -> bool:
    s = line.strip().rstrip(";,")
    return bool(s) and all(ch in brackets.CLOSERS or ch in " \t" for ch in s)


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


def find_line_echo(cursor: Cursor, text: str, close_depth: int) -> tuple[int, bool] | None:
    """Where whole lines of `text` start repeating the lines below the cursor: (offset, confirmed),
    or None. `confirmed` is True when the echo goes on for several lines or to the end of `text`.

    `text` is the completion with LF line breaks. A match needs the first non-blank line of the
    suffix (compared with its indentation). It is taken when the following lines keep matching to
    the end of the completion or for two lines or more, or when that one line is distinctive
    (six characters or more, not only brackets). A line of closing brackets counts only when
    keeping it would close more brackets than the completion may (see Span.close_depth).
    """
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
        if _is_closers_only(line):
            before = text[:starts[j]]
            depth = sum(1 if ch in brackets.OPENERS else -1 for ch in _code_brackets(before + lines[j], cursor.language))
            if depth >= -close_depth:
                continue
        matched, to_end = _run_length(full, j, targets)
        cut = _cut_offset(cursor, lines, starts, j, first)
        if to_end or (matched >= 2 and sum(len(x.strip()) for x in targets[:matched]) >= 8):
            return cut, True
        if weak is None and _distinctive(line):
            weak = cut, False
    return weak


def _code_brackets(text: str, language: str) -> str:
    mask = brackets.code_mask(text, language)
    return "".join(ch for i, ch in enumerate(text) if mask[i] and ch in brackets.OPENERS + brackets.CLOSERS)


def _cut_offset(cursor: Cursor, lines: list[str], starts: list[int], j: int, first: int) -> int:
    if j == 0:
        return 0
    if first == 0:
        # the echo is of the cursor's own line: keep the part of it that sits before the cursor
        keep = len(cursor.line_prefix) if lines[j].startswith(cursor.line_prefix) else 0
        return starts[j] + keep
    return starts[j]


def rest_of_line_cut(cursor: Cursor, first_line: str) -> int | None:
    """Where the completion's first line starts repeating the rest of the cursor's line.

    The rest of the line must reappear whole (trailing spaces aside) at a point outside strings and
    comments where the brackets the completion opened are all closed. Returns an offset into
    `first_line`, or None.
    """
    rest = cursor.rest_of_line.strip()
    if not rest:
        return None
    mask = brackets.code_mask(first_line, cursor.language)
    depth = 0
    for i, ch in enumerate(first_line):
        if depth == 0 and mask[i] and first_line.startswith(rest, i) and first_line[i + len(rest):].strip() == "":
            if cursor.rest_of_line[:1].isspace():  # the rest of the line brings its own leading space
                return len(first_line[:i].rstrip(" \t"))
            return i
        if mask[i] and ch in brackets.OPENERS:
            depth += 1
        elif mask[i] and ch in brackets.CLOSERS:
            depth -= 1
            if depth < 0:
                return None
    return None
