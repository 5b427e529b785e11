"""The parse gate: a completion that adds syntax errors to the document is cut back or not shown."""
from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffill.lsp.code import syntax
from diffill.lsp.code.span import decide_span
from diffill.lsp.code.trim import parse_gate
from diffill.lsp.code.trim.context import Context


def gate(language: str, document: str, completion: str) -> str:
    prefix, suffix = document.split("|")
    span = decide_span(language, prefix, suffix)
    return parse_gate.apply(Context.of(language, prefix, suffix, span), completion)


def test_a_completion_that_adds_no_error_is_left_alone():
    doc = "def f(xs):\n    |\n    return out\n"
    assert gate("python", doc, "out = [x * 2 for x in xs]") == "out = [x * 2 for x in xs]"


def test_junk_with_no_clean_line_shows_nothing():
    doc = "def f(xs):\n    total = 0\n    for x in xs:\n        |\n    return total\n"
    assert gate("python", doc, "total += return None = None = None:") == ""


def test_the_cut_is_the_longest_clean_prefix_at_a_line_end_or_after_a_semicolon():
    doc = "int f(int a) {\n    |\n    return a;\n}\n"
    assert gate("c", doc, "a += 1;\n    a *= 2;\n    a = (a +") == "a += 1;\n    a *= 2;"
    assert gate("c", doc, "a += 1; a = (a +") == "a += 1;"


def test_python_headers_need_their_body_and_lines_their_indentation():
    doc = "def f(x):\n    |\n    return x\n"
    assert gate("python", doc, "y = x\n    if y:") == "y = x"
    assert gate("python", doc, "y = x\n        z = y") == "y = x"
    assert gate("python", doc, "y = x\n  z = y") == "y = x"


def test_what_the_user_is_in_the_middle_of_writing_is_not_the_completions_error():
    doc = "def f(seed, n):\n    state = make_state(|\n\n\ndef make_state(a, b):\n    return a\n"
    assert gate("python", doc, "seed, n") == "seed, n"
    assert gate("python", doc, "seed, n)") == "seed, n)"
    doc = "def f(x):\n    if x|\n        return 1\n"
    assert gate("python", doc, " > 0") == " > 0"


def test_junk_inside_a_line_the_user_has_not_finished_is_caught_by_pythons_parser():
    doc = "def f(seed, n):\n    state = make_state(se|\n\n\ndef make_state(a, b):\n    return a\n"
    assert gate("python", doc, "ed !! n") == ""
    doc = "def f(x):\n    if x|\n        return 1\n"
    assert gate("python", doc, " !! 0") == ""


def test_an_unclosed_brace_of_the_completion_is_an_error_it_adds():
    doc = "function printHello(|) {}\n"
    assert gate("javascript", doc, ") {") == ""
    doc = "function f(a) {\n  |\n  return a;\n}\n"
    assert gate("javascript", doc, "const b = a;\n  if (b) {") == "const b = a;"


def test_languages_without_a_grammar_are_left_alone():
    assert gate("lua", "function f(a)\n  |\nend\n", "local b = = =") == "local b = = ="


def test_the_window_is_whole_statements_around_the_cursor():
    body = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y\n\n\n" for i in range(4000))
    data = body.encode()
    cursor = data.index(b"def f2000") + len(b"def f2000(x):\n    ")
    tree = syntax.parse("python", data)
    start, end = parse_gate.window(tree, data, cursor)
    assert start <= cursor <= end
    assert end - start <= 4 * parse_gate.WINDOW
    assert start == 0 or data[start - 1:start] == b"\n"
    assert data[start:end].startswith(b"def f") and data[end:end + 1] in (b"\n", b"")


def test_the_gate_is_fast_on_a_large_file():
    body = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y\n\n\n" for i in range(8000))  # ~330 KB
    at = body.index("def f4000") + len("def f4000(x):\n    ")
    prefix, suffix = body[:at], body[at:]
    span = decide_span("python", prefix, suffix)
    ctx = Context.of("python", prefix, suffix, span)
    parse_gate.apply(ctx, "z = x")  # warm
    times = []
    for completion in ("z = x * 2", "z = (x +", "total += return None = None:"):
        t0 = time.perf_counter()
        parse_gate.apply(Context.of("python", prefix, suffix, span), completion)
        times.append(time.perf_counter() - t0)
    assert min(times) < 0.05  # generous: the whole document is never parsed again


def test_python_structure_finds_empty_bodies_and_misindented_statements():
    tree = syntax.parse("python", "def f(x):\n    for i in x:\n    return 1\n")
    assert [e.kind for e in parse_gate.python_structure(tree, 0, 100)] == ["structure"]
    tree = syntax.parse("python", "def f(x):\n    x = 1\n        y = 2\n")
    assert parse_gate.python_structure(tree, 0, 100)
    tree = syntax.parse("python", "def f(x):\n    x = 1\n    if x:\n        y = 2\n    return y\n")
    assert parse_gate.python_structure(tree, 0, 100) == []


def test_python_viability_tells_unfinished_from_invalid():
    assert parse_gate.python_status("x = foo(a,") == "incomplete"
    assert parse_gate.python_status("x = foo(a)\n") == "ok"
    assert parse_gate.python_status("x = foo(a !! b") == "invalid"
    assert parse_gate.python_invalid_at("if x", "") is None  # "if x:" can follow
    assert parse_gate.python_invalid_at("x = 1 2") is not None


LANGUAGES = ["python", "javascript", "go", "rust", "java", "c", "cpp", "typescript"]
ALPHABET = st.sampled_from(list("abxy01 _=+-*:;,.()[]{}'\"#\n\t") + ["def ", "if ", "return ", "    ", "}\n", "):\n"])
code = st.lists(ALPHABET, max_size=40).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(language=st.sampled_from(LANGUAGES), prefix=code, suffix=code, completion=code)
def test_the_gate_never_raises_and_only_cuts_from_the_end(language, prefix, suffix, completion):
    span = decide_span(language, prefix, suffix)
    out = parse_gate.apply(Context.of(language, prefix, suffix, span), completion)
    assert completion.startswith(out)
    if out and out != completion:
        g = parse_gate.Gate.of(Context.of(language, prefix, suffix, span))
        assert g is not None and not g.adds_errors(out)


def test_an_empty_body_below_a_long_expression_still_takes_its_body():
    """The tree around an empty body is an error whose children are fragments: a window that would
    start inside the long expression above starts further up."""
    expression = "\n".join(f"            and check_{i}(self.value)" for i in range(120))
    doc = (f"class Choice:\n    def valid(self) -> bool:\n        return (\n            self.value is not None\n"
           f"{expression}\n        )\n\n    def __repr__(self) -> str:\n|\n\n\ndef after():\n    pass\n")
    body = '        marker = " [forced]" if self.forced else ""\n        return f"{self.value!r}{marker}"\n'
    assert gate("python", doc, body) == body


def test_python_reads_a_window_that_starts_indented_and_dedents():
    head = parse_gate._python_head("        x = 1\n    y = 2\n    z = (")
    assert parse_gate.python_status(head) == "incomplete"


def test_a_window_does_not_start_at_a_clause():
    """Under an `else:` at the top level, a window that would start at the clause (an error by
    itself) starts at the statement the clause belongs to."""
    filler = "".join(f"    # note {i}: " + "x" * 60 + "\n" for i in range(60))
    doc = ("import sys\n\nif sys.argv:\n    pass\nelse:\n" + filler
           + "    try:\n        import foo\n    except ImportError:\n        try:\n|\n        except ValueError:\n"
           "            pass\n")
    assert gate("python", doc, "            import bar\n") == "            import bar\n"
    assert gate("python", doc, "return self.get(:\n            else:\n") == ""


def test_a_window_that_would_end_inside_a_block_ends_where_it_closes():
    body = "".join(f"        for (int q{i} = 0; q{i} < n; q{i}++) {{\n            s += q{i};\n        }}\n" for i in range(150))
    doc = ("int f(int n) {\n    int s = 0;\n    for (int i = 0; i < n; i++) {\n        for (|) {\n            s += x;\n"
           "        }\n" + body + "    }\n    return s;\n}\n")
    assert gate("cpp", doc, "int x = 0; x < n; x++") == "int x = 0; x < n; x++"


def test_in_a_window_full_of_errors_only_new_ones_inside_or_more_of_them_count():
    doc = "#define F(i, a, b) for (int i = a; i <= b; i++)\nint g[9][9];\nint main() {\n" + \
          "    F(i, 1, 3)F(j, 1, 3) if (g[i][j])\n    {\n        F(x, -1, 1)F(y, -1, 1)\n            if (|)\n" + \
          "                g[i][j]++;\n    }\n}\n"
    assert gate("cpp", doc, "x | y") == "x | y"
    assert gate("cpp", doc, "x y ) ) (") == ""
