"""The completion's edges against the word at the cursor, and blanks at the cursor."""
from __future__ import annotations

import pytest

from diffill.lsp.code.span import decide_span
from diffill.lsp.code.trim import cursor_spacing, word_after_cursor, word_at_cursor
from diffill.lsp.code.trim.context import Context


def run(module, language: str, document: str, completion: str) -> str:
    prefix, suffix = document.split("|")
    span = decide_span(language, prefix, suffix)
    return module.apply(Context.of(language, prefix, suffix, span), completion)


@pytest.mark.parametrize("document, completion, shown", [
    ("def f(x):\n    y = x\n    ret|\n", "return y", "urn y"),          # the typed part again
    ("def f(x):\n    y = x\n    ret|\n", "urn y", "urn y"),             # already aligned
    ("def f(x):\n    y = x\n    return|\n", "y", ""),                   # a known name glued onto a keyword
    ("def f(x):\n    y = x\n    return|\n", " y", " y"),
    ("def f(x):\n    if is|\n", "instance(x, int):", "instance(x, int):"),  # a builtin finished
    ("def f(items):\n    return le|\n", "len(items)", "n(items)"),
    ("def f(min_value):\n    g(min_v|\n", "OOO)", ""),                  # another word than the one typed
    ("def f(min_value):\n    g(min_v|\n", "alue)", "alue)"),
    ("def f(x):\n    resu|\n", "lt_of_f = x", "lt_of_f = x"),           # a new name
    ("def f(x):\n    for|\n", " i in x:", " i in x:"),
])
def test_the_start_is_aligned_with_the_typed_word(document, completion, shown):
    assert run(word_at_cursor, "python", document, completion) == shown


def test_javascript_retyped_word():
    assert run(word_at_cursor, "javascript", "function f(a) {\n  cons|\n}\n", "console.log(a);") == "ole.log(a);"


@pytest.mark.parametrize("document, completion, shown", [
    ("def f(total, count):\n    return |total\n", "count", ""),          # counttotal
    ("def f(total, count):\n    return |total\n", "count + ", "count + "),
    ("def f(total, count):\n    return |total\n", "self.", "self."),
    ("def f(counter):\n    return coun|ter + 1\n", " + ", ""),            # the word split in two
    ("def f(total):\n    return |total\n", "sub", "sub"),                # subtotal: an unknown word of unknown parts
])
def test_the_end_does_not_glue_onto_the_word_after_the_cursor(document, completion, shown):
    assert run(word_after_cursor, "python", document, completion) == shown


@pytest.mark.parametrize("language, document, completion, shown", [
    ("python", "def f(a):\n    b = |\n", " a * 2", "a * 2"),
    ("javascript", "function f(a, b) {\n  return g(| + b);\n}\n", "a ", "a"),
    ("python", "def f(a):\n    |\n", "return a", "return a"),
    ("go", "func f(a int) int {\n\tb :=|\n}\n", " a * 2", " a * 2"),
    ("python", "def f(a):\n    b = |  # note\n", "a \n", "a \n"),
])
def test_no_doubled_blank_at_the_cursor(language, document, completion, shown):
    assert run(cursor_spacing, language, document, completion) == shown


def test_known_words_are_looked_for_in_the_whole_region():
    doc = "from runner import ConjectureRunner\n" + "x = 1\n" * 5000 + "def f(r: Conjectu|\n"
    assert run(word_at_cursor, "python", doc, "reRunner):") == "reRunner):"
