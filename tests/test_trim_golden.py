"""Golden cases for `trim`: each file under tests/golden/trim/<filter>/ is one case.

Format (adding a case is adding a file):

    # what the case shows (free text; lines starting with '#' before the first section)
    language: python            # LSP languageId or alias
    kind: block                 # optional: the span kind decide_span must choose
    replace: 1                  # optional: characters after the cursor the result replaces (default 0)
    eol: crlf                   # optional: the document uses CRLF line breaks
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

from diffill.lsp.code.span import decide_span
from diffill.lsp.code.trim import trim

ROOT = Path(__file__).parent / "golden" / "trim"
CURSOR = "<CURSOR>"
SECTIONS = ("document", "completion", "expected")


def parse_case(path: Path) -> dict:
    raw = path.read_text(encoding="utf-8")
    head, sep, body = raw.partition("\n--- document\n")
    if not sep:
        raise ValueError(f"{path}: no '--- document' section")
    case: dict = {"kind": None, "replace": 0, "eol": "lf"}
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
