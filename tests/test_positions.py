"""Positions in every encoding a client may negotiate, on lines with emoji, CJK and combining marks."""
import pytest
from hypothesis import given, strategies as st

from diffill.lsp.server import positions
from diffill.lsp.server.documents import DocumentStore
from diffill.lsp.server.positions import UTF8, UTF16, UTF32, LineIndex

# "é" written as e + COMBINING ACUTE ACCENT (two code points), an emoji outside the BMP, CJK.
LINE = "x = 'e\u0301😀漢字' + y"
TEXT = f"first line\n{LINE}\r\nlast 😀 line"


def units(s: str, encoding: str) -> int:
    return {UTF8: len(s.encode("utf-8")), UTF16: len(s.encode("utf-16-le")) // 2, UTF32: len(s)}[encoding]


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
@pytest.mark.parametrize("anchor", ["y", "+", "漢", "字", "😀", "\u0301"])
def test_offset_of_a_character_is_counted_in_the_negotiated_units(encoding, anchor):
    index = LineIndex(TEXT)
    col = LINE.index(anchor)
    character = units(LINE[:col], encoding)
    assert index.offset_at(1, character, encoding) == TEXT.index(LINE) + col
    assert index.position_at(TEXT.index(LINE) + col, encoding) == positions.Position(1, character)


def test_emoji_is_two_utf16_units_four_utf8_bytes_one_utf32_unit():
    line = "😀a"
    assert positions.chars_to_units(line, 1, UTF16) == 2
    assert positions.chars_to_units(line, 1, UTF8) == 4
    assert positions.chars_to_units(line, 1, UTF32) == 1
    assert positions.units_to_chars(line, 2, UTF16) == 1
    assert positions.units_to_chars(line, 4, UTF8) == 1


def test_a_position_inside_a_character_rounds_down_to_its_start():
    line = "a😀b"
    assert positions.units_to_chars(line, 2, UTF16) == 1  # between the two surrogates of 😀
    assert positions.units_to_chars(line, 3, UTF8) == 1   # inside the four bytes of 😀
    assert positions.units_to_chars("a漢", 2, UTF8) == 1  # inside the three bytes of 漢


def test_out_of_range_positions_clamp_to_the_line_and_the_text():
    index = LineIndex(TEXT)
    assert index.offset_at(0, 999) == len("first line")
    assert index.offset_at(99, 0) == len(TEXT)
    assert index.offset_at(-1, 5) == 0
    assert index.offset_at(1, 999) == TEXT.index("\r\n")  # the end of the line, before \r\n


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_every_line_ending_starts_a_line(eol):
    text = eol.join(["a", "😀b", "c"])
    index = LineIndex(text)
    assert index.line_count == 3
    assert index.offset_at(2, 0) == text.index("c")
    assert index.offset_at(1, 2) == text.index("b")  # after the emoji, in utf-16


@pytest.mark.parametrize("encoding", [UTF8, UTF16, UTF32])
def test_incremental_edits_land_where_the_client_meant(encoding):
    store = DocumentStore(encoding)
    doc = store.open("file:///t.py", "python", 1, f"{LINE}\nnext")

    class Change:
        def __init__(self, text, start, end):
            from lsprotocol import types
            self.text = text
            self.range = types.Range(types.Position(*start), types.Position(*end))

    col = units(LINE[: LINE.index("字")], encoding)
    end = units(LINE[: LINE.index("字") + 1], encoding)
    store.change(doc.uri, 2, [Change("文", (0, col), (0, end))])
    assert doc.text == f"{LINE.replace('字', '文')}\nnext"
    store.change(doc.uri, 3, [Change("!", (1, 4), (1, 4))])
    assert doc.text.endswith("next!") and doc.version == 3


@given(st.text(alphabet=st.sampled_from(list("ab \n\r😀漢é\u0301\t")), max_size=40), st.data())
def test_position_and_offset_round_trip(text, data):
    index = LineIndex(text)
    offset = data.draw(st.integers(0, len(text)))
    # offsets inside a \r\n are not positions of their own
    if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        offset -= 1
    for encoding in (UTF8, UTF16, UTF32):
        pos = index.position_at(offset, encoding)
        assert index.offset_at(pos.line, pos.character, encoding) == offset


@given(st.lists(st.sampled_from(["a", "b", " ", "\n", "\r\n", "😀", "漢"]), max_size=60).map("".join), st.data())
def test_the_chunked_index_agrees_with_a_full_list_of_line_starts(text, data):
    class Small(LineIndex):
        CHUNK = 3  # many chunk boundaries in a short text

    chunked = Small(text)
    starts = positions.line_starts(text)
    assert chunked.line_count == len(starts)
    for line, start in enumerate(starts):
        assert chunked.line_start(line) == start
    offset = data.draw(st.integers(0, len(text)))
    expect = positions.Position(*_reference_position(text, starts, offset))
    assert chunked.position_at(offset, UTF32) == expect


def _reference_position(text, starts, offset):
    import bisect
    line = bisect.bisect_right(starts, offset) - 1
    end = starts[line + 1] - 1 if line + 1 < len(starts) else len(text)
    if end > starts[line] and text[end - 1] == "\r" and end < len(text) and text[end] == "\n":
        end -= 1
    return line, min(offset, end) - starts[line]


def test_a_ten_megabyte_document_is_indexed_in_milliseconds():
    import time
    big = ("def f(x):\n    return x + 1\n" * 400_000)[: 10 * 1024 * 1024]
    started = time.perf_counter()
    index = LineIndex(big)
    offset = index.offset_at(200_000, 4)
    assert index.position_at(offset) == positions.Position(200_000, 4)
    assert time.perf_counter() - started < 0.25  # a full list of line starts takes about 0.3 s
