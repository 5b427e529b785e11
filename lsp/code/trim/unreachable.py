"""Filter: code the completion writes after a terminal statement is never shown.

A statement that leaves its block (`return`, `raise`, `break`, `continue`, `throw`, `goto`, by
language) ends the completion when the next line of code is at the same level: indented as deep or
deeper, at the same bracket depth, and not a clause or label that a jump reaches (`else`, `except`,
`case`, a closing bracket, ...). Python's one-line bodies (`def f(): return x`, `if x: y = 1`) end
the same way: no line indented under such a header belongs to it. Only statements that end after
the cursor count: what the user wrote is left alone.
"""
from __future__ import annotations

import re

from diffill.lsp.code.indentation import columns
from diffill.lsp.code.lexing import CLOSERS, lex
from diffill.lsp.code.trim.context import Context

_KEYWORDS = {
    "python": ("return", "raise", "break", "continue"),
    "javascript": ("return", "throw", "break", "continue"),
    "typescript": ("return", "throw", "break", "continue"),
    "tsx": ("return", "throw", "break", "continue"),
    "java": ("return", "throw", "break", "continue"),
    "csharp": ("return", "throw", "break", "continue", "goto"),
    "kotlin": ("return", "throw", "break", "continue"),
    "swift": ("return", "throw", "break", "continue"),
    "scala": ("return", "throw"),
    "go": ("return", "break", "continue", "goto"),
    "rust": ("return", "break", "continue"),
    "c": ("return", "break", "continue", "goto"),
    "cpp": ("return", "throw", "break", "continue", "goto"),
    "php": ("return", "throw", "break", "continue"),
    "ruby": ("return", "raise", "break", "next", "redo", "retry"),
    "lua": ("return", "break", "goto"),
    "shellscript": ("return", "break", "continue", "exit"),
}
_DEFAULT_KEYWORDS = ("return", "throw", "raise", "break", "continue")
# statement-level modifiers that make a terminal conditional (`return x if y` in Ruby)
_MODIFIER_LANGUAGES = {"ruby", "perl", "coffeescript", "elixir"}
_MODIFIER = re.compile(r"\b(if|unless|while|until)\b")

# lines a jump can reach although they follow a terminal statement at its level: clauses of the
# same statement, labels, preprocessor lines, hoisted declarations
_REACHABLE_PYTHON = re.compile(r"(else|elif|except|finally|case)\b")
_REACHABLE = re.compile(
    r"(else|elif|elsif|except|finally|catch|case|default|when|rescue|ensure|end|fi|done|esac|then|do)\b"
    r"|[A-Za-z_]\w*\s*:(?!:)|#|@end\b")
_HOISTED = re.compile(r"(export\s+)?(async\s+)?function\b")
_HOISTING = {"javascript", "typescript", "tsx"}

_PY_HEADER = re.compile(r"(async\s+def|def|class|if|elif|else|for|async\s+for|while|with|async\s+with|try|except|"
                        r"finally|match|case)\b")
_CONTINUED = re.compile(r"(\\|[-+*/%&|^=<>,.(\[{?:]|\band|\bor|\bnot|\bin|\bis)\s*$")
_MAX_STATEMENT_LINES = 30
_MAX_CUTS = 8


def apply(ctx: Context, text: str) -> str:
    for _ in range(_MAX_CUTS):
        found = _unreachable(ctx, text)
        if found is None:
            return text
        start, end = found
        text = text[:start] + text[end:] if end < len(text) else text[:start]
    return text


def _unreachable(ctx: Context, text: str) -> tuple[int, int] | None:
    """The first run of unreachable lines in `text`: (where it starts, where the reachable code
    after it starts, or len(text)), offsets into `text`; None when there is none."""
    cursor = ctx.cursor
    language = cursor.language
    keywords = _KEYWORDS.get(language, _DEFAULT_KEYWORDS)
    terminal = re.compile("(" + "|".join(keywords) + r")(?![\w$])")
    head = cursor.line_prefix
    full = head + text
    lexed = lex(full, language)
    mask = lexed.mask
    starts = _line_starts(full)
    python = language == "python"
    for i, start in enumerate(starts):
        end = _line_end(full, start)
        line = full[start:end]
        stripped = line.lstrip(" \t")
        if not stripped:
            continue
        p = start + len(line) - len(stripped)
        if not mask[p]:
            continue  # the line starts inside a string or a comment
        col = columns(line)
        if python and _PY_HEADER.match(stripped):
            colon = _body_colon(lexed, full, p, end)
            if colon is not None and full[colon + 1:end].strip() and mask[colon + 1 + _lead(full, colon + 1, end)]:
                # a one-line body: nothing indented under this header belongs to it
                found = _run_after(ctx, full, starts, lexed, i, end, lambda c: c > col, len(head))
                if found is not None:
                    return found
                continue
        m = terminal.match(full, p)
        if m is None:
            continue
        if language in _MODIFIER_LANGUAGES and _MODIFIER.search(full, m.end(), end):
            continue
        if not python and _braceless_body(full, starts, i, cursor.previous_lines):
            continue  # the body of an `if (...)` without braces: it leaves that `if`, not the block
        stmt_end, last = _statement_end(full, starts, lexed, i, p, python)
        if stmt_end <= len(head):
            continue  # the statement ends before the cursor: the user's own code
        found = _run_after(ctx, full, starts, lexed, last, stmt_end, lambda c: c >= col, len(head),
                           lexed.depth_before(p))
        if found is not None:
            return found
    return None


_BRACELESS_HEADER = re.compile(r"(\}\s*)?(else\s+if|if|for|foreach|while|else|do)\b")


def _braceless_body(text: str, starts: list[int], i: int, previous_lines: list[str]) -> bool:
    """Is line i of `text` the body of a control header without braces on the line of code above it
    (`if (x)`, `else`)? Indentation cannot tell where such a body ends in every file."""
    above = None
    for j in range(i - 1, -1, -1):
        line = text[starts[j]:_line_end(text, starts[j])]
        if line.strip():
            above = line
            break
    if above is None:
        above = next((line for line in reversed(previous_lines[-50:]) if line.strip()), None)
    if above is None:
        return False
    code = re.sub(r"//.*$", "", above).strip()
    return bool(_BRACELESS_HEADER.match(code)) and not code.endswith((";", "{", "}"))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    at = text.find("\n")
    while at >= 0:
        starts.append(at + 1)
        at = text.find("\n", at + 1)
    return starts


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _lead(text: str, start: int, end: int) -> int:
    seg = text[start:end]
    return len(seg) - len(seg.lstrip(" \t"))


def _body_colon(lexed, text: str, p: int, end: int) -> int | None:
    """Python: the colon at bracket depth 0 that ends a compound statement's header on this line."""
    base = lexed.depth_before(p)
    i = text.find(":", p, end)
    while i >= 0:
        if lexed.mask[i] and lexed.depth_before(i) == base and text[i + 1:i + 2] != "=":
            return i
        i = text.find(":", i + 1, end)
    return None


def _statement_end(text: str, starts: list[int], lexed, i: int, p: int, python: bool) -> tuple[int, int]:
    """(offset of the end of the statement starting at p on line i, index of its last line)."""
    base = lexed.depth_before(p)
    for j in range(i, min(len(starts), i + _MAX_STATEMENT_LINES)):
        end = _line_end(text, starts[j])
        if end < len(text) and lexed.depth_before(end) > base:
            continue  # inside brackets the statement opened
        if end < len(text) and not lexed.mask[end]:
            continue  # inside a string that spans lines
        code = lexed.blanked()[starts[j]:end].rstrip()
        if code and _CONTINUED.search(code) and not (python and code.endswith(":")) and j + 1 < len(starts):
            if not code.endswith(("break", "continue")):
                continue
        return end, j
    j = min(len(starts), i + _MAX_STATEMENT_LINES) - 1
    return _line_end(text, starts[j]), j


def _run_after(ctx: Context, text: str, starts: list[int], lexed, last: int, stmt_end: int, same_level,
               head: int, depth: int | None = None) -> tuple[int, int] | None:
    """The unreachable lines after line `last` (whose statement ends at `stmt_end`): they start with
    a line of code at the level `same_level(columns)` accepts (and, for brace languages, at bracket
    depth `depth`) and go on to the first line of code that is not (a lower level, a closer, a clause
    or label a jump reaches). Returns (stmt_end, start of that line's break or len(text)) as offsets
    into the completion, or None when the next line of code is reachable or there is none."""
    found = False
    for j in range(last + 1, len(starts)):
        start = starts[j]
        end = _line_end(text, start)
        stripped = text[start:end].lstrip(" \t")
        if not stripped:
            continue
        p = end - len(stripped)
        if not lexed.mask[p]:
            if _is_comment(stripped, ctx.cursor.language) or found:
                continue  # a comment line, or a string inside the unreachable code
            return None
        if _reachable(ctx.cursor.language, text[start:end], stripped, same_level, lexed, p, depth):
            if not found:
                return None
            return stmt_end - head, start - 1 - head
        found = True
    if not found or stmt_end <= head:
        return None
    return stmt_end - head, len(text) - head


def _reachable(language: str, line: str, stripped: str, same_level, lexed, p: int, depth: int | None) -> bool:
    reachable = _REACHABLE_PYTHON if language == "python" else _REACHABLE
    if stripped[0] in CLOSERS or reachable.match(stripped):
        return True
    if language in _HOISTING and _HOISTED.match(stripped):
        return True
    if not same_level(columns(line)):
        return True
    return depth is not None and lexed.depth_before(p) < depth


def _is_comment(stripped: str, language: str) -> bool:
    if language == "python":
        return stripped.startswith("#")
    return stripped.startswith(("//", "/*", "#", "--", "*"))
