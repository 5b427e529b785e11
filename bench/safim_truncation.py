"""SAFIM's syntax-aware truncation, re-implemented from its description, as the baseline that
`bench/trim_recovery.py` compares `diffill.lsp.code.trim` with.

Rules (SAFIM benchmark post-processing):
- block: drop trailing lines of the completion until the filled program parses without error
  (ERROR nodes other than a lone ";" count) and its node sequence equals the hole-less program's
  plus one contiguous insertion (the Python hole-less program holds a `pass`, whose 4 enter/leave
  events are discounted).
- control: Python keeps the first non-empty line; other languages cut at the first `)` that
  closes more than the completion opened (a plain character count, strings included).

Adaptation, stated: the Python hole-less reference inserts `pass` with the indentation of the
suffix's next code line plus a line break when the hole starts at a line start (HumanEval holes
do, SAFIM's do not). If the reference itself does not parse, the block rule falls back to dropping
trailing lines until the program parses (SAFIM's `truncate_line_until_parsable`).
"""
from __future__ import annotations

import functools
import importlib

from tree_sitter import Language, Parser

_GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "java": ("tree_sitter_java", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
}


@functools.lru_cache(maxsize=None)
def parser(lang: str) -> Parser | None:
    """A parser for SAFIM's languages; None when the grammar wheel is not installed."""
    module_name, fn = _GRAMMARS[lang]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Parser(Language(getattr(module, fn)()))


def _walk(tree):
    """(errors, node-type events) in SAFIM's visitor order: enter on the way down, leave on the way up."""
    errors = 0
    events: list[tuple[bool, str]] = []
    cursor = tree.walk()
    while True:
        node = cursor.node
        if node.type == "ERROR" and node.text != b";":
            errors += 1
        events.append((True, node.type))
        if cursor.goto_first_child():
            continue
        events.append((False, node.type))
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return errors, events
            events.append((False, cursor.node.type))


def _matched(a: list, b: list) -> tuple[int, int]:
    p = 0
    while p < len(a) and p < len(b) and a[p] == b[p]:
        p += 1
    q = 0
    while -q < len(a) and -q < len(b) and a[q - 1] == b[q - 1]:
        q -= 1
    return p, q


def _python_placeholder(prefix: str, suffix: str) -> str:
    if prefix == "" or prefix.endswith("\n"):
        eol = "\r\n" if "\r\n" in suffix[:2000] else "\n"
        for line in suffix.replace("\r\n", "\n").split("\n"):
            if line.strip():
                return line[: len(line) - len(line.lstrip())] + "pass" + eol
        return "pass" + eol
    return "pass"


def truncate_block(lang: str, prefix: str, suffix: str, completion: str) -> str:
    """SAFIM block truncation of `completion` for the hole between `prefix` and `suffix`."""
    p = parser(lang)
    if p is None:
        raise RuntimeError(f"tree-sitter grammar for {lang} is not installed (pip install tree-sitter-c-sharp)")
    pre, suf = prefix.encode(), suffix.encode()
    hole = (_python_placeholder(prefix, suffix) if lang == "python" else "").encode()
    errors0, trace0 = _walk(p.parse(pre + hole + suf))
    lines = completion.splitlines(keepends=True)
    if errors0:
        while lines and _walk(p.parse(pre + "".join(lines).encode() + suf))[0]:
            lines.pop()
        return "".join(lines)
    while lines:
        errors1, trace1 = _walk(p.parse(pre + "".join(lines).encode() + suf))
        if errors1 or len(trace0) > len(trace1):
            lines.pop()
            continue
        a, b = _matched(trace0, trace1)
        diff = len(trace0) - (a - b)
        if lang == "python":
            diff -= 4
        if diff == 0:
            break
        lines.pop()
    return "".join(lines)


def truncate_control(lang: str, completion: str) -> str:
    """SAFIM control-flow truncation."""
    if lang == "python":
        for line in completion.splitlines():
            if line.strip():
                return line
        return ""
    depth = 0
    for i, ch in enumerate(completion):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == -1:
                return completion[:i]
    return completion


def first_line(completion: str) -> str:
    """SAFIM's line truncation (the first non-empty line), used for single-line holes."""
    for line in completion.splitlines(keepends=True):
        if line.strip():
            return line
    return ""
