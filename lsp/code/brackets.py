"""Bracket structure of code text (brackets in strings and comments do not count; see lexing)."""
from __future__ import annotations

from diffill.lsp.code.lexing import CLOSERS, OPENERS, PAIR, lex


def open_stack(text: str, language: str) -> list[tuple[str, int]]:
    """Brackets left open at the end of `text`: (bracket, offset) from outermost to innermost.

    A closer that matches nothing is ignored; a mismatched closer pops up to its partner if it
    has one open, so one stray character does not unbalance the rest.
    """
    stack: list[tuple[str, int]] = []
    for b in lex(text, language).brackets:
        if b.char in OPENERS:
            stack.append((b.char, b.offset))
            continue
        want = PAIR[b.char]
        for k in range(len(stack) - 1, -1, -1):
            if stack[k][0] == want:
                del stack[k:]
                break
    return stack


def closed_by(suffix: str, stack: list[tuple[str, int]], language: str) -> int:
    """How many of the open brackets in `stack` (innermost last) `suffix` closes."""
    pending = [b for b, _ in stack]
    closed = 0
    inner: list[str] = []  # brackets the suffix itself opens
    for b in lex(suffix, language).brackets:
        if b.char in OPENERS:
            inner.append(b.char)
        elif inner:
            if inner[-1] == PAIR[b.char]:
                inner.pop()
        elif pending and pending[-1] == PAIR[b.char]:
            pending.pop()
            closed += 1
        elif not pending:
            break
    return closed


def unmatched_closers(text: str, language: str) -> list[str]:
    """The closers in `text` that close nothing `text` opened, in order."""
    out, low = [], 0
    for b in lex(text, language).brackets:
        if b.depth < low:  # a closer that takes the depth below anything before it
            out.append(b.char)
            low = b.depth
    return out


def leading_closers(text: str) -> str:
    """The run of closing brackets at the very start of `text` (")];" -> ")]")."""
    n = 0
    while n < len(text) and text[n] in CLOSERS:
        n += 1
    return text[:n]
