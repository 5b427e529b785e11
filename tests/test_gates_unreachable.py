"""The unreachable-code filter: nothing after a terminal statement at its level."""
from __future__ import annotations

from diffill.lsp.code.span import decide_span
from diffill.lsp.code.trim import unreachable
from diffill.lsp.code.trim.context import Context


def cut(language: str, document: str, completion: str) -> str:
    prefix, suffix = document.split("|")
    span = decide_span(language, prefix, suffix)
    return unreachable.apply(Context.of(language, prefix, suffix, span), completion)


def test_statements_after_the_last_return_are_cut():
    doc = "def f(x):\n    y = x\n    |\n\n\ndef g():\n    pass\n"
    assert cut("python", doc, "return y\n\n    z = 3\n    print(z)\n") == "return y"


def test_a_return_the_user_began_counts_when_it_ends_in_the_completion():
    doc = "def f(x):\n    return |\n"
    assert cut("python", doc, "(x +\n        1)\n    z = 3") == "(x +\n        1)"


def test_a_return_the_user_finished_is_left_alone():
    doc = "def f(x):\n    return x; |\n"
    assert cut("python", doc, "y = 1") == "y = 1"


def test_lower_levels_clauses_and_labels_are_reached():
    doc = "def f(x):\n    if x:\n|\n    return 2\n"
    assert cut("python", doc, "        return 1\n    return 3\n") == "        return 1\n    return 3\n"
    c = "int f(int x) {\n  switch (x) {\n|\n  }\n}\n"
    text = "  case 1:\n    return 1;\n  case 2:\n    goto out;\n  out:\n    x = 2;\n"
    assert cut("c", c, text) == text


def test_dead_lines_go_and_the_reachable_code_after_them_stays():
    doc = "def f(xs):\n    for x in xs:\n        if x:\n|\n"
    text = "            return x\n            break\n    else:\n        return None\n"
    assert cut("python", doc, text) == "            return x\n    else:\n        return None\n"


def test_one_line_python_bodies_take_no_indented_lines():
    assert cut("python", "def f(x): |\n", "return x\n    y = 2") == "return x"
    assert cut("python", "def f(x):\n    |\n", "if x: y = 1\n    z = 2") == "if x: y = 1\n    z = 2"


def test_brace_languages_use_depth_and_indentation():
    c = "int f(int x) {\n|\n}\n"
    assert cut("c", c, "    if (x)\n        return 1;\n    return 2;\n    x++;\n") == "    if (x)\n        return 1;\n    return 2;"
    js = "function f(x) {\n|\n}\n"
    assert cut("javascript", js, "  throw new Error(\n    'x');\n  // note\n  y = 1;\n}\n") == "  throw new Error(\n    'x');\n}\n"
    assert cut("javascript", js, "  return g(x);\n  function g(y) { return y; }\n") == "  return g(x);\n  function g(y) { return y; }\n"


def test_keywords_in_strings_and_comments_do_not_count():
    doc = "def f(x):\n    |\n"
    assert cut("python", doc, "s = 'return'\n    t = s") == "s = 'return'\n    t = s"
    assert cut("python", doc, "# return early\n    t = x") == "# return early\n    t = x"


def test_ruby_modifiers_make_a_return_conditional():
    doc = "def f(x)\n  |\nend\n"
    assert cut("ruby", doc, "return 1 if x\n  x + 1") == "return 1 if x\n  x + 1"
    assert cut("ruby", doc, "return 1\n  x + 1") == "return 1"


def test_a_braceless_body_at_the_headers_indentation_leaves_only_that_if():
    doc = "int f(int *a, int n) {\n    for (int i = 0; i < n; i++) {\n|\n    }\n    return 0;\n}\n"
    text = "        if (a[i] < 0)\n        continue;\n        a[i] *= 2;"
    assert cut("c", doc, text) == text
