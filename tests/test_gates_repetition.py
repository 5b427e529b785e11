"""The repetition filter: repeated lines, repeated blocks, lines that end in a repeating token run."""
from __future__ import annotations

from diffill.lsp.code.span import decide_span
from diffill.lsp.code.trim import repetition
from diffill.lsp.code.trim.context import Context


def cut(language: str, document: str, completion: str) -> str:
    prefix, suffix = document.split("|")
    span = decide_span(language, prefix, suffix)
    return repetition.apply(Context.of(language, prefix, suffix, span), completion)


BODY = "def f(x):\n    |\n    return x\n"


def test_a_line_and_two_copies_end_after_the_first():
    assert cut("python", BODY, "x += 1\n" + "    x += 1\n" * 9) == "x += 1"
    assert cut("python", BODY, "y = 2\n    x += 1\n    x += 1\n    x += 1\n    x += 1") == "y = 2\n    x += 1"


def test_two_equal_lines_are_not_yet_repetition():
    assert cut("python", BODY, "x += 1\n    x += 1") == "x += 1\n    x += 1"


def test_a_cut_off_last_copy_counts():
    assert cut("python", BODY, "x = x + 1\n    x = x + 1\n    x = x +") == "x = x + 1"


def test_a_repeated_block_ends_after_its_first_copy_blank_lines_aside():
    block = "total = compute(x)\n    print(total)\n"
    text = block + "\n    " + block + "    " + block
    assert cut("python", BODY, text) == "total = compute(x)\n    print(total)"


def test_a_line_ending_in_a_token_run_is_not_shown():
    assert cut("python", BODY, "foo = foo = foo = foo = foo") == ""
    assert cut("python", BODY, "y = x\n    z = x + x + x + x + x + x") == "y = x"
    assert cut("python", BODY, "x = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1") == ""
    assert cut("python", BODY, "retretretretretretret") == ""


def test_data_closers_strings_and_comments_are_not_repetition():
    assert cut("python", BODY, "x = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]") == "x = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"
    assert cut("python", BODY, "print('=' * 80)  # ========") == "print('=' * 80)  # ========"
    assert cut("python", BODY, "s = 'a b' + 'c d' + 'e f' + 'g h'") == "s = 'a b' + 'c d' + 'e f' + 'g h'"
    js = "function f() {\n  if (a) {\n    if (b) {\n      |\n}\n"
    assert cut("javascript", js, "c();\n    }\n  }") == "c();\n    }\n  }"


def test_a_run_the_user_typed_is_left_to_the_user():
    doc = "def f(a):\n    x = a + a + a + a + a + a + |\n"
    assert cut("python", doc, "a") == "a"
