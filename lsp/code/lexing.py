"""One lexing pass per text: which characters are code, and the code's brackets with their depth.

A small lexer per language family (not a parser): it knows string quotes, line and block
comments, Python triple quotes, Go/JS back-quoted strings, and Rust lifetimes. It works on any
text, broken or not, which is what completions and half-typed files are. `lex(text, language)`
is cached, so every rule that reads the same text shares one pass.
"""
from __future__ import annotations

import functools
import re
from bisect import bisect_left
from typing import NamedTuple

OPENERS = "([{"
CLOSERS = ")]}"
PAIR = {")": "(", "]": "[", "}": "{"}

_HASH_COMMENT = {"python", "shellscript", "ruby", "r", "perl", "yaml", "toml", "elixir"}
_DASH_COMMENT = {"lua", "sql", "haskell"}
_BACKTICK_STRING = {"javascript", "typescript", "tsx", "go", "kotlin", "shellscript"}
_RUST_CHAR = re.compile(r"'(\\.[^']{0,8}|[^\\'\n])'")


class Bracket(NamedTuple):
    offset: int
    char: str
    depth: int  # running depth after this bracket: +1 per opener, -1 per closer, from 0 (may go below)


class Lexed:
    """A text lexed once: `mask[i]` is 1 when text[i] is code (not inside a string, character
    literal or comment), `brackets` are the brackets in code, in order."""

    __slots__ = ("text", "mask", "brackets", "_spans", "_offsets")

    def __init__(self, text: str, spans: list[tuple[int, int]], brackets: tuple[Bracket, ...]):
        self.text = text
        self._spans = spans  # (start, end) of each run that is not code
        mask = bytearray(b"\x01") * len(text)
        for start, end in spans:
            mask[start:end] = bytes(end - start)
        self.mask = bytes(mask)
        self.brackets = brackets
        self._offsets = [b.offset for b in brackets]

    @property
    def end_depth(self) -> int:
        """Depth after the whole text."""
        return self.brackets[-1].depth if self.brackets else 0

    def depth_before(self, i: int) -> int:
        """Depth just before text[i]."""
        k = bisect_left(self._offsets, i)
        return self.brackets[k - 1].depth if k else 0

    def blanked(self) -> str:
        """The text with strings and comments replaced by spaces."""
        parts, at = [], 0
        for start, end in self._spans:
            parts += [self.text[at:start], " " * (end - start)]
            at = end
        parts.append(self.text[at:])
        return "".join(parts)


def _comment_markers(language: str) -> tuple[str, bool]:
    """(line comment marker, block comments /* */ exist) for a canonical language id."""
    if language in _HASH_COMMENT:
        return "#", False
    if language in _DASH_COMMENT:
        return "--", False
    return "//", True


@functools.lru_cache(maxsize=None)
def _special(language: str) -> re.Pattern:
    """The characters where something other than plain code may start."""
    marker, block = _comment_markers(language)
    chars = set(OPENERS + CLOSERS + "\"'" + marker[0]) | ({"/"} if block else set())
    if language in _BACKTICK_STRING:
        chars.add("`")
    return re.compile("[" + re.escape("".join(sorted(chars))) + "]")


@functools.lru_cache(maxsize=None)
def _string_end(quote: str, escapes: bool, multiline: bool) -> re.Pattern:
    chars = quote + ("\\" if escapes else "") + ("" if multiline else "\n")
    return re.compile("[" + re.escape(chars) + "]")


@functools.lru_cache(maxsize=64)
def lex(text: str, language: str) -> Lexed:
    """Lex `text` (LF line breaks) for a canonical language id.

    Unterminated strings and comments run to the end of their line (strings) or of the text
    (block comments, triple-quoted strings, back-quoted strings), as an editor would highlight them.
    The replacement fields of Python f-strings (`{x}`) and JavaScript template literals (`${x}`)
    are code, with their braces counted as brackets: a cursor in `f"{k` is in code, one `{` deep.
    """
    scan = _Scanner(text, language)
    scan.code(0, len(text), interpolation=False)
    return Lexed(text, scan.spans, tuple(scan.brackets))


_F_PREFIX = re.compile(r"(?<![\w])([rR]?[fFtT]|[fFtT][rR])$")


class _Scanner:
    """One pass over a text: the spans that are not code and the brackets in code."""

    def __init__(self, text: str, language: str):
        self.text, self.n = text, len(text)
        self.marker, self.block_comments = _comment_markers(language)
        self.python, self.rust, self.go = language == "python", language == "rust", language == "go"
        self.template = language in ("javascript", "typescript", "tsx")
        self.special = _special(language)
        self.spans: list[tuple[int, int]] = []
        self.brackets: list[Bracket] = []
        self.depth = 0

    def code(self, i: int, limit: int, interpolation: bool) -> tuple[int, bool]:
        """Lex code from `i` up to `limit`. In a replacement field, stop after the `}` that closes
        it: (where the code stopped, whether that brace closed it)."""
        text, n, search = self.text, self.n, self.special.search
        spans, brackets, marker = self.spans, self.brackets, self.marker
        python, rust, template, block_comments = self.python, self.rust, self.template, self.block_comments
        depth = base = self.depth
        while True:
            m = search(text, i, limit)
            if m is None:
                self.depth = depth
                return limit, False
            i = m.start()
            ch = text[i]
            if ch in OPENERS or ch in CLOSERS:
                depth += 1 if ch in OPENERS else -1
                brackets.append(Bracket(i, ch, depth))
                i += 1
                if interpolation and ch == "}" and depth < base:
                    self.depth = depth
                    return i, True
                continue
            if text.startswith(marker, i):
                end = text.find("\n", i)
                end = n if end < 0 else end
            elif block_comments and text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
            elif python and ch in "\"'" and i and text[i - 1] in "fFtTrR" and _F_PREFIX.search(text, max(0, i - 3), i):
                self.depth = depth
                i = self.interpolated(i, 3 if text.startswith(ch * 3, i) else 1, "{")
                depth = self.depth
                continue
            elif python and (text.startswith('"""', i) or text.startswith("'''", i)):
                end = text.find(text[i:i + 3], i + 3)
                end = n if end < 0 else end + 3
            elif ch == "'" and rust:
                lit = _RUST_CHAR.match(text, i)
                if lit is None:  # a lifetime such as 'a
                    i += 1
                    continue
                end = lit.end()
            elif ch == "`" and template:
                self.depth = depth
                i = self.interpolated(i, 0, "${")
                depth = self.depth
                continue
            elif ch in "\"'`":
                end = _string_stop(text, i, _string_end(ch, not (ch == "`" and self.go), ch == "`"))
            else:
                i += 1
                continue
            if interpolation and end > limit:
                end = limit
            spans.append((i, end))
            i = end
            if i >= limit:
                self.depth = depth
                return limit, False

    def interpolated(self, i: int, quotes: int, opener: str) -> int:
        """Lex a string with replacement fields opened at `i`: `quotes` 1 or 3 for a Python
        f-string (one-line or triple-quoted), 0 for a back-quoted template literal (multi-line).
        Returns where the string ends."""
        text = self.text
        close = text[i] * max(quotes, 1)
        one_line = quotes == 1
        line_end = text.find("\n", i) if one_line else -1
        limit = self.n if line_end < 0 else line_end
        stops = re.compile("[" + re.escape(close[0] + "\\" + opener[0] + ("\n" if one_line else "")) + "]")
        start = j = i
        j += len(close)
        while True:
            m = stops.search(text, j, limit)
            if m is None:
                self.spans.append((start, limit))
                return limit
            at, c = m.start(), text[m.start()]
            if c == "\\":
                j = at + 2
            elif c == "\n":
                self.spans.append((start, at))
                return at
            elif c == close[0]:
                if text.startswith(close, at):
                    self.spans.append((start, at + len(close)))
                    return at + len(close)
                j = at + 1
            elif opener == "{" and text.startswith("{{", at):
                j = at + 2  # a literal brace
            elif text.startswith(opener, at):
                brace = at + len(opener) - 1
                if brace > start:
                    self.spans.append((start, brace))
                self.depth += 1
                self.brackets.append(Bracket(brace, "{", self.depth))
                end, closed = self.code(brace + 1, limit, interpolation=True)
                if not closed:
                    return end  # an unterminated field runs to the end of the string's reach
                start = j = end
            else:
                j = at + 1


def _string_stop(text: str, start: int, stops: re.Pattern) -> int:
    """Where the string opened at `start` ends: after its closing quote, at the line break that
    ends an unterminated one-line string, or at the end of the text."""
    quote = text[start]
    j = start + 1
    while True:
        m = stops.search(text, j)
        if m is None:
            return len(text)
        c = text[m.start()]
        if c == quote:
            return m.start() + 1
        if c == "\n":
            return m.start()
        j = m.start() + 2  # a backslash escapes the next character
