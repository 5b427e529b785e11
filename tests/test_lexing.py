"""lex: which characters are code, and the brackets in code, for strings with replacement fields
(f-strings, template literals and their kin in other languages)."""
from __future__ import annotations

import pytest

from diffill.lsp.code.lexing import lex


def code_of(text: str, language: str) -> str:
    """The code characters of `text`, strings and comments as spaces."""
    return lex(text, language).blanked()


def depths(text: str, language: str) -> list[tuple[str, int]]:
    return [(b.char, b.depth) for b in lex(text, language).brackets]


@pytest.mark.parametrize("text, code", [
    ('x = f"a{b}c" + d', 'x = f  {b}   + d'),
    ('x = F\'{a!r:>10}\'', 'x = F {a!r:>10} '),
    ('x = rf"{p}/{q}"', 'x = rf {p} {q} '),
    ('x = fr"{p}"', 'x = fr {p} '),
    ('x = t"{p}"', 'x = t {p} '),
    ('s = f"{{literal}}" + y', 's = f' + ' ' * 13 + ' + y'),
    ('s = f"{d[\'k\']:>{w}}"', 's = f {d[   ]:>{w}} '),
    ('s = f"""a\n{b}\n""" + c', 's = f     {b}     + c'),
    ('s = "{not_code}" + f', 's =              + f'),
    ('if"{a}"in s: pass', 'if     in s: pass'),
    ('s = f"\\"{a}\\"" + b', 's = f   {a}    + b'),
])
def test_python_f_string_fields_are_code_and_the_rest_of_the_string_is_not(text, code):
    assert code_of(text, "python") == code


def test_the_braces_of_a_field_are_brackets_and_balance():
    assert depths('print(f"{a}{b[0]}")', "python") == [
        ("(", 1), ("{", 2), ("}", 1), ("{", 2), ("[", 3), ("]", 2), ("}", 1), (")", 0)]


def test_an_unterminated_field_leaves_its_brace_open_at_the_end_of_the_text():
    lexed = lex('print(f"{k}={k', "python")
    assert lexed.end_depth == 2 and lexed.mask[-1] == 1


def test_an_unterminated_one_line_f_string_ends_at_its_line_break():
    text = 'a = f"{x\nb = "#"  # real comment'
    assert code_of(text, "python") == 'a = f {x\nb = ' + ' ' * len('"#"  # real comment')


@pytest.mark.parametrize("language", ["javascript", "typescript", "tsx"])
def test_template_literal_substitutions_are_code_even_nested(language):
    text = "const s = `a${b + `n${c}`}d` + e;"
    assert code_of(text, language) == "const s =    {b +    {c} }   + e;"
    assert lex(text, language).end_depth == 0


def test_a_dollar_without_a_brace_in_a_template_is_text():
    assert code_of("const s = `$a {b}` + c;", "javascript") == "const s = " + " " * 8 + " + c;"


def test_go_raw_strings_have_no_substitutions():
    assert code_of("s := `a${b}`", "go") == "s :=        "


@pytest.mark.parametrize("language, text, code", [
    ("csharp", 'var s = $"{a} and {b:N2}" + c;', 'var s = $ {a}     {b:N2}  + c;'),
    ("csharp", 'var s = $"{{not}} {a}";', 'var s = $' + ' ' * 9 + '{a} ;'),
    ("csharp", 'var s = $@"C:\\{a}\n""{b}""" + c;', 'var s = $@    {a}   {b}    + c;'),  # verbatim: "" is a quote
    ("csharp", 'var s = @"{not}" + c;', 'var s = @' + ' ' * 7 + ' + c;'),
    ("kotlin", 'val s = "${a.b} $c" + d', 'val s =   {a.b}     + d'),
    ("kotlin", 'val s = """\\${a}\n"""', 'val s =      {a}    '),  # a raw string: the backslash escapes nothing
    ("dart", "var s = 'x ${a}' + r'${no}';", "var s =     {a}  + r       ;"),
    ("scala", 'val s = s"${a}" + "${b}"', 'val s = s  {a}  +       '),
    ("swift", 'let s = "x \\(a + b)" + c', 'let s =     (a + b)  + c'),
    ("ruby", 's = "x #{a}" # note', 's =     {a}        '),
    ("shellscript", 'echo "$(date +%s) ${#arr[@]}" # note', 'echo   (date +%s)  {#arr[@]}        '),
])
def test_other_languages_interpolated_fields_are_code(language, text, code):
    assert code_of(text, language) == code
    assert lex(text, language).end_depth == 0


def test_an_escaped_dollar_in_a_template_is_text():
    assert code_of("const s = `\\${a}`;", "javascript") == "const s =        ;"


def test_a_hash_inside_a_shell_word_is_no_comment():
    assert code_of("echo a#b $# x", "shellscript") == "echo a#b $# x"
    assert code_of("echo a # b", "shellscript") == "echo a    "
