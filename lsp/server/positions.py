"""Positions: LSP (line, character) <-> offsets into a Python string.

The one place that knows about position encodings. An LSP `character` counts code units of the
encoding negotiated at initialize (`utf-16` by default, `utf-8` or `utf-32` when the client offers
them); a Python `str` index counts code points (utf-32 units). Lines end at `\\n`, `\\r\\n` or `\\r`.

Out-of-range positions are clamped as the specification asks: a character past the end of its
line means the end of the line, a line past the end of the text means the end of the text. A
position inside a multi-unit character (half a surrogate pair, the middle of a UTF-8 sequence)
rounds down to the start of that character.
"""
from __future__ import annotations

import bisect
import codecs
import itertools
import re
from dataclasses import dataclass

UTF8 = "utf-8"
UTF16 = "utf-16"
UTF32 = "utf-32"
ENCODINGS = (UTF16, UTF8, UTF32)

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Position:
    line: int
    character: int


def normalize_encoding(encoding: str | None) -> str:
    """The encoding name as used here; anything unknown is the protocol's default, utf-16."""
    encoding = str(encoding or UTF16).lower()
    return encoding if encoding in ENCODINGS else UTF16


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins (the first is always 0)."""
    if "\r" not in text:
        starts = [0]
        find = text.find
        i = find("\n")
        while i != -1:
            starts.append(i + 1)
            i = find("\n", i + 1)
        return starts
    return [0] + [m.end() for m in _LINE_END.finditer(text)]


def units_to_chars(line_text: str, units: int, encoding: str) -> int:
    """Code points of `line_text` covered by its first `units` code units of `encoding`."""
    if units <= 0:
        return 0
    if encoding == UTF32 or line_text.isascii():
        return min(units, len(line_text))
    if encoding == UTF8:
        data = line_text.encode("utf-8", errors="surrogatepass")[:units]
    else:
        data = line_text.encode("utf-16-le", errors="surrogatepass")[: 2 * units]
    # an incremental decoder holds back a character cut in half: that rounds down
    codec = "utf-8" if encoding == UTF8 else "utf-16-le"
    return len(codecs.getincrementaldecoder(codec)("surrogatepass").decode(data, final=False))


def chars_to_units(line_text: str, chars: int, encoding: str) -> int:
    """Code units of `encoding` in the first `chars` code points of `line_text`."""
    head = line_text[:chars]
    if encoding == UTF32 or head.isascii():
        return len(head)
    if encoding == UTF8:
        return len(head.encode("utf-8", errors="surrogatepass"))
    return len(head.encode("utf-16-le", errors="surrogatepass")) // 2


class LineIndex:
    """Where the lines of one text start, for converting positions without rescanning it.

    The index holds only the number of line breaks before every CHUNK characters (counted in C),
    so building it for a 10 MB file takes milliseconds and a lookup scans at most one chunk. This
    holds for every kind of line end, lone \\r included (a million-line CR-only file costs the same
    as a \\n one, not a list of a million line starts per keystroke).
    """

    CHUNK = 4096

    def __init__(self, text: str):
        self.text = text
        self._cr = "\r" in text
        count = text.count
        counts = [0]
        if not self._cr:
            for a in range(0, len(text), self.CHUNK):
                counts.append(counts[-1] + count("\n", a, a + self.CHUNK))
        else:
            for a in range(0, len(text), self.CHUNK):
                b = a + self.CHUNK
                # each \n ends a line; so does each \r not followed by \n (a pair's \r is not counted)
                counts.append(counts[-1] + count("\n", a, b) + count("\r", a, b) - count("\r\n", a, b + 1))
        self._counts = counts  # counts[c]: line breaks that end before offset c * CHUNK

    def _breaks(self, a: int, b: int) -> int:
        """Line breaks ending at an index in [a, b) (a \\r\\n pair ends at its \\n)."""
        count = self.text.count
        n = count("\n", a, b)
        if self._cr:
            n += count("\r", a, b) - count("\r\n", a, b + 1)
        return n

    @property
    def line_count(self) -> int:
        return self._counts[-1] + 1

    def line_start(self, line: int) -> int:
        if line == 0:
            return 0
        c = bisect.bisect_left(self._counts, line) - 1  # the line's break lies in chunk c
        pos = c * self.CHUNK
        k = line - self._counts[c]
        if not self._cr:
            find = self.text.find
            for _ in range(k):
                pos = find("\n", pos) + 1
            return pos
        for m in itertools.islice(_LINE_END.finditer(self.text, pos), k - 1, k):
            return m.end()
        return len(self.text)

    def _bounds(self, line: int) -> tuple[int, int]:
        start = self.line_start(line)
        if not self._cr:
            end = self.text.find("\n", start)
            return start, (len(self.text) if end == -1 else end)
        m = _LINE_END.search(self.text, start)
        return start, (len(self.text) if m is None else m.start())

    def _line_of(self, offset: int) -> int:
        c = offset // self.CHUNK
        return self._counts[c] + self._breaks(c * self.CHUNK, offset)

    def line_text(self, line: int) -> str:
        start, end = self._bounds(line)
        return self.text[start:end]

    def offset_at(self, line: int, character: int, encoding: str = UTF16) -> int:
        """The string offset of an LSP position (clamped into the text)."""
        if line < 0:
            return 0
        if line >= self.line_count:
            return len(self.text)
        start, end = self._bounds(line)
        return start + units_to_chars(self.text[start:end], max(0, character), encoding)

    def position_at(self, offset: int, encoding: str = UTF16) -> Position:
        """The LSP position of a string offset (clamped into the text)."""
        offset = max(0, min(offset, len(self.text)))
        line = self._line_of(offset)
        start, end = self._bounds(line)
        offset = min(offset, end)  # an offset inside a \r\n belongs to the end of its line
        return Position(line, chars_to_units(self.text[start:end], offset - start, encoding))


def offset_at(text: str, line: int, character: int, encoding: str = UTF16) -> int:
    return LineIndex(text).offset_at(line, character, encoding)


def position_at(text: str, offset: int, encoding: str = UTF16) -> Position:
    return LineIndex(text).position_at(offset, encoding)


def length_in_units(text: str, encoding: str = UTF16) -> int:
    """How many code units of `encoding` `text` spans (for ranges on one line)."""
    return chars_to_units(text, len(text), encoding)
