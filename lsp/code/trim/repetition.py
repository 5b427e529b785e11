"""Filter: degenerate repetition, the way a model runs on when it has nothing left to say.

- repeated lines: a line followed by two or more copies of itself (indentation included) ends
  the completion after its first copy;
- repeated blocks: two to eight lines followed at once by the same lines again (blank lines
  between them aside) end it after the first copy;
- a line that ends in a run of one token sequence repeated (`foo = foo = foo = foo`, `0, 0, 0, 0,
  0, 0`, `retretretret`) ends the completion before that line.

Lines of closing brackets and punctuation alone are not repetition (`}` under `}`), nor is text in
strings and comments; the completion's last line may be a cut-off copy.
"""
from __future__ import annotations

import re

from diffill.lsp.code.lexing import lex
from diffill.lsp.code.trim.context import Context

LINE_COPIES = 3         # a line and two copies of it
BLOCK_PERIODS = range(2, 9)
BLOCK_MIN_CHARS = 16    # letters and digits in one copy of a repeated block
RUN_PERIODS = range(1, 7)
RUN_MIN_TOKENS = 6
RUN_MIN_REPEATS = {1: 8}  # token sequences of this length must repeat this often; others 3 times
_DEFAULT_REPEATS = 3

_TOKEN = re.compile(r"[A-Za-z_$\u00c0-\uffff][\w$\u00c0-\uffff]*|\d[\w.]*|\S")
_STUTTER = re.compile(r"(.{1,4}?)\1{5,}")
_ALNUM = re.compile(r"[^\W_]")


def apply(ctx: Context, text: str) -> str:
    language = ctx.cursor.language
    cut = _repeated_lines(ctx.cursor.line_prefix, text)
    if cut is not None:
        text = text[:cut]
    cut = _line_ending_in_run(ctx.cursor.line_prefix, text, language)
    if cut is not None:
        text = text[:cut].rstrip()
    return text


def _alnum(s: str) -> int:
    return len(_ALNUM.findall(s))


def _repeated_lines(line_prefix: str, text: str) -> int | None:
    """The end of the first copy of the first repeated line or block, or None (the first line is
    compared with the code before the cursor on its line)."""
    lines = text.split("\n")
    ends, at = [], 0
    for line in lines:
        at += len(line)
        ends.append(at)
        at += 1
    full = [line_prefix + lines[0]] + lines[1:]
    code = [(k, line.rstrip()) for k, line in enumerate(full) if line.strip() and (k or lines[0].strip())]
    n = len(code)
    last = len(lines) - 1

    def same(i: int, j: int) -> bool:
        a, b = code[i][1], code[j][1]
        if a == b:
            return True
        return code[j][0] == last and j > i and len(b.strip()) >= 4 and a.startswith(b)  # a cut-off copy

    for k in range(n):
        if _alnum(code[k][1]) and k + LINE_COPIES <= n and all(same(k, k + c) for c in range(1, LINE_COPIES)):
            return ends[code[k][0]]
        for p in BLOCK_PERIODS:
            if k + 2 * p > n:
                break
            block = [code[k + i][1] for i in range(p)]
            if sum(1 for b in block if _alnum(b)) < 2 or sum(_alnum(b) for b in block) < BLOCK_MIN_CHARS:
                continue
            if all(same(k + i, k + p + i) for i in range(p)):
                return ends[code[k + p - 1][0]]
    return None


def _tokens(line: str, language: str) -> list[str]:
    """The code tokens of a line; each string literal one token, comments left out."""
    lexed = lex(line, language)
    mask = lexed.mask
    out: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if not mask[i]:
            j = i
            while j < n and not mask[j]:
                j += 1
            chunk = line[i:j].strip()
            if chunk and chunk[0] in "\"'`":
                out.append(chunk)
            i = j
            continue
        j = i
        while j < n and mask[j]:
            j += 1
        out.extend(_TOKEN.findall(line, i, j))
        i = j
    return out


def _ends_in_run(tokens: list[str]) -> bool:
    if _run_at_end(tokens):
        return True
    # the canvas may have cut the last token short: `foo = foo = foo = fo`
    return len(tokens) > 1 and _run_at_end(tokens[:-1], cut_off=tokens[-1])


def _run_at_end(tokens: list[str], cut_off: str | None = None) -> bool:
    n = len(tokens)
    if n and _STUTTER.fullmatch(tokens[-1]) and not tokens[-1][0].isdigit() and len(tokens[-1]) >= 12:
        return True
    for p in RUN_PERIODS:
        need = RUN_MIN_REPEATS.get(p, _DEFAULT_REPEATS)
        if n < max(need * p, RUN_MIN_TOKENS):
            continue
        for s in range(p):  # the last copy may be cut off after s tokens
            end = n - s
            unit = tokens[end - p:end]
            if end - p < 0 or tokens[end:] != unit[:s]:
                continue
            if not any(_alnum(t) for t in unit):
                continue  # runs of brackets and punctuation
            if cut_off is not None and not (unit[s] != cut_off and unit[s].startswith(cut_off)):
                continue
            r = 1
            while end - (r + 1) * p >= 0 and tokens[end - (r + 1) * p:end - r * p] == unit:
                r += 1
            if r >= need and r * p + s >= RUN_MIN_TOKENS:
                return True
    return False


def _line_ending_in_run(line_prefix: str, text: str, language: str) -> int | None:
    """Where the first line that ends in a repeating token run starts (0 for the first line, whose
    typed part before the cursor counts too), or None."""
    start = 0
    for k, line in enumerate(text.split("\n")):
        full = line_prefix + line if k == 0 else line
        if line.strip() and _ends_in_run(_tokens(full, language)):
            if k == 0 and _ends_in_run(_tokens(line_prefix, language)):
                pass  # the run was typed by the user
            else:
                return start
        start += len(line) + 1
    return None
