"""Golden cases for `trim`: each file under tests/golden/trim/<folder>/ is one case.

A folder named after a filter (a module in `trim.FILTERS`) holds that filter's cases: the filter
must change the text (it is in the trace), or, with `changes: no`, must leave it alone. The other
folders: in_string_or_comment (the span wants nothing, so nothing is shown), line_breaks (CRLF
documents), replace_range (the completion retypes closers after the cursor).

Format (adding a case is adding a file):

    # what the case shows (free text; lines starting with '#' before the first section)
    language: python            # LSP languageId or alias
    kind: block                 # optional: the span kind decide_span must choose
    replace: 1                  # optional: characters after the cursor the result replaces (default 0)
    eol: crlf                   # optional: the document uses CRLF line breaks
    changes: no                 # optional: the folder's filter leaves this completion as it is
    --- document
    def f(x):
        <CURSOR>
    --- completion
    return x
    --- expected
    return x
    --- end

A section's text is everything between its marker line and the next marker line, without the
line break just before that marker. An empty `expected` section is a negative case: nothing to show.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from diffill.lsp.code import trim as trimming
from diffill.lsp.code.span import decide_span
from diffill.lsp.code.trim import trim

ROOT = Path(__file__).parent / "golden" / "trim"
CURSOR = "<CURSOR>"
SECTIONS = ("document", "completion", "expected")
FILTERS = {trimming.filter_name(f) for f in trimming.FILTERS}
OTHER_FOLDERS = {"in_string_or_comment", "line_breaks", "replace_range"}


def parse_case(path: Path) -> dict:
    raw = path.read_text(encoding="utf-8")
    head, sep, body = raw.partition("\n--- document\n")
    if not sep:
        raise ValueError(f"{path}: no '--- document' section")
    case: dict = {"kind": None, "replace": 0, "eol": "lf", "changes": "yes"}
    for line in head.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(":")
        case[key.strip()] = value.strip()
    text = "--- document\n" + body
    for name in SECTIONS:
        marker = f"--- {name}\n"
        start = text.index(marker) + len(marker)
        end = text.index("\n--- ", start - 1)
        case[name] = text[start:end] if end >= start else ""
    if case["eol"] == "crlf":
        for name in SECTIONS:
            case[name] = case[name].replace("\n", "\r\n")
    if case["document"].count(CURSOR) != 1:
        raise ValueError(f"{path}: the document needs exactly one {CURSOR}")
    case["replace"] = int(case["replace"])
    return case


CASES = sorted(ROOT.rglob("*.txt"))


def test_there_are_enough_golden_cases_across_languages():
    languages = {parse_case(p)["language"] for p in CASES}
    assert len(CASES) >= 150
    assert {"python", "javascript", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp"} <= languages
    assert languages - {"python", "javascript", "typescript", "typescriptreact", "go", "rust", "java", "c", "cpp"}
    assert sum(1 for p in CASES if parse_case(p)["expected"] == "") >= 15  # negative cases


def test_every_filter_has_its_golden_folder_and_every_folder_a_meaning():
    folders = {p.relative_to(ROOT).parts[0] for p in CASES}
    assert FILTERS <= folders
    assert folders <= FILTERS | OTHER_FOLDERS


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(ROOT)))
def test_golden_trim(path: Path):
    case = parse_case(path)
    prefix, suffix = case["document"].split(CURSOR)
    span = decide_span(case["language"], prefix, suffix)
    if case["kind"]:
        assert span.kind == case["kind"], f"span {span}"
    result = trim(case["language"], prefix, suffix, case["completion"], span)
    assert result.text == case["expected"], f"span {span}"
    assert result.replace_range == ((0, 0), (0, case["replace"]))
    folder = path.relative_to(ROOT).parts[0]
    changed = [cut.filter for cut in result.trace]
    if folder in FILTERS:
        assert (folder in changed) == (case["changes"] != "no"), f"filters that changed the text: {changed}"
    elif folder == "in_string_or_comment":
        assert span.kind == "none"
    elif folder == "line_breaks":
        assert case["eol"] == "crlf"
    elif folder == "replace_range":
        assert case["replace"] > 0


def test_trim_reads_the_document_region_not_a_window_that_starts_inside_a_docstring():
    """parse_gate compares parse errors with and without the completion. On a prefix that
    starts inside the docstring (as a model's window may) the code reads as a string and the cut
    is not the one the document gives; a window that ends inside the next docstring changes nothing."""
    case = parse_case(ROOT / "parse_gate" / "python-below-a-docstring.txt")
    prefix, suffix = case["document"].split(CURSOR)
    span = decide_span("python", prefix, suffix)
    window_prefix = prefix[prefix.index(">>>"):]
    window_suffix = suffix[:suffix.index("Mean of")]
    kept = trim("python", window_prefix, suffix, case["completion"], span)
    assert kept.text != case["expected"]
    assert trim("python", prefix, window_suffix, case["completion"], span).text == case["expected"]
