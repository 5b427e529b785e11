"""Tree-sitter grammars for the languages diffill understands, and parsing helpers.

Grammars come from the individual `tree-sitter-<lang>` wheels (they work offline). A language
is named by a canonical id: python, javascript, typescript, tsx, go, rust, java, c, cpp.
Anything else is a *fallback* language: it has no tree here, and the span and trim logic use
indentation and bracket rules for it instead.

`canonical_language` turns an LSP `languageId` (or a common alias) into that id;
`language_from_path` guesses it from a file name. `IncrementalTree` keeps the last tree of one
text and reparses incrementally when the text changes; `incremental_tree(language, role)` keeps
one per language and role ("span", "trim"), so each role's successive texts stay close.
"""
from __future__ import annotations

import functools
import importlib
import os
import time
from dataclasses import dataclass

from tree_sitter import Language, Node, Parser, Tree

# canonical id -> (grammar module, function returning the language pointer)
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}

# LSP languageIds and common aliases -> canonical id (ids already canonical map to themselves)
_ALIASES = {
    "py": "python", "python3": "python",
    "js": "javascript", "jsx": "javascript", "javascriptreact": "javascript",
    "ts": "typescript", "typescriptreact": "tsx",
    "golang": "go", "rs": "rust",
    "h": "c",
    "c++": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp", "cuda-cpp": "cpp", "objective-cpp": "cpp",
    "cs": "csharp", "c#": "csharp",
}

_EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".hxx": "cpp", ".ipp": "cpp", ".cu": "cpp",
    ".cs": "csharp", ".kt": "kotlin", ".swift": "swift", ".scala": "scala", ".rb": "ruby",
    ".lua": "lua", ".php": "php", ".sh": "shellscript", ".bash": "shellscript", ".zig": "zig",
}


def canonical_language(language: str) -> str:
    """Canonical id for an LSP `languageId` or alias ("typescriptreact" -> "tsx").

    Unknown ids are returned lower-cased: they are fallback languages.
    """
    key = (language or "").strip().lower()
    return _ALIASES.get(key, key)


def language_from_path(path: str) -> str:
    """Canonical id guessed from a file name's extension; "" when there is no extension."""
    ext = os.path.splitext(path)[1]
    if ext == ".C":  # C++ by convention; .c stays C
        return "cpp"
    ext = ext.lower()
    return _EXTENSIONS.get(ext, ext.lstrip("."))


def has_grammar(language: str) -> bool:
    """True when `language` (any alias) is parsed with tree-sitter rather than the fallback rules."""
    return canonical_language(language) in GRAMMARS


@functools.lru_cache(maxsize=None)
def grammar(language: str) -> Language | None:
    """The tree-sitter `Language` for a canonical id, or None for a fallback language."""
    entry = GRAMMARS.get(language)
    if entry is None:
        return None
    module = importlib.import_module(entry[0])
    return Language(getattr(module, entry[1])())


@functools.lru_cache(maxsize=None)
def parser_for(language: str) -> Parser | None:
    """A cached `Parser` for a language id (alias accepted), or None for a fallback language.

    Parsers are not thread-safe: use them from one thread (the server's event loop).
    """
    lang = grammar(canonical_language(language))
    return Parser(lang) if lang is not None else None


PARSE_SECONDS = 0.5  # a parse that runs longer is given up: some grammars loop on some broken input
_CHUNK = 1 << 16


def _run_parser(parser: Parser, data: bytes, old_tree: Tree | None = None) -> Tree | None:
    """`parser.parse` with a deadline (PARSE_SECONDS); None when it was given up."""
    deadline = time.monotonic() + PARSE_SECONDS
    kw = {"old_tree": old_tree} if old_tree is not None else {}
    try:
        return parser.parse(lambda offset, _point: data[offset:offset + _CHUNK],
                            progress_callback=lambda *_: time.monotonic() > deadline, **kw)
    except ValueError:  # cancelled at the deadline
        parser.reset()
        return None


def parse(language: str, text: str | bytes) -> Tree | None:
    """Parse `text` from scratch; None for a fallback language, or when the parse ran past
    PARSE_SECONDS."""
    parser = parser_for(language)
    if parser is None:
        return None
    data = text.encode("utf-8") if isinstance(text, str) else text
    return _run_parser(parser, data)


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    line_start = data.rfind(b"\n", 0, offset) + 1
    return row, offset - line_start


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the longest common prefix of `a` and `b`, at most `limit` (a binary search over
    slice comparisons: about 2 * limit bytes compared, in C)."""
    lo, hi = 0, limit  # a[:lo] == b[:lo]; the answer lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the longest common suffix of `a` and `b`, at most `limit`."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid:len(a) - lo] == b[len(b) - mid:len(b) - lo]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def reparse(language: str, old_tree: Tree, old: bytes, new: bytes) -> Tree | None:
    """Parse `new` reusing `old_tree` (the tree of `old`): the edit is the span between their
    common prefix and common suffix, so unchanged subtrees are not parsed again. None when the
    parse ran past PARSE_SECONDS."""
    limit = min(len(old), len(new))
    start = _common_prefix(old, new, limit)
    tail = _common_suffix(old, new, limit - start)
    old_end = len(old) - tail
    new_end = len(new) - tail
    old_tree.edit(
        start_byte=start, old_end_byte=old_end, new_end_byte=new_end,
        start_point=_point(old, start), old_end_point=_point(old, old_end),
        new_end_point=_point(new, new_end),
    )
    return _run_parser(parser_for(language), new, old_tree)


@dataclass
class IncrementalTree:
    """The tree of one text, reparsed incrementally by `update`; `tree` is None for fallback
    languages and after a parse that was given up (the next update parses from scratch)."""

    language: str
    data: bytes = b""
    tree: Tree | None = None

    def update(self, text: str | bytes) -> Tree | None:
        """Make `text` current and return its tree (reusing the previous tree when there is one)."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        if self.tree is None:
            self.tree = parse(self.language, data)
        elif data != self.data:
            self.tree = reparse(self.language, self.tree, self.data, data)
        self.data = data
        return self.tree


ROLES = ("span", "trim")
_TREES: dict[tuple[str, str], IncrementalTree] = {}


def incremental_tree(language: str, role: str) -> IncrementalTree | None:
    """The `IncrementalTree` kept between calls for one language and one role, so that each role's
    successive parses (span: the document keystroke after keystroke; trim: candidate completions
    in that document) reuse its own last tree. None for fallback languages. Not thread-safe: call
    from one thread (the server's event loop)."""
    if role not in ROLES:
        raise ValueError(f"unknown parse role {role!r}")
    key = canonical_language(language)
    if key not in GRAMMARS:
        return None
    if (key, role) not in _TREES:
        _TREES[key, role] = IncrementalTree(key)
    return _TREES[key, role]


def error_extent(tree: Tree | None) -> tuple[int, int]:
    """(number of ERROR and MISSING nodes, bytes covered by outermost ERROR nodes); (0, 0) for None.

    The byte count tells a small local error from garbage that error recovery folds into one node.
    """
    if tree is None or not tree.root_node.has_error:
        return 0, 0
    count = size = 0
    stack = [(tree.root_node, False)]
    while stack:
        node, inside_error = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
            if node.is_error and not inside_error:
                size += node.end_byte - node.start_byte
        for child in node.children:
            if child.has_error or child.is_missing:
                stack.append((child, inside_error or node.is_error))
    return count, size


def node_at(tree: Tree, byte_offset: int) -> Node:
    """The smallest node that contains `byte_offset` (the node just before it at a boundary)."""
    root = tree.root_node
    node = root.descendant_for_byte_range(byte_offset, byte_offset)
    return node if node is not None else root


def ancestors(node: Node):
    """`node` and then each of its parents up to the root."""
    while node is not None:
        yield node
        node = node.parent
