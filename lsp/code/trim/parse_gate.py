"""Gate: a completion that adds syntax errors to the document is cut back to the longest prefix
that adds none, ending at a line end or after a statement's `;`; when no such prefix is left,
nothing is shown.

The gate parses a window of whole statements around the cursor (the document's tree, which the span
decision has just built, says where they start and end; at most about WINDOW bytes each side),
once without the completion and once with each candidate. An error of the document with the
completion is its own when it lies inside the inserted text, or when it does not lie within an error
of the document without it (positions after the insertion shifted back, the insertion itself
collapsed to the cursor): what the user is in the middle of writing (`foo(` before a completion of
its arguments) is not an error the completion added, an error that now reaches further is. Where the
window has MESSY errors or more without the completion, their places move as text is inserted:
there only an error inside the completion, more errors at it than at the cursor before, or more
errors in all, count. Languages without a grammar are left alone.

Python gets one more check, with Python's own parser in the mode its interactive console uses to
tell unfinished input from invalid input: when the code from the window's start up to the cursor can
still become valid (as it is, or with a placeholder such as `_` or `:` after it), it must still be
able to with the completion after it. That catches junk inside a line the user has not finished,
where the document has an error with or without the completion.
"""
from __future__ import annotations

import ast
import codeop
import re
import warnings
from typing import NamedTuple

from diffill.lsp.code import syntax
from diffill.lsp.code.lexing import lex
from diffill.lsp.code.trim.context import Context
from diffill.lsp.code.trim.replace_range import replaced_closers

WINDOW = 1500           # bytes of the document each side of the cursor, in whole statements
MAX_CANDIDATES = 24     # shorter cuts tried, longest first
OUTDENTS = 3            # times the window may start further up when it starts inside a statement
SLACK = 2               # bytes an error may move by and still be the same one
MESSY = 3               # errors in the window without the completion from which their places are not compared

_TREES: dict[str, syntax.IncrementalTree] = {}  # the gate's own parses, per language


class Error(NamedTuple):
    start: int
    end: int
    kind: str  # "error" (an ERROR node), "missing" (a MISSING node) or "structure" (python_structure)


def apply(ctx: Context, text: str) -> str:
    if ctx.tree is None or not text.strip():
        return text
    gate = Gate.of(ctx)
    if gate is None or not gate.adds_errors(text):
        return text
    # Python's parser says where the text stops being valid: a cut that keeps that point keeps the error
    invalid = gate.invalid_at
    for candidate in _candidates(text, ctx.cursor.language)[:MAX_CANDIDATES]:
        if invalid is not None and len(candidate) > invalid:
            continue
        if not gate.adds_errors(candidate):
            return candidate
    return ""


class Gate:
    """The window around one cursor and the errors it has without a completion."""

    def __init__(self, ctx: Context, before: bytes, after: bytes):
        self.ctx = ctx
        self.before, self.after = before, after
        language = ctx.cursor.language
        self.tree = _TREES.get(language) or _TREES.setdefault(language, syntax.IncrementalTree(language))
        c = len(before)
        self.baseline = errors(self.tree.update(before + after), language, c, c)
        # Python: the code before the cursor, when it can still become valid, and how
        self.viable: str | None = None
        self.placeholder = ""
        self.invalid_at: int | None = None  # where the last text adds_errors judged stopped being valid
        self.python: tuple[str, str, tuple[str, int, str]] | None = None  # head, rest, the window's status
        if language == "python":
            rest = after.decode("utf-8", "replace")
            head = _python_head(before.decode("utf-8", "replace"), rest)
            self.python = head, rest, _python_check(head + rest)
            for placeholder in PLACEHOLDERS:
                if python_status(head + placeholder) != "invalid":
                    self.viable, self.placeholder = head, placeholder
                    break

    @classmethod
    def of(cls, ctx: Context) -> "Gate | None":
        cursor = ctx.cursor
        prefix = cursor.prefix.encode("utf-8")
        suffix = cursor.suffix.encode("utf-8")
        data = prefix + suffix
        document = document_tree(cursor.language, data, len(prefix))
        if document is None:
            return None
        start, end = window(document, data, len(prefix))
        end = _balanced_end(data, start, end, cursor.language)
        gate = cls(ctx, prefix[start:], suffix[:end - len(prefix)])
        line_start = prefix.rfind(b"\n") + 1
        for _ in range(OUTDENTS):
            # an error above the cursor's line: the window may start inside a statement (the tree
            # around an unfinished construct is an error node whose children are fragments); start
            # further up (an error that stays is the document's own)
            if not gate.errors_above(line_start - start):
                break
            earlier = _outdented_line(data, start)
            if earlier == start:
                break
            start = earlier
            gate = cls(ctx, prefix[start:], suffix[:end - len(prefix)])
        return gate

    def errors_above(self, line_start: int) -> bool:
        """Does the window have an error that ends before `line_start` (the cursor's line)?"""
        if any(e.end < line_start for e in self.baseline):
            return True
        if self.python is not None:
            head, _, (status, at, _) = self.python
            return status == "invalid" and at < line_start + len(head) - len(self.before.decode("utf-8", "replace"))
        return False

    def adds_errors(self, text: str) -> bool:
        self.invalid_at = None
        if self.viable is not None:
            at = python_invalid_at(self.viable + text, self.placeholder)
            if at is not None:
                self.invalid_at = max(0, at - len(self.viable))
                return True
        consumed = replaced_closers(self.ctx, text)
        if self.python is not None:
            verdict = self._python_window(text, consumed)
            if verdict is not None:
                return verdict
        inserted = text.encode("utf-8")
        c = len(self.before)
        found = errors(self.tree.update(self.before + inserted + self.after[consumed:]), self.ctx.cursor.language,
                       c, c + len(inserted))
        if len(self.baseline) >= MESSY:
            # tree-sitter's recovery in a window with many errors moves them around as text is
            # inserted: only errors inside the completion, or more errors than before, count
            c, n = len(self.before), len(inserted)
            inside = any(c < e.start and e.end < c + n for e in found)
            touching = sum(1 for e in found if e.start <= c + n and e.end >= c)
            touched = sum(1 for e in self.baseline if e.start <= c <= e.end)
            return inside or touching > touched or len(found) > len(self.baseline)
        return any(self._is_new(e, len(inserted), consumed) for e in found)

    def _python_window(self, text: str, consumed: int) -> bool | None:
        """Python's parser on the whole window with the completion: True (it adds an error), False
        (the window is valid with it) or None (the same error as without it: let tree-sitter say)."""
        head, rest, (status_before, at_before, message_before) = self.python
        status, at, message = _python_check(head + text + rest[consumed:])
        if status == "ok":
            return False
        if status == "incomplete":
            return True if status_before == "ok" else None  # it opened something nothing closes
        if status_before != "invalid":
            return True
        c = len(head)
        if c <= at < c + len(text):
            return True
        if at >= c:
            at = at - len(text) + consumed
        if (message, at) == (message_before, at_before):
            return None
        if message.endswith("was never closed") and at < c:
            return None  # a bracket the user opened is still open
        return True

    def _is_new(self, e: Error, n: int, consumed: int) -> bool:
        c = len(self.before)
        if c < e.start and e.end < c + n:
            return True  # inside the completion: the completion's own

        def back(p: int) -> int:
            return p if p <= c else c if p < c + n else p - n + consumed

        start, end = back(e.start), back(e.end)
        for b in self.baseline:
            if (b.kind == "structure") != (e.kind == "structure"):
                continue  # a header left without its body is not the user's unfinished expression
            if b.start - SLACK <= start and end <= b.end + SLACK:
                return False  # within an error the document has without the completion
        return True


PLACEHOLDERS = ("", "_", ":", "_:", " _")


def _python_head(code: str, rest: str = "") -> str:
    """`code` (the window up to the cursor, which may start indented and dedent later) preceded by
    `if 1:` headers at each indentation level below its first line's that the window's lines use
    (`rest`: the window after the cursor), so that Python reads it as it reads it in the file."""
    lines = [line for line in code.split("\n") if line.strip()]
    if not lines:
        return code
    first = lines[0][:len(lines[0]) - len(lines[0].lstrip(" \t"))]
    if not first:
        return code
    later = lines[1:] + [line for line in rest.split("\n")[1:] if line.strip()]
    levels = sorted({line[:len(line) - len(line.lstrip(" \t"))] for line in later} | {""}, key=len)
    return "".join(level + "if 1:\n" for level in levels if len(level) < len(first)) + code
_PY_FLAGS = ast.PyCF_ONLY_AST | codeop.PyCF_ALLOW_INCOMPLETE_INPUT | codeop.PyCF_DONT_IMPLY_DEDENT


def python_status(source: str) -> str:
    """"ok", "incomplete" (valid so far, unfinished) or "invalid", by Python's parser."""
    return _python_check(source)[0]


def _python_check(source: str) -> tuple[str, int, str]:
    """(status, character offset of the error in `source` (0 when there is none), its message)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(source, "<completion>", "exec", _PY_FLAGS, dont_inherit=True)
        return "ok", 0, ""
    except SyntaxError as exc:
        if exc.msg == "incomplete input":
            return "incomplete", 0, exc.msg
        return "invalid", _offset(source, exc.lineno, exc.offset), exc.msg or ""
    except (ValueError, MemoryError, RecursionError) as exc:
        return "invalid", 0, type(exc).__name__


def _offset(source: str, lineno: int | None, col: int | None) -> int:
    at = 0
    for _ in range(max(0, (lineno or 1) - 1)):
        nl = source.find("\n", at)
        if nl < 0:
            return len(source)
        at = nl + 1
    return min(len(source), at + max(0, (col or 1) - 1))


def python_invalid_at(source: str, first: str = "") -> int | None:
    """None when `source` can still become valid Python, as it is or with one of PLACEHOLDERS after
    it (`first` tried first); else where Python's parser found it invalid (as it is)."""
    where = None
    for placeholder in (first,) + tuple(p for p in PLACEHOLDERS if p != first):
        status, at, _ = _python_check(source + placeholder)
        if status != "invalid":
            return None
        if placeholder == "":
            where = at
    return where if where is not None else _python_check(source)[1]


def errors(tree, language: str = "", lo: int = 0, hi: int = -1) -> list[Error]:
    """The outermost ERROR nodes and every MISSING node of a tree, by byte range; for Python also
    what its grammar lets pass and Python does not (see `python_structure`), in blocks that
    overlap bytes lo..hi."""
    if tree is None:
        return []
    out: list[Error] = python_structure(tree, lo, hi) if language == "python" else []
    if not tree.root_node.has_error:
        return out
    stack = [(tree.root_node, False)]
    while stack:
        node, inside = stack.pop()
        if node.is_missing:
            out.append(Error(node.start_byte, node.end_byte, "missing"))
        elif node.is_error and not inside:
            out.append(Error(node.start_byte, node.end_byte, "error"))
        for child in node.children:
            if child.has_error or child.is_missing:
                stack.append((child, inside or node.is_error))
    return out


def python_structure(tree, lo: int, hi: int) -> list[Error]:
    """Errors tree-sitter's Python grammar does not report: a block with no statement (a header
    without its body), and statements of one block that do not start at the same column (an
    unexpected indent or a dedent to no enclosing level). Only blocks that overlap lo..hi; the
    window's top level is an excerpt, where a dedent is no error."""
    out: list[Error] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "block":
            statements = [ch for ch in node.named_children if ch.type != "comment"]
            if not statements:
                out.append(Error(node.start_byte, node.end_byte, "structure"))
            else:
                column = statements[0].start_point[1]
                row = statements[0].start_point[0]
                for ch in statements[1:]:
                    if ch.start_point[1] != column and ch.start_point[0] != row:
                        out.append(Error(ch.start_byte, ch.start_byte, "structure"))
                        break
        for ch in node.children:
            if ch.start_byte <= hi + 1 and ch.end_byte >= lo - 1 and (ch.child_count or ch.type == "block"):
                stack.append(ch)
    return out


def document_tree(language: str, data: bytes, cursor: int):
    """The tree of the whole document, which says where the window's statements start and end: the
    span decision's when it parsed this text (it just did, in the pipeline: the same length and the
    same bytes around the cursor), else the trim's own incremental parse. The window itself is
    always parsed from `data`."""
    span = syntax.incremental_tree(language, "span")
    lo, hi = max(0, cursor - 4 * WINDOW), cursor + 4 * WINDOW
    if span is not None and span.tree is not None and len(span.data) == len(data) and span.data[lo:hi] == data[lo:hi]:
        return span.tree
    trim = syntax.incremental_tree(language, "trim")
    return trim.update(data) if trim is not None else None


def window(tree, data: bytes, cursor: int) -> tuple[int, int]:
    """(start, end) byte offsets of whole statements around `cursor`: siblings of the largest node
    at the cursor that fits in 2 * WINDOW bytes, each that small, as far as WINDOW bytes each side."""
    root = tree.root_node
    node = root.descendant_for_byte_range(cursor, cursor) or root
    fit = None
    while node is not None and node.end_byte - node.start_byte <= 2 * WINDOW and node.parent is not None:
        fit, node = node, node.parent
    parent = node if node is not None else root
    lo, hi = max(0, cursor - WINDOW), min(len(data), cursor + WINDOW)
    start = end = None
    for child in parent.children:
        small = child.end_byte - child.start_byte <= 2 * WINDOW or child == fit
        if child.end_byte < lo:
            continue
        if child.start_byte > hi:
            break
        if not small:
            if child.end_byte <= cursor:
                start = end = None  # a large sibling before the cursor: start after it
                continue
            if child.start_byte >= cursor:
                break
            continue
        start = child.start_byte if start is None else start
        end = child.end_byte
    if start is None or start > cursor:
        start = lo
    end = hi if end is None or end < cursor else end
    start = data.rfind(b"\n", 0, start) + 1  # from the start of its line, indentation included
    nl = data.find(b"\n", end)
    return start, len(data) if nl < 0 else nl


_CLAUSE = re.compile(rb"(else|elif|except|finally|case|default|catch)\b")


def _balanced_end(data: bytes, start: int, end: int, language: str) -> int:
    """`end`, or further on (at most 4 * WINDOW bytes, to a line end) where the brackets the window
    opened are closed: a window that ends inside a block reads, with a completion, as a block
    missing its closer."""
    depth = lex(data[start:end].decode("utf-8", "replace"), language).end_depth
    if depth <= 0:
        return end
    more = data[end:end + 4 * WINDOW].decode("utf-8", "ignore")
    for b in lex(more, language).brackets:
        if depth + b.depth <= 0:
            at = len(more[:b.offset + 1].encode("utf-8")) + end
            nl = data.find(b"\n", at)
            return len(data) if nl < 0 else nl
    return end


def _outdented_line(data: bytes, start: int) -> int:
    """The start of the nearest line above `start` that can begin a statement enclosing it: it
    starts with a word (not a clause such as `else`) or `@` and is indented less than the line at
    `start` (as much, when that line starts with a closing bracket); `start` itself when there is none."""
    def line_at(at: int) -> bytes:
        end = data.find(b"\n", at)
        return data[at:len(data) if end < 0 else end]

    own_line = line_at(start)
    own = len(own_line) - len(own_line.lstrip(b" \t"))
    closer = own_line.lstrip(b" \t")[:1] in (b")", b"]", b"}")
    at = start
    while at > 0:
        at = data.rfind(b"\n", 0, at - 1) + 1
        line = line_at(at)
        stripped = line.lstrip(b" \t")
        if not stripped:
            continue
        indent = len(line) - len(stripped)
        if (indent < own or closer and indent == own) and (stripped[:1].isalpha() or stripped[:1] in (b"_", b"@")) \
                and not _CLAUSE.match(stripped):
            return at
    return 0 if own > 0 else start


def _candidates(text: str, language: str) -> list[str]:
    """Shorter cuts of `text`, longest first: before each line break, and after each `;` outside
    brackets, strings and comments."""
    lexed = lex(text, language)
    mask = lexed.mask
    cuts = set()
    for i, ch in enumerate(text):
        if ch == "\n":
            cuts.add(i)
        elif ch == ";" and mask[i] and lexed.depth_before(i) <= 0:
            cuts.add(i + 1)
    out, seen = [], {text}
    for cut in sorted(cuts, reverse=True):
        candidate = text[:cut].rstrip(" \t")
        if candidate.strip() and candidate not in seen:
            seen.add(candidate)
            out.append(candidate)
    return out
