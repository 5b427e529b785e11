"""decide_span: what the completion covers and where it stops; and the syntax helpers under it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from diffill.lsp.code import syntax
from diffill.lsp.code.span import Span, decide_span

C = "<CURSOR>"


def span_of(language: str, document: str, **kw) -> Span:
    prefix, suffix = document.split(C)
    return decide_span(language, prefix, suffix, **kw)


# ---- syntax ---------------------------------------------------------------------------------

SNIPPETS = {
    "python": "def f(x):\n    return x\n",
    "javascript": "function f(x) { return <div>{x}</div>; }\n",
    "typescript": "function f(x: number): number { return x; }\n",
    "tsx": "const A = (p: { n: number }) => <b>{p.n}</b>;\n",
    "go": "package main\nfunc f(x int) int { return x }\n",
    "rust": "fn f(x: i32) -> i32 { x }\n",
    "java": "class A { int f(int x) { return x; } }\n",
    "c": "int f(int x) { return x; }\n",
    "cpp": "template <class T> T f(T x) { return x; }\n",
}


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_every_grammar_wheel_parses_its_language_without_errors(language):
    tree = syntax.parse(language, SNIPPETS[language])
    assert tree is not None
    assert syntax.error_extent(tree) == (0, 0)


def test_error_extent_sees_broken_code():
    assert syntax.error_extent(syntax.parse("python", "def f(:\n    return )\n"))[0] > 0
    assert syntax.error_extent(syntax.parse("c", "int f( { return 1 }"))[0] > 0


@pytest.mark.parametrize("language_id, canonical", [
    ("python", "python"), ("typescriptreact", "tsx"), ("javascriptreact", "javascript"), ("TypeScript", "typescript"),
    ("c++", "cpp"), ("golang", "go"), ("csharp", "csharp"), ("Kotlin", "kotlin"),
])
def test_lsp_language_ids_map_to_canonical_ids(language_id, canonical):
    assert syntax.canonical_language(language_id) == canonical


@pytest.mark.parametrize("path, language", [
    ("a/b.py", "python"), ("x.tsx", "tsx"), ("x.mjs", "javascript"), ("lib.rs", "rust"), ("Main.java", "java"),
    ("x.h", "c"), ("x.hpp", "cpp"), ("x.C", "cpp"), ("x.cs", "csharp"), ("Makefile", ""),
])
def test_language_is_detected_from_the_file_extension(path, language):
    assert syntax.language_from_path(path) == language


def test_fallback_languages_have_no_parser():
    assert syntax.parser_for("csharp") is None
    assert syntax.parse("kotlin", "fun f() = 1") is None
    assert not syntax.has_grammar("lua")
    assert syntax.has_grammar("typescriptreact")


@pytest.mark.parametrize("language, before, after", [
    ("python", "def f(x):\n    return x\n\nprint(f(1))\n", "def f(x):\n    y = x * 2\n    return y\n\nprint(f(1))\n"),
    ("rust", "fn f() -> i32 {\n    1\n}\n", "fn f() -> i32 {\n    let a = 2;\n    a\n}\n"),
    ("cpp", "int main() { return 0; }", "int main() { int é = 1; return é; }"),
])
def test_incremental_reparse_gives_the_same_tree_as_a_fresh_parse(language, before, after):
    parsed = syntax.IncrementalTree(language)
    first = parsed.update(before)
    assert first.root_node.text == before.encode()
    again = parsed.update(after)
    fresh = syntax.parse(language, after)
    assert str(again.root_node) == str(fresh.root_node)
    assert again.root_node.end_byte == len(after.encode())
    back = parsed.update(before)
    assert str(back.root_node) == str(syntax.parse(language, before).root_node)


def test_a_parse_that_runs_too_long_is_given_up_and_span_and_trim_still_answer():
    import time

    from diffill.lsp.code.trim import trim

    looping = 'b"""*/\n"`)\n+[}\n#*1z"\n\\'  # tree-sitter-typescript 0.23 parses this for minutes
    t0 = time.monotonic()
    tree = syntax.parse("typescript", looping)
    assert tree is None or tree.root_node.end_byte == len(looping)
    span = decide_span("typescript", looping, "")
    trim("typescript", looping, "", "x\ny\n", span)
    assert time.monotonic() - t0 < 10 * syntax.PARSE_SECONDS
    assert syntax.parse("typescript", "let x = 1;").root_node.type == "program"  # the parser works on


# ---- spans ----------------------------------------------------------------------------------

@pytest.mark.parametrize("language, document", [
    ("python", "x = 1  # the <CURSOR>\n"),
    ("python", "s = 'ab<CURSOR>c'\n"),
    ("python", 'def f():\n    """Doc <CURSOR>\n    """\n'),
    ("javascript", "const s = `a <CURSOR>`;\n"),
    ("go", "// Package p <CURSOR>\npackage p\n"),
    ("rust", "/* block <CURSOR> */ fn f() {}\n"),
    ("java", 'class A { String s = "x<CURSOR>"; }\n'),
    ("cpp", "int x; // <CURSOR>\n"),
    ("csharp", "var s = \"a<CURSOR>\";\n"),
    ("kotlin", "val x = 1 // note <CURSOR>\n"),
    ("python", 'print(f"{k}={v} <CURSOR>\n'),
    ("javascript", "const s = `${a} <CURSOR>\n"),
    ("csharp", 'Console.WriteLine($"Total: {t} <CURSOR>\n'),
    ("kotlin", 'println("${a} <CURSOR>\n'),
])
def test_inside_strings_and_comments_there_is_nothing_to_fill(language, document):
    span = span_of(language, document)
    assert span.kind == "none"
    assert span.canvas_length == 0
    assert not span.wants_completion


def test_broken_code_below_a_long_docstring_is_code():
    # the tree cannot tell at `x =` (an error node): the text rule decides, from the prefix's start
    doc = ("def f(x, y):\n    \"\"\"Doc.\n\n" + "    >>> f(1, 2)\n" * 300 + "    \"\"\"\n    if x:\n        return x\n"
           "    result =<CURSOR>\n    if y:\n        return 1\n")
    assert span_of("python", doc).kind == "line"


def test_comments_can_be_completed_when_configured():
    span = span_of("python", "x = 1  # the <CURSOR>\n", complete_in_comments=True)
    assert span.kind == "line"


@pytest.mark.parametrize("language, document", [
    ("python", "s = 'abc'<CURSOR>\n"),
    ("python", "msg = f'{<CURSOR>}'\n"),
    ("javascript", "const s = `${<CURSOR>}`;\n"),
    ("c", "/* done */<CURSOR>\n"),
])
def test_right_after_a_string_or_comment_or_inside_interpolation_is_code(language, document):
    assert span_of(language, document).kind != "none"


@pytest.mark.parametrize("document, depth", [
    ('print(f"{k}={k<CURSOR>\n', 2),
    ('    for k in keys:\n        log(f"""{k}: {d[<CURSOR>\n', 3),
    ('msg = rf"{path}/{name.<CURSOR>\n', 1),
])
def test_an_unterminated_f_string_field_at_the_cursor_is_code_whose_brace_the_line_must_close(document, depth):
    # the tree is broken there, so the text rule decides: the field's brace is open at the cursor
    span = span_of("python", document)
    assert span.kind == "line" and span.close_depth == depth


@pytest.mark.parametrize("language, document", [
    ("python", "print(<CURSOR>)\n"),
    ("python", "total = <CURSOR>\n"),
    ("typescript", "const x: number = <CURSOR>;\n"),
    ("go", "func f() {\n\tx := g(<CURSOR>)\n}\n"),
    ("java", "class A { void f() { if (<CURSOR>) {} } }\n"),
    ("csharp", "Console.WriteLine(<CURSOR>);\n"),
])
def test_after_code_on_the_line_the_span_is_the_rest_of_the_line(language, document):
    span = span_of(language, document)
    assert span.kind == "line"
    assert span.single_line
    assert span.canvas_length in (32, 64)


def test_inside_an_expression_the_canvas_is_smaller_than_at_the_end_of_a_line():
    assert span_of("python", "f(<CURSOR>)\n").canvas_length < span_of("python", "x = <CURSOR>\n").canvas_length


@pytest.mark.parametrize("language, document, kind, stop", [
    ("python", "def f(x):\n    if x:\n        <CURSOR>\n    return 1\n", "block", 4),
    ("python", "def f(x):\n    <CURSOR>\n", "definition", 0),
    ("python", "class A:\n    def g(self):\n        <CURSOR>\n", "definition", 4),
    ("python", 'def f(x):\n    """Doc."""\n    <CURSOR>\n', "definition", 0),
    ("python", "def f(x):\n    for i in x:<CURSOR>\n    return x\n", "block", 4),
    ("javascript", "function f() {\n  <CURSOR>\n}\n", "definition", 0),
    ("rust", "fn main() {\n    if a {\n        <CURSOR>\n    }\n}\n", "block", 4),
    ("go", "func main() {\n\tfor {\n\t\t<CURSOR>\n\t}\n}\n", "block", 4),
    ("kotlin", "fun f() {\n<CURSOR>", "definition", None),
])
def test_after_a_line_that_opens_a_block_the_span_is_its_body(language, document, kind, stop):
    span = span_of(language, document)
    assert span.kind == kind
    assert span.stop_indent == stop
    assert span.canvas_length == (256 if kind == "definition" else 128)
    assert not span.single_line


def test_a_block_whose_code_continues_below_may_be_left_up_to_its_function():
    # the line below is inside the `if`: the completion is not the whole body and may leave it
    span = span_of("python", "def f(xs):\n    for x in xs:\n        if x:\n            <CURSOR>\n            y = 1\n")
    assert span.kind == "block"
    assert span.stop_indent == 0


def test_an_empty_line_inside_a_function_takes_statements_up_to_the_function_end():
    span = span_of("python", "def f(xs):\n    s = 0\n    <CURSOR>\n    return s\n")
    assert span.kind == "statements"
    assert span.stop_indent == 0
    assert span.max_lines >= 8


def test_unindented_brace_code_gets_no_indentation_stop():
    span = span_of("cpp", "int main(){\nint n;\n<CURSOR>\n}\n")
    assert span.kind == "statements"
    assert span.stop_indent is None


@pytest.mark.parametrize("language, document, depth", [
    ("javascript", "function f() {\n  <CURSOR>\n}\n", 0),
    ("javascript", "function f() {\n  <CURSOR>", 1),
    ("c", "int main() {\n  if (x) {\n    <CURSOR>\n}\n", 1),
    ("python", "x = [\n    1,\n    <CURSOR>", 1),
    ("python", "print(<CURSOR>)", 0),
    ("csharp", "class A {\n  void F() {\n    <CURSOR>", 2),
    ("python", 'print(f"{k}={<CURSOR>\n', 2),
    ("javascript", "log(`${a}=${<CURSOR>\n", 2),
    ("csharp", 'Console.WriteLine($"Total: {order.<CURSOR>\n', 2),
    ("kotlin", 'println("${user.<CURSOR>\n', 2),
    ("swift", 'print("\\(user.<CURSOR>\n', 2),
])
def test_close_depth_counts_open_brackets_the_suffix_does_not_close(language, document, depth):
    assert span_of(language, document).close_depth == depth


def test_canvas_lengths_are_the_documented_sizes():
    for document in ("def f():\n    <CURSOR>\n", "x = <CURSOR>\n", "f(<CURSOR>)\n", "if x:\n    <CURSOR>\n",
                     "a = 1\n<CURSOR>\nb = 2\n", "# <CURSOR>\n"):
        assert span_of("python", document).canvas_length in (0, 32, 64, 128, 256)


def test_broken_code_still_gets_a_span():
    span = span_of("python", "def f(:\n    x = [1, 2\n    <CURSOR>\n")
    assert span.kind in ("statements", "block", "definition", "line")


def test_the_span_and_trim_modules_do_not_import_torch():
    code = ("import sys; import diffill.lsp.code.span, diffill.lsp.code.trim, diffill.lsp.code.syntax; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spans_are_the_same_whether_the_shared_tree_was_reused_or_not():
    documents = [
        ("python", "def f(x):\n    if x:\n        <CURSOR>\n    return 1\n"),
        ("python", "s = 'ab<CURSOR>c'\n"),
        ("rust", "fn main() {\n    if a {\n        <CURSOR>\n    }\n}\n"),
        ("python", "def f(x):\n    <CURSOR>\n"),
    ]
    first = [span_of(lang, doc) for lang, doc in documents]
    again = [span_of(lang, doc) for lang, doc in reversed(documents)][::-1]
    syntax._TREES.clear()
    fresh = [span_of(lang, doc) for lang, doc in documents]
    assert first == again == fresh


@pytest.mark.parametrize("language,opener,closer", [("python", '    """', '    """'), ("javascript", "  /*", "  */")])
def test_brackets_open_at_the_cursor_are_counted_when_the_window_starts_inside_a_long_string(
        language, opener, closer):
    """The bracket count reads the last 20,000 characters of the prefix; when that point falls inside
    a docstring or comment, reading from there flipped the quotes and missed the bracket the
    completion must close (`found.extend(_flatten_group(exc))` lost its last `)`)."""
    from diffill.lsp.code.span import BRACKET_WINDOW, decide_span
    filler = "\n".join("    it says (or [ things" for _ in range(BRACKET_WINDOW // 20))
    if language == "python":
        prefix = f"def f(found, exc):\n{opener}\n{filler}\n{closer}\n    found.extend(_flatte"
        suffix = "\n    return found\n"
    else:
        prefix = f"function f(found, exc) {{\n{opener}\n{filler}\n{closer}\n  found.push(flatte"
        suffix = "\n  return found;\n}\n"
    assert len(prefix) > BRACKET_WINDOW + 1000
    span = decide_span(language, prefix, suffix)
    assert span.kind == "line" and span.close_depth == 1
