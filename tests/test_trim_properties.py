"""Properties of `trim` on arbitrary, also broken, input: it never raises, and what it returns is
an edit the editor can show: it only removes parts of the model's text (re-indenting aside), keeps the
document's line breaks, and replaces nothing but characters it retypes on the cursor's line."""
from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffill.lsp.code.span import KINDS, Span, decide_span
from diffill.lsp.code.trim import Trimmed, trim

# DIFFILL_FUZZ_SCALE=10 runs ten times the examples (a longer local fuzzing session)
SCALE = int(os.environ.get("DIFFILL_FUZZ_SCALE", "1"))

LANGUAGES = ["python", "javascript", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp",
             "csharp", "lua", ""]

# code-ish characters: brackets, quotes, comment starters, line breaks (CR too), tabs, non-ASCII
ALPHABET = st.sampled_from(list("abcxyz019 _=+-*/\\:;,.()[]{}<>'\"`#!?\t\n\r") + ["\r\n", "é", "𝄞", "def ", "if ",
                                                                                    "return ", "    ", "}\n", "):\n"])
code = st.lists(ALPHABET, max_size=60).map("".join)

spans = st.builds(
    Span,
    kind=st.sampled_from(KINDS),
    canvas_length=st.sampled_from([0, 32, 64, 128, 256]),
    max_lines=st.integers(0, 10),
    single_line=st.booleans(),
    stop_indent=st.one_of(st.none(), st.integers(0, 12)),
    close_depth=st.integers(0, 3),
)


def _skeleton(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _is_subsequence(needle: str, hay: str) -> bool:
    it = iter(hay)
    return all(ch in it for ch in needle)


def check_edit(prefix: str, suffix: str, completion: str, result: Trimmed) -> None:
    assert isinstance(result, Trimmed)
    assert isinstance(result.text, str)
    (sl, sc), (el, ec) = result.replace_range
    assert (sl, sc, el) == (0, 0, 0)  # starts at the cursor and stays on its line
    rest = re.split(r"\r\n|\r|\n", suffix, maxsplit=1)[0]
    assert 0 <= ec <= len(rest)
    # the replaced characters are retyped in order: the edit only adds characters
    assert _is_subsequence(rest[:ec], result.text)
    # only removes (and changes indentation): the text is the completion's with parts left out (its end
    # cut, a retyped start of the word at the cursor, unreachable lines)
    assert _is_subsequence(_skeleton(result.text), _skeleton(completion))
    # line breaks are the document's own: no lone CR, and LF alone only in LF documents
    assert "\r" not in result.text.replace("\r\n", "")
    if "\r\n" in result.text:
        assert "\n" not in result.text.replace("\r\n", "")
    if result.text == "":
        assert ec == 0


@settings(max_examples=400 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(language=st.sampled_from(LANGUAGES), prefix=code, suffix=code, completion=code)
def test_trim_with_decided_span_never_raises_and_returns_a_consistent_edit(language, prefix, suffix, completion):
    span = decide_span(language, prefix, suffix)
    assert span.kind in KINDS
    assert span.canvas_length in (0, 32, 64, 128, 256)
    result = trim(language, prefix, suffix, completion, span)
    check_edit(prefix, suffix, completion, result)
    if span.kind == "none":
        assert result.text == ""


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(language=st.sampled_from(LANGUAGES), prefix=code, suffix=code, completion=code, span=spans)
def test_trim_with_any_span_never_raises_and_returns_a_consistent_edit(language, prefix, suffix, completion, span):
    result = trim(language, prefix, suffix, completion, span)
    check_edit(prefix, suffix, completion, result)


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(language=st.sampled_from(LANGUAGES), prefix=code, suffix=code,
       completion=st.text(max_size=80))
def test_trim_survives_arbitrary_unicode_completions(language, prefix, suffix, completion):
    result = trim(language, prefix, suffix, completion, decide_span(language, prefix, suffix))
    check_edit(prefix, suffix, completion, result)
