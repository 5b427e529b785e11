"""Bracket structure of code text, ignoring brackets inside strings and comments.

A small lexer per language family (not a parser): it knows string quotes, line and block
comments, Python triple quotes, Go/JS back-quoted strings, and Rust lifetimes. It works on any
text, broken or not, which is what completions and half-typed files are.
"""
from __future__ import annotations

import re

OPENERS = "([{"
CLOSERS = ")]}"
PAIR = {")": "(", "]": "[", "}": "{"}

_HASH_COMMENT = {"python", "shellscript", "ruby", "r", "perl", "yaml", "toml", "elixir"}
_BACKTICK_STRING = {"javascript", "typescript", "tsx", "go", "kotlin", "shellscript"}
_RUST_CHAR = re.compile(r"'(\\.[^']{0,8}|[^\\'\n])'")


def _comment_markers(language: str) -> tuple[str | None, bool]:
    """(line comment marker, block comments /* */ exist) for a canonical language id."""
    if language in _HASH_COMMENT:
        return "#", False
    if language in ("lua", "sql", "haskell"):
        return "--", False
    return "//", True


def code_mask(text: str, language: str) -> list[bool]:
    """mask[i] is True when text[i] is code: not inside a string, character literal or comment.

    Unterminated strings and comments run to the end of their line (strings) or of the text
    (block comments, triple-quoted strings), as an editor would highlight them.
    """
    line_marker, block_comments = _comment_markers(language)
    python = language == "python"
    backtick = language in _BACKTICK_STRING
    n = len(text)
    mask = [True] * n
    i = 0
    while i < n:
        ch = text[i]
        if line_marker and text.startswith(line_marker, i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            for k in range(i, end):
                mask[k] = False
            i = end
            continue
        if block_comments and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for k in range(i, end):
                mask[k] = False
            i = end
            continue
        if python and (text.startswith('"""', i) or text.startswith("'''", i)):
            quote = text[i:i + 3]
            end = text.find(quote, i + 3)
            end = n if end < 0 else end + 3
            for k in range(i, end):
                mask[k] = False
            i = end
            continue
        if ch == "'" and language == "rust":
            m = _RUST_CHAR.match(text, i)
            if m is None:  # a lifetime such as 'a
                i += 1
                continue
            for k in range(i, m.end()):
                mask[k] = False
            i = m.end()
            continue
        if ch in "\"'" or (ch == "`" and backtick):
            j = i + 1
            multiline = ch == "`"
            while j < n:
                c = text[j]
                if c == "\\" and not (ch == "`" and language == "go"):
                    j += 2
                    continue
                if c == ch:
                    j += 1
                    break
                if c == "\n" and not multiline:
                    break
                j += 1
            j = min(j, n)
            for k in range(i, j):
                mask[k] = False
            i = j
            continue
        i += 1
    return mask


def open_stack(text: str, language: str) -> list[tuple[str, int]]:
    """Brackets left open at the end of `text`: (bracket, offset) from outermost to innermost.

    A closer that matches nothing is ignored; a mismatched closer pops up to its partner if it
    has one open, so one stray character does not unbalance the rest.
    """
    mask = code_mask(text, language)
    stack: list[tuple[str, int]] = []
    for i, ch in enumerate(text):
        if not mask[i]:
            continue
        if ch in OPENERS:
            stack.append((ch, i))
        elif ch in CLOSERS:
            want = PAIR[ch]
            for k in range(len(stack) - 1, -1, -1):
                if stack[k][0] == want:
                    del stack[k:]
                    break
    return stack


def closed_by(suffix: str, stack: list[tuple[str, int]], language: str) -> int:
    """How many of the open brackets in `stack` (innermost last) `suffix` closes."""
    mask = code_mask(suffix, language)
    pending = [b for b, _ in stack]
    closed = 0
    inner: list[str] = []  # brackets the suffix itself opens
    for i, ch in enumerate(suffix):
        if not mask[i]:
            continue
        if ch in OPENERS:
            inner.append(ch)
        elif ch in CLOSERS:
            if inner:
                if inner[-1] == PAIR[ch]:
                    inner.pop()
                continue
            if pending and pending[-1] == PAIR[ch]:
                pending.pop()
                closed += 1
            elif not pending:
                break
    return closed


def depth_changes(text: str, language: str) -> list[tuple[int, int]]:
    """(offset, running depth after that bracket) for each code bracket in `text`, depth from 0."""
    mask = code_mask(text, language)
    depth = 0
    out = []
    for i, ch in enumerate(text):
        if mask[i] and ch in OPENERS:
            depth += 1
            out.append((i, depth))
        elif mask[i] and ch in CLOSERS:
            depth -= 1
            out.append((i, depth))
    return out


def leading_closers(text: str) -> str:
    """The run of closing brackets at the very start of `text` (")];" -> ")]")."""
    n = 0
    while n < len(text) and text[n] in CLOSERS:
        n += 1
    return text[:n]
