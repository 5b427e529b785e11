"""Before generation: how much the completion should cover, and where it must stop.

`decide_span(language, prefix, suffix)` looks at the tree (or, for fallback languages, the text)
around the cursor and returns a `Span`: its kind, a canvas length for the model, and a stopping
rule that both the sampler and `trim` apply.

Kinds:
    none        inside a string or comment: show nothing (unless `complete_in_comments`)
    line        the rest of the current line or expression (cursor after code on its line)
    block       the body of a block just opened (`if x:` / `{` at the end of the line above)
    definition  the body of a definition after its signature or docstring
    statements  statements from an empty line up to the end of the enclosing block

The server calls `decide_span` first; a span with `wants_completion` False (canvas 0) means no
model call. Otherwise it fills a canvas of `canvas_length` tokens and hands the raw text with the
same span to `trim.trim`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from diffill.lsp.code import brackets
from diffill.lsp.code import syntax
from diffill.lsp.code.cursor import Cursor
from diffill.lsp.code.indentation import columns
from diffill.lsp.code.lexing import lex

KINDS = ("none", "line", "block", "definition", "statements")

CANVAS = {"none": 0, "line": 32, "line_end": 64, "statements": 128, "block": 128, "definition": 256}
MAX_LINES = {"none": 0, "line": 8, "statements": 32, "block": 48, "definition": 96}


@dataclass(frozen=True)
class Span:
    """What to fill at the cursor and when to stop.

    kind: one of KINDS (see the module docstring).
    canvas_length: tokens to give the model's canvas: 32, 64, 128 or 256 (0 for "none").
    max_lines: the completion may have at most this many lines (its first line included).
    single_line: the completion ends at its first line break outside brackets it opened itself.
    stop_indent: a completion line after the first that is not blank, not inside brackets it
        opened and indented this many columns or fewer (tabs count 4) ends the completion before
        it (`else:`-like clauses at exactly that column continue it); None when indentation says
        nothing (unknown structure, unindented code, or the line kind). `trim` skips this rule when
        the completion goes on to repeat the code below the cursor: that repeat marks the end.
    close_depth: how many brackets open at the cursor the suffix does not close; the completion
        may close that many (plus closers the editor auto-inserted right after the cursor, which
        `trim` replaces); a closer beyond that ends the completion.
    """

    kind: str
    canvas_length: int
    max_lines: int
    single_line: bool = False
    stop_indent: int | None = None
    close_depth: int = 0

    @property
    def wants_completion(self) -> bool:
        return self.kind != "none"


NONE = Span("none", 0, 0)

_COMMENT_TYPES = {"comment", "line_comment", "block_comment", "doc_comment"}
_STRING_TYPES = {
    "string", "string_literal", "raw_string_literal", "template_string", "interpreted_string_literal",
    "char_literal", "character_literal", "rune_literal", "concatenated_string", "string_content",
    "string_fragment", "text_block", "system_lib_string",
}
_CODE_INSIDE_STRING = {"interpolation", "template_substitution", "format_expression"}

DEFINITION_TYPES = {
    "function_definition", "class_definition", "decorated_definition",  # python, c, cpp
    "function_declaration", "generator_function_declaration", "function_expression", "arrow_function",
    "method_definition", "class_declaration", "class", "function",  # javascript / typescript
    "method_declaration", "func_literal",  # go (+ function_declaration)
    "function_item", "impl_item", "trait_item", "mod_item", "closure_expression",  # rust
    "constructor_declaration", "interface_declaration", "enum_declaration", "record_declaration",
    "lambda_expression",  # java (+ method/class declaration)
    "class_specifier", "struct_specifier", "namespace_definition",  # c / cpp
}

_DEF_HEADER = {
    "python": re.compile(r"^\s*(async\s+def|def|class)\b"),
    "javascript": re.compile(r"\bfunction\b|^\s*class\b|=>\s*\{\s*$|^\s*(async\s+|static\s+|get\s+|set\s+)*[\w$]+\s*(<[^>]*>)?\([^()]*\)\s*(:\s*[^{]+)?\{\s*$"),
    "go": re.compile(r"^\s*func\b|\bfunc\s*\("),
    "rust": re.compile(r"\bfn\b|^\s*(pub\s+)?(impl|trait|mod)\b"),
    "c_like": re.compile(r"^\s*(class|struct|interface|enum|record|namespace)\b|^\s*[\w<>\[\],.:*&~\s]+\([^;]*\)\s*(const\s*)?(throws\s+[\w.,\s]+)?\{?\s*$"),
}
_CONTROL = re.compile(r"^\s*(\}\s*)?(if|else|for|while|do|switch|catch|try|finally|foreach|using|lock|synchronized|match|loop|unsafe|select|case)\b")
_DEFAULT_HEADER = re.compile(r"^\s*(async\s+def|def|class|func|fun|fn|function|sub|procedure)\b")


def _header_regex(language: str):
    if language == "python":
        return _DEF_HEADER["python"]
    if language in ("javascript", "typescript", "tsx"):
        return _DEF_HEADER["javascript"]
    if language in ("go", "rust"):
        return _DEF_HEADER[language]
    return _DEF_HEADER["c_like"]


def _is_definition_header(line: str, language: str) -> bool:
    if _CONTROL.match(line):
        return False
    return bool(_header_regex(language).search(line) or _DEFAULT_HEADER.match(line))


def _code_part(line: str, language: str) -> str:
    """The line without its trailing comment and with strings blanked."""
    return lex(line, language).blanked().rstrip()


def _in_string_or_comment_text(cursor: Cursor) -> bool:
    """Text rule: would a character typed at the cursor be inside a string or comment? Lexed from
    the start of the prefix: a shorter look-back may start inside a docstring."""
    return not lex(cursor.prefix + "x", cursor.language).mask[-1]


def _in_string_or_comment_tree(tree, offset: int, blank_before: int = 0) -> bool | None:
    """Tree rule; None when the tree is too broken at the cursor to say. `blank_before`: bytes of
    spaces between the cursor and the last code on its line (a broken node may end there).

    The cursor is inside a string when a string node surrounds it strictly (a replacement field
    inside it is code up to its closing brace), and inside a comment
    when a comment starts before it and reaches it (typing at the end of a line comment still
    writes the comment; right after a closing `*/` does not).
    """
    probes = [offset - 1, offset] if offset > 0 else [offset]
    if blank_before and offset > blank_before:
        probes.insert(0, offset - 1 - blank_before)
    verdict: bool | None = False
    for probe in probes:
        node = syntax.node_at(tree, probe)
        for anc in syntax.ancestors(node):
            if anc.type in _CODE_INSIDE_STRING:
                if offset >= anc.end_byte and (anc.text or b"").endswith(b"}"):
                    continue  # right after a closed field: back in the string around it
                break
            if anc.type in _COMMENT_TYPES:
                closed_block = (anc.text or b"").endswith(b"*/") and anc.end_byte == offset
                if anc.start_byte < offset <= anc.end_byte and not closed_block:
                    return True
                break
            if anc.type in _STRING_TYPES:
                if anc.start_byte < offset < anc.end_byte:
                    return True
                break
            if anc.is_error:
                verdict = None
                break
    return verdict


def opens_block(line: str, language: str) -> bool:
    """Does this line end by opening a block (`:` in Python, `{` elsewhere)?"""
    code = _code_part(line, language)
    if language == "python":
        return code.endswith(":")
    return code.endswith("{") or (not syntax.has_grammar(language) and code.endswith(":") and language in (
        "yaml", "nim", "coffeescript"))


CLASS_TYPES = {
    "class_definition", "class_declaration", "class", "impl_item", "trait_item", "mod_item",
    "interface_declaration", "enum_declaration", "record_declaration", "class_specifier",
    "struct_specifier", "namespace_definition",
}


def enclosing_definition_indent(cursor: Cursor, tree, offset: int) -> int | None:
    """Column of the definition (function, class, ...) whose body the cursor is in.

    A function nested in a function is part of the outer one's body (a completion may finish the
    helper and go on with the outer function), so the outermost of directly nested functions
    counts; a method counts by itself, not its class.
    """
    lines = cursor.previous_lines + [cursor.line_prefix]
    here = _cursor_indent(cursor)
    if tree is not None:
        # probe at the last code before the cursor: trailing blank lines lie outside a node
        code_end = len(cursor.prefix.rstrip())
        probe = len(cursor.prefix[:code_end].encode("utf-8")) - 1 if code_end else offset
        found = None
        for anc in syntax.ancestors(syntax.node_at(tree, max(probe, 0))):
            if anc.type not in DEFINITION_TYPES or anc.type == "decorated_definition" or anc.start_byte >= offset:
                continue
            if anc.start_point[0] >= len(lines):
                continue
            if here is not None and columns(lines[anc.start_point[0]]) >= here and not cursor.line_prefix.strip():
                continue  # the cursor sits at or left of this header: it is not in its body
            if found is None:
                found = anc
            elif anc.type not in CLASS_TYPES and found.type not in CLASS_TYPES:
                found = anc
            else:
                break
        if found is not None:
            return columns(lines[found.start_point[0]])
    # text rule: nearest header line above that is indented less than the code at the cursor
    if here is None:
        return None
    found_col = None
    found_is_class = False
    for line in reversed(cursor.previous_lines[-400:]):
        if not line.strip():
            continue
        col = columns(line)
        limit = here if found_col is None else found_col
        if col < limit and _is_definition_header(line, cursor.language):
            is_class = bool(_CLASS_HEADER.match(line))
            if found_col is not None and (is_class or found_is_class):
                break
            found_col, found_is_class = col, is_class
        elif col < limit and found_col is not None:
            break  # other code between: the header found is not nested in a function
        if col == 0 and cursor.language == "python":
            break
    return found_col


_CLASS_HEADER = re.compile(r"^\s*((public|private|protected|internal|static|abstract|final|sealed|export|pub)\s+)*(class|struct|interface|enum|record|namespace|impl|trait|mod)\b")


def _cursor_indent(cursor: Cursor) -> int | None:
    """The indentation of code at the cursor's position in the block structure."""
    if cursor.line_prefix:
        return columns(cursor.line_prefix)
    if cursor.rest_of_line.strip():
        return columns(cursor.rest_of_line)
    nxt = cursor.next_code_line()
    prev = cursor.previous_code_line()
    cols = [columns(x) for x in (nxt, prev) if x is not None]
    return max(cols) if cols else None


def _indentation_is_structural(cursor: Cursor, header_indent: int) -> bool:
    """Brace languages: is the code around the cursor indented deeper than its header, so a line at
    the header's column really means the block is over?"""
    if cursor.language == "python":
        return True
    here = _cursor_indent(cursor)
    return here is not None and here > header_indent


BRACKET_WINDOW = 20000  # characters of prefix (and suffix) read for the brackets open at the cursor


def _bracket_window_start(cursor: Cursor, tree) -> int:
    """Where to start reading the prefix for the brackets open at the cursor: BRACKET_WINDOW characters
    back, moved out of a string or comment that surrounds that point (read from its middle, a
    docstring's closing quotes open a string, and every bracket after them counts the wrong way);
    without a tree, at the next line start."""
    n = len(cursor.prefix)
    if n <= BRACKET_WINDOW:
        return 0
    start = n - BRACKET_WINDOW
    if tree is None:
        nl = cursor.prefix.find("\n", start)
        return start if nl < 0 else nl + 1
    data = cursor.prefix.encode("utf-8")
    at = len(cursor.prefix[:start].encode("utf-8"))
    end = None  # the end of the outermost string or comment around `at`
    for anc in syntax.ancestors(syntax.node_at(tree, at)):
        if (anc.type in _STRING_TYPES or anc.type in _COMMENT_TYPES) and anc.start_byte < at < anc.end_byte:
            end = anc.end_byte
    if end is None:
        return start
    return min(n, len(data[:end].decode("utf-8", errors="ignore")))


def open_brackets(cursor: Cursor, tree=None) -> list[tuple[str, int]]:
    """The brackets open at the cursor, outermost first: (bracket, offset into `cursor.prefix`)."""
    start = _bracket_window_start(cursor, tree)
    return [(b, start + at) for b, at in brackets.open_stack(cursor.prefix[start:], cursor.language)]


def decide_span(language: str, prefix: str, suffix: str, *, complete_in_comments: bool = False) -> Span:
    """Decide what the completion at the cursor between `prefix` and `suffix` should cover.

    `language` is an LSP languageId or a canonical id (see syntax.canonical_language); languages
    without a grammar use text rules. Returns a `Span` with the canvas length and stopping rule;
    kind "none" (canvas 0) inside strings and comments unless `complete_in_comments`.
    """
    cursor = Cursor.of(language, prefix, suffix)
    tree = None
    offset = len(cursor.prefix.encode("utf-8"))
    if cursor.has_grammar:
        tree = syntax.incremental_tree(cursor.language, "span").update(cursor.prefix + cursor.suffix)
    if not complete_in_comments:
        line = cursor.line_prefix
        blank = len(line) - len(line.rstrip(" \t")) if line.strip() else 0
        inside = _in_string_or_comment_tree(tree, offset, blank) if tree is not None else None
        if inside is None:
            inside = _in_string_or_comment_text(cursor)
        if inside:
            return NONE

    stack = open_brackets(cursor, tree)
    close_depth = len(stack) - brackets.closed_by(cursor.suffix[:BRACKET_WINDOW], stack, cursor.language)
    line_prefix, rest = cursor.line_prefix, cursor.rest_of_line

    if line_prefix.strip():
        only_closers = rest.strip() == brackets.leading_closers(rest.strip()) and len(rest.strip()) <= 3
        if only_closers and opens_block(line_prefix, cursor.language):
            header = line_prefix
        else:
            canvas = CANVAS["line"] if rest.strip() else CANVAS["line_end"]
            return Span("line", canvas, MAX_LINES["line"], single_line=True, close_depth=close_depth)
    else:
        prev = cursor.previous_code_line()
        header = prev if prev is not None and opens_block(prev, cursor.language) else None
        if header is not None:
            header = _header_start(cursor, header)
        if header is None and cursor.language == "python" and prev is not None:
            header = _docstring_owner(cursor)  # an empty line after a def's docstring: its body

    if header is not None:
        header_indent = columns(header)
        kind = "definition" if _is_definition_header(header, cursor.language) else "block"
        stop = header_indent if _indentation_is_structural_for_block(cursor, header_indent) else None
        if kind == "block" and stop is not None:
            stop = _block_stop(cursor, tree, offset, header_indent)
        elif kind == "definition" and stop is not None and not _CLASS_HEADER.match(header):
            stop = _outer_function_indent(cursor, header, header_indent)
        return Span(kind, CANVAS[kind], MAX_LINES[kind], stop_indent=stop, close_depth=close_depth)

    definition_indent = enclosing_definition_indent(cursor, tree, offset)
    stop = None
    if definition_indent is not None and _indentation_is_structural(cursor, definition_indent):
        stop = definition_indent
    return Span("statements", CANVAS["statements"], MAX_LINES["statements"], stop_indent=stop,
                close_depth=close_depth)


def _header_start(cursor: Cursor, header: str) -> str:
    """The line a block header starts on: a header line that begins by closing brackets (the
    `) -> int:` that ends a multi-line `def f(`) starts where they were opened."""
    stripped = header.lstrip()
    closers = len(brackets.leading_closers(stripped))
    if not closers:
        return header
    base = cursor.prefix[: cursor.prefix.rfind("\n") + 1]  # up to the cursor's line
    at = base.rfind(header)
    if at < 0:
        return header
    begin = base.rfind("\n", 0, max(0, at - 8000)) + 1
    window = base[begin: at + len(header) - len(stripped)]  # up to the header line's first closer
    stack = brackets.open_stack(window, cursor.language)
    if len(stack) < closers:
        return header
    opened = stack[-closers][1]
    line_end = window.find("\n", opened)
    return window[window.rfind("\n", 0, opened) + 1: line_end if line_end >= 0 else len(window)]


def _outer_function_indent(cursor: Cursor, header: str, header_indent: int) -> int:
    """A function header nested directly in another function's body belongs to that function:
    the completion may finish the helper and go on with the outer body (see
    enclosing_definition_indent). Returns the column where the completion must stop."""
    lines = cursor.previous_lines[-400:] + [cursor.line_prefix]
    try:
        start = len(lines) - 1 - lines[::-1].index(header)
    except ValueError:
        return header_indent
    limit, stop = header_indent, header_indent
    for line in reversed(lines[:start]):
        if not line.strip():
            continue
        col = columns(line)
        if col >= limit:
            continue
        if not _is_definition_header(line, cursor.language) or _CLASS_HEADER.match(line):
            break
        limit = stop = col
    return stop


def _block_stop(cursor: Cursor, tree, offset: int, header_indent: int) -> int | None:
    """Where a block just opened ends, given the code below the cursor.

    When that code sits at the header's level (or between it and the enclosing definition), the
    block's body is what is missing: stop at the header's column. When the code below still belongs
    to the block (deeper than the header), or lies outside the enclosing definition (or there is
    none), the completion may go on past this block, up to the end of the enclosing definition.
    """
    definition = enclosing_definition_indent(cursor, tree, offset)
    if definition is not None and definition >= header_indent:
        definition = None
    nxt = cursor.next_code_line()
    below = columns(nxt) if nxt is not None else None
    if below is not None and below <= header_indent and (definition is None or below > definition):
        return header_indent
    if definition is None:
        return header_indent if below is None or below <= header_indent else None
    return definition


def _indentation_is_structural_for_block(cursor: Cursor, header_indent: int) -> bool:
    if cursor.language == "python" or not syntax.has_grammar(cursor.language) and cursor.language in ("nim", "yaml"):
        return True
    # brace languages: trust indentation when the file indents block bodies under their headers
    nxt = cursor.next_code_line()
    prev_body = [columns(line) for line in cursor.previous_lines[-50:] if line.strip()]
    deeper = sum(1 for a, b in zip(prev_body, prev_body[1:]) if b > a)
    here = _cursor_indent(cursor)
    return deeper >= 2 or (nxt is not None and columns(nxt) > header_indent) or (here is not None and here > header_indent)


_DOCSTRING_END = re.compile(r'^\s*[rRbBuU]?("""|\'\'\')')


def _docstring_owner(cursor: Cursor) -> str | None:
    """Python: the `def`/`class` line whose docstring ends on the code line above the cursor."""
    lines = cursor.previous_lines[-200:]
    i = len(lines) - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    if i < 0 or not (lines[i].rstrip().endswith('"""') or lines[i].rstrip().endswith("'''")):
        return None
    quote = lines[i].rstrip()[-3:]
    # find the opening quote
    j = i
    if lines[i].strip().count(quote) < 2 or lines[i].strip() == quote:
        j = i - 1
        while j >= 0 and quote not in lines[j]:
            j -= 1
    if j < 1:
        return None
    k = j - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k >= 0 and _DEF_HEADER["python"].match(lines[k]) and lines[k].rstrip().endswith(":"):
        return lines[k]
    return None
