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
    The replacement fields of strings that have them are code, with their braces counted as
    brackets: Python f-strings (`{x}`), JavaScript template literals, Kotlin, Groovy, Dart and Scala
    strings (`${x}`), C# `$"{x}"`, Swift `"\\(x)"`, Ruby `"#{x}"` and shell `"${x}"`/`"$(cmd)"`. A
    cursor in `f"{k` is in code, one `{` deep.
    """
    scan = _Scanner(text, language)
    scan.code(0, len(text), interpolation=False)
    return Lexed(text, scan.spans, tuple(scan.brackets))


_WORD_BREAK = " \t\n;|&()"


class _Scanner:
    """One pass over a text: the spans that are not code and the brackets in code."""

    def __init__(self, text: str, language: str):
        self.text, self.n = text, len(text)
        self.marker, self.block_comments = _comment_markers(language)
        self.python, self.rust, self.go = language == "python", language == "rust", language == "go"
        self.fields = _FIELDS.get(language)
        self.word_comments = language == "shellscript"  # `a#b` and `${#x}` are no comments
        self.special = _special(language)
        self.spans: list[tuple[int, int]] = []
        self.brackets: list[Bracket] = []
        self.depth = 0

    def code(self, i: int, limit: int, interpolation: bool) -> tuple[int, bool]:
        """Lex code from `i` up to `limit`. In a replacement field, stop after the `}` that closes
        it: (where the code stopped, whether that brace closed it)."""
        text, n, search = self.text, self.n, self.special.search
        spans, brackets, marker = self.spans, self.brackets, self.marker
        python, rust, block_comments, fields = self.python, self.rust, self.block_comments, self.fields
        word_comments = self.word_comments
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
                if interpolation and depth < base:  # the `}` (or Swift's and the shell's `)`) closing the field
                    self.depth = depth
                    return i, True
                continue
            if text.startswith(marker, i) and not (word_comments and i and text[i - 1] not in _WORD_BREAK):
                end = text.find("\n", i)
                end = n if end < 0 else end
            elif block_comments and text.startswith("/*", i):
                end = text.find("*/", i + 2)
                end = n if end < 0 else end + 2
            elif fields is not None and ch in "\"'`" and (spec := fields(text, i)) is not None:
                self.depth = depth
                i = self.interpolated(i, spec)
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

    def interpolated(self, i: int, spec: "_Fields") -> int:
        """Lex a string with replacement fields whose opening quote is at `i`; where it ends."""
        text, close = self.text, spec.close
        line_end = -1 if spec.multiline else text.find("\n", i)
        limit = self.n if line_end < 0 else line_end
        stops = _field_stops(close[0], spec.openers, spec.escapes, spec.multiline)
        start = j = i
        j += len(close)
        while True:
            m = stops.search(text, j, limit)
            if m is None:
                self.spans.append((start, limit))
                return limit
            at, c = m.start(), text[m.start()]
            opener = next((o for o in spec.openers if text.startswith(o, at)), None)
            if c == "\\" and spec.escapes and opener is None:
                j = at + 2  # an escaped character (`\${` in a template is text)
            elif opener == "{" and text.startswith("{{", at):
                j = at + 2  # a literal brace
            elif opener is not None:
                brace = at + len(opener) - 1
                if brace > start:
                    self.spans.append((start, brace))
                self.depth += 1
                self.brackets.append(Bracket(brace, text[brace], self.depth))
                end, closed = self.code(brace + 1, limit, interpolation=True)
                if not closed:
                    return end  # an unterminated field runs to the end of the string's reach
                start = j = end
            elif c == "\n":
                self.spans.append((start, at))
                return at
            elif c == close[0]:
                if spec.doubled and text.startswith(c * 2, at) and close == c:
                    j = at + 2  # a doubled quote is a literal quote
                elif text.startswith(close, at):
                    self.spans.append((start, at + len(close)))
                    return at + len(close)
                else:
                    j = at + 1
            else:
                j = at + 1


class _Fields(NamedTuple):
    """How a string with replacement fields is written."""

    close: str                  # its closing quote(s)
    multiline: bool             # may run over line breaks
    openers: tuple[str, ...]    # what opens a field; the last character is the field's bracket
    escapes: bool = True        # a backslash escapes the next character
    doubled: bool = False       # a doubled quote is a literal one (C# verbatim strings)


@functools.lru_cache(maxsize=None)
def _field_stops(quote: str, openers: tuple[str, ...], escapes: bool, multiline: bool) -> re.Pattern:
    chars = {quote} | {o[0] for o in openers} | ({"\\"} if escapes else set()) | (set() if multiline else {"\n"})
    return re.compile("[" + re.escape("".join(sorted(chars))) + "]")


def _quoted(text: str, i: int, openers: tuple[str, ...], triple_escapes: bool = True) -> _Fields:
    """A string opened at `i` with one quote (one line, backslash escapes) or three (over lines;
    escapes as `triple_escapes` says: Kotlin's raw strings take none)."""
    q = text[i]
    if text.startswith(q * 3, i):
        return _Fields(q * 3, True, openers, triple_escapes)
    return _Fields(q, False, openers)


_F_PREFIX = re.compile(r"(?<![\w])([rR]?[fFtT]|[fFtT][rR])$")
_SCALA_PREFIX = re.compile(r"(?<![\w])[sf]$")


def _python_fields(text: str, i: int) -> _Fields | None:  # f"{x}", rf'{x}', t"""{x}"""
    if not (i and text[i - 1] in "fFtTrR" and _F_PREFIX.search(text, max(0, i - 3), i)):
        return None
    return _quoted(text, i, ("{",))


def _template_fields(text: str, i: int) -> _Fields | None:  # `a ${x}`
    return _Fields("`", True, ("${",)) if text[i] == "`" else None


def _csharp_fields(text: str, i: int) -> _Fields | None:  # $"{x}", $@"{x}", @$"{x}", $"""{x}"""
    head = text[max(0, i - 2):i]
    if text[i] != '"' or not (head.endswith("$") or head.endswith("$@")):
        return None
    if text.startswith('"""', i):
        return _Fields('"""', True, ("{",), escapes=False)
    verbatim = "@" in head
    return _Fields('"', verbatim, ("{",), escapes=not verbatim, doubled=verbatim)


def _dollar_brace_fields(text: str, i: int) -> _Fields | None:  # Kotlin, Groovy: "${x}", """${x}"""
    return _quoted(text, i, ("${",), triple_escapes=False) if text[i] == '"' else None


def _dart_fields(text: str, i: int) -> _Fields | None:  # '${x}', "${x}", not r'...'
    if i and text[i - 1] == "r":
        return None
    return _quoted(text, i, ("${",))


def _scala_fields(text: str, i: int) -> _Fields | None:  # s"${x}", f"${x}"
    if text[i] != '"' or not _SCALA_PREFIX.search(text, max(0, i - 2), i):
        return None
    return _quoted(text, i, ("${",))


def _swift_fields(text: str, i: int) -> _Fields | None:  # "\(x)"
    return _quoted(text, i, ("\\(",)) if text[i] == '"' else None


def _ruby_fields(text: str, i: int) -> _Fields | None:  # "#{x}", over lines
    return _Fields('"', True, ("#{",)) if text[i] == '"' else None


def _shell_fields(text: str, i: int) -> _Fields | None:  # "${x}" and "$(cmd)", over lines
    return _Fields('"', True, ("${", "$(")) if text[i] == '"' else None


_FIELDS = {
    "python": _python_fields,
    "javascript": _template_fields, "typescript": _template_fields, "tsx": _template_fields,
    "csharp": _csharp_fields,
    "kotlin": _dollar_brace_fields, "groovy": _dollar_brace_fields,
    "dart": _dart_fields,
    "scala": _scala_fields,
    "swift": _swift_fields,
    "ruby": _ruby_fields,
    "shellscript": _shell_fields,
}


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
