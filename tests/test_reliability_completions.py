"""Right answers for the text as it is now: the cache misses after an edit in the model's window, any
text (lone surrogates, control characters, CR-only line ends) gives a completion or none, never an
error, CR-only files get CR line ends back, and their keystrokes cost what \\n files cost."""
import asyncio
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from diffill.lsp.pipeline.fill import FixedFill
from diffill.lsp.server import completion_cache, positions, settings
from diffill.lsp.server.completer import Completer
from diffill.lsp.server.documents import Document, DocumentStore
from diffill.lsp.server.requests import Inflight
from server_harness import COMPLETION, editor, fixed_answers  # noqa: F401

FAST, _ = settings.parse({"debounceMs": 0})


def complete(doc: Document, line: int, character: int, fill) -> object:
    return asyncio.run(Completer(FAST, fill).complete(doc, line, character))


# ---- the cache and the model's window ----------------------------------------------------------

FUNCTION = ("def total(values, scale):\n" + "".join(f"    # note {i:03d}: nothing to see here\n" for i in range(12))
            + "    return \n")


def test_an_edit_anywhere_in_the_models_window_makes_the_cache_miss():
    cache = completion_cache.CompletionCache()
    cursor = FUNCTION.index("return ") + len("return ")
    assert cursor > 2 * completion_cache.CONTEXT_CHARS  # the edit below is far outside the 200 characters
    cache.put("u", FUNCTION, cursor, "sum(values) * scale", window=(0, len(FUNCTION)))
    assert cache.lookup("u", FUNCTION, cursor).text == "sum(values) * scale"
    renamed = FUNCTION.replace("scale", "factor", 1)  # a parameter renamed at the top
    moved = cursor + len("factor") - len("scale")
    assert cache.lookup("u", renamed, moved) is None
    typed = FUNCTION[:cursor] + "su" + FUNCTION[cursor:]
    assert cache.lookup("u", typed, cursor + 2).text == "m(values) * scale"  # typing through still hits
    cache.put("v", FUNCTION, cursor, "x", window=(FUNCTION.index("    # note 005"), len(FUNCTION)))
    above = "import os\n" + FUNCTION  # above the window: the model saw the same text
    assert cache.lookup("v", above, cursor + len("import os\n")).text == "x"


async def test_a_fill_in_flight_is_not_shared_after_an_edit_in_its_window():
    async def never():
        await asyncio.sleep(10)

    cursor = FUNCTION.index("return ") + len("return ")
    task = asyncio.ensure_future(never())
    inflight = Inflight.at("u", FUNCTION, cursor, task, window=(0, len(FUNCTION)))
    typed = FUNCTION[:cursor] + "s" + FUNCTION[cursor:]
    assert inflight.typed_ahead(typed, cursor + 1)
    renamed = FUNCTION.replace("scale", "s", 1)
    assert not inflight.typed_ahead(renamed[: cursor - 4] + "s" + renamed[cursor - 4:], cursor - 3)
    task.cancel()


async def test_the_server_does_not_answer_from_the_cache_after_a_rename_at_the_top(fixed_answers):
    opts = {"workerMode": "private", "debounceMs": 0, "maxSteps": 4, "canvasCap": 16}
    async with editor(opts, env=fixed_answers) as s:
        uri = "file:///project/total.py"
        s.open(uri, FUNCTION)
        line = FUNCTION.count("\n") - 1
        assert (await s.inline(uri, line, 11)).items[0].insert_text == COMPLETION
        assert (await s.inline(uri, line, 11)) is not None and (await s.stats())["last_source"] == "cache"
        s.edit(uri, 0, len("def total(values, "), "factor", end=(0, len("def total(values, scale")))
        assert (await s.inline(uri, line, 11)).items[0].insert_text == COMPLETION
        stats = await s.stats()
        assert stats["last_source"] == "model" and stats["model_fills"] == 2


# ---- any text: a completion or none, never an error -------------------------------------------

def test_a_lone_surrogate_in_the_document_still_gets_a_completion():
    text = 'label = "\ud83d"\n\n\ndef total(values):\n    return \n'
    doc = Document("file:///s.py", "python", 1, text)
    shown = complete(doc, 4, 11, FixedFill("sum(values)"))
    assert shown is not None and shown.text == "sum(values)"


async def test_the_server_answers_in_a_document_with_a_lone_surrogate(fixed_answers):
    opts = {"workerMode": "private", "debounceMs": 0, "maxSteps": 4, "canvasCap": 16}
    async with editor(opts, env=fixed_answers) as s:
        uri = "file:///project/broken.py"
        s.open(uri, 'x = "\udc80"\n\n\ndef total(values):\n    return \n')
        result = await s.inline(uri, 4, 11)  # an internal error with a traceback, before
        assert result is not None and result.items[0].insert_text == COMPLETION


characters = st.sampled_from(list("ab_(){}[]:=\"' \t\n\r") + ["\r\n", "\ud800", "\udfff", "\x00", "\x1b", "\ufeff",
                                                             "😀", "\u0301", "\u2028", "\x85"])


@hsettings(max_examples=150, deadline=None)
@given(text=st.lists(characters, max_size=80).map("".join), data=st.data(),
       answer=st.sampled_from(["x", "a + b\n    return a", "\ud800", "y\udc80\n", "\n", ")]}"]))
def test_any_text_and_any_fill_give_a_completion_or_none_never_an_error(text, data, answer):
    doc = Document("file:///f.py", data.draw(st.sampled_from(["python", "rust", "plaintext", ""])), 1, text)
    line = data.draw(st.integers(0, text.count("\n") + text.count("\r") + 1))
    character = data.draw(st.integers(0, 90))
    shown = complete(doc, line, character, FixedFill(answer))
    assert shown is None or isinstance(shown.text, str)


# ---- CR-only files -----------------------------------------------------------------------------

@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_a_multi_line_completion_comes_back_in_the_documents_own_line_ends(eol):
    text = eol.join(["import math", "", "", "def area(radius):", "    ", ""])
    doc = Document("file:///a.py", "python", 1, text)
    shown = complete(doc, 4, 4, FixedFill("r = radius * 2\n    return math.pi * r ** 2\n"))
    assert shown is not None and shown.text == f"r = radius * 2{eol}    return math.pi * r ** 2"


@given(st.lists(st.sampled_from(["a", "b", " ", "\n", "\r\n", "\r", "😀", "漢"]), max_size=60).map("".join), st.data())
def test_the_chunked_index_agrees_with_a_full_list_of_line_starts_for_every_line_end(text, data):
    class Small(positions.LineIndex):
        CHUNK = 3  # many chunk boundaries, some inside a \r\n

    chunked = Small(text)
    starts = positions.line_starts(text)
    assert chunked.line_count == len(starts)
    for line, start in enumerate(starts):
        assert chunked.line_start(line) == start
        end = starts[line + 1] if line + 1 < len(starts) else len(text)
        content = text[start:end].rstrip("\r\n") if line + 1 < len(starts) else text[start:end]
        assert chunked.line_text(line) == content
    offset = data.draw(st.integers(0, len(text)))
    if 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n":
        offset -= 1
    pos = chunked.position_at(offset, positions.UTF32)
    assert chunked.offset_at(pos.line, pos.character, positions.UTF32) == offset


def test_a_keystroke_in_a_million_line_cr_only_file_costs_milliseconds():
    class Change:
        def __init__(self, line, character, text):
            from lsprotocol import types
            self.text = text
            self.range = types.Range(types.Position(line, character), types.Position(line, character))

    store = DocumentStore()
    doc = store.open("file:///cr.py", "python", 1, "x = 1\r" * 1_000_000)
    doc.offset_at(0, 0)
    times = []
    for i in range(7):
        started = time.perf_counter()
        store.change(doc.uri, i + 2, [Change(500_000 + i, 5, "0")])
        doc.position_at(len(doc.text) // 2)  # the index the next request needs
        times.append(time.perf_counter() - started)
    assert doc.text.count("\r") == 1_000_000 and doc.index.line_count == 1_000_001
    assert doc.index.line_text(500_003) == "x = 10"
    assert sorted(times)[len(times) // 2] < 0.06, times  # about 0.2 s a keystroke with a list of line starts
