"""Filter: the span's stopping rule.

The completion ends at the end of a single-line span, at a line indented to or below
`stop_indent`, at a closing bracket beyond what it may close (or, when it may close some, at the
end of the line that closes the block), and after `max_lines` lines. A run of statements also
ends before a definition that the completion starts, after a blank line, at the cursor's level
(`import lark`, a blank line, `def helper(...)`: the import is the completion). Between braces on one
line (`{|}`), a completion whose first line is code is a body written inline: that line, unless
the lines after it go on at the braces' indentation or deeper. The indentation and line
limits do not apply once `suffix_echo` confirmed an echo: that marks the end.

A single-line span whose completion opens a block on its first line (a `{` the completion opened
and left open, or in Python the colon of a compound statement's header it wrote) goes on with the
block's body, as a block span would, unless the code below the cursor is that body already (it is
indented deeper than the cursor's line): `function printHello(|)` -> `) {`, the body and `}`, not
`) {` alone; `for|` -> ` i in range(n):` and its body.
"""
from __future__ import annotations

import re

import dataclasses

from diffill.lsp.code import syntax
from diffill.lsp.code.indentation import columns
from diffill.lsp.code.lexing import CLOSERS, OPENERS, lex
from diffill.lsp.code.span import MAX_LINES, Span
from diffill.lsp.code.trim.context import Context

_PY_HEADER = re.compile(r"\s*(async\s+def|def|class|if|elif|else|for|async\s+for|while|with|async\s+with|try|"
                        r"except|finally|match|case)\b")
_CONTINUATION_CLAUSE = re.compile(r"(else|elif|except|finally|catch)\b")
_DIRECTIVE = re.compile(r"#\s*(if|ifdef|ifndef|else|elif|endif|pragma|define|undef|region|endregion)\b")


def apply(ctx: Context, text: str) -> str:
    if _inline_body(ctx, text):
        return text[:text.find("\n")]
    span, language = _opening_a_block(ctx, text) or ctx.span, ctx.cursor.language
    lexed = lex(text, language)
    mask, brackets = lexed.mask, lexed.brackets
    k = 0               # brackets before the current line's end
    line_start = 0
    block_closed = False
    opened_at: list[int] = []  # indentation of the line of each bracket the completion opened
    line_index = 0
    while True:
        end = text.find("\n", line_start)
        stop = len(text) if end < 0 else end
        while k < len(brackets) and brackets[k].offset < stop:
            b = brackets[k]
            k += 1
            if b.char in OPENERS:
                before = ctx.cursor.line_prefix + text[:b.offset] if line_start == 0 else text[line_start:b.offset]
                opened_at.append(columns(before))
                continue
            if opened_at:
                opened_at.pop()
            block_closed = block_closed or (b.depth < 0 and b.char == "}" and language != "python")
            if b.depth < -ctx.may_close:
                head = text[line_start:b.offset]
                return text[:line_start] if head.strip() == "" and line_start > 0 else text[:b.offset]
        if end < 0:
            return text
        depth = brackets[k - 1].depth if k else 0
        if span.single_line and depth <= 0 and mask[end]:
            return text[:end]
        if block_closed and not span.single_line:
            return text[:end]  # this line closed the block the cursor is in
        line_index += 1
        if line_index >= span.max_lines and not ctx.echo_confirmed:
            return text[:end]
        line_start = end + 1
        nxt = text.find("\n", line_start)
        line = text[line_start:] if nxt < 0 else text[line_start:nxt]
        first = line_start + len(line) - len(line.lstrip())
        starts_code = line.strip() and (mask[first] or _starts_comment(line.lstrip(), language))
        # inside brackets the completion opened, only a line indented less than the line that
        # opened them (and not closing them) can be the start of something else
        outside = depth <= 0 or (line.lstrip()[:1] not in CLOSERS and opened_at and columns(line) < opened_at[-1])
        if starts_code and outside and not ctx.echo_confirmed and (
                _ends_span_by_indent(ctx, span, line) or _starts_another_definition(ctx, span, text, line_start, line)):
            return text[:end + 1]  # keep the line break: tidy_end decides about it


def _inline_body(ctx: Context, text: str) -> bool:
    """Between braces on one line (`if (s >= m) {|}`), a completion whose first line is code writes
    the body inline, before the `}` already there: it ends with that line. (One that starts with a
    line break writes the body on lines of its own, as a block.)"""
    cursor = ctx.cursor
    if cursor.language == "python" or "\n" not in text:
        return False
    if not (cursor.line_prefix.rstrip().endswith("{") and cursor.rest_of_line.lstrip().startswith("}")
            and text[:text.find("\n")].strip()):
        return False
    # a body begun inline may go on below, indented at least as the braces' line (`{ a = 1;` then
    # `    b = 2;}`); a next line to the left of it is something else
    below = next((line for line in text[text.find("\n") + 1:].split("\n") if line.strip()), None)
    return below is not None and columns(below) < columns(cursor.line_prefix)


def _starts_comment(stripped: str, language: str) -> bool:
    """Does a line (stripped of indentation) start a comment, rather than continue a string?"""
    if language == "python":
        return stripped.startswith("#")
    return stripped.startswith(("//", "/*")) or (not syntax.has_grammar(language) and stripped.startswith(("#", "--")))


def _opening_a_block(ctx: Context, text: str) -> Span | None:
    """The block span a single-line span becomes when the completion's first line opens a block
    whose body is not below the cursor already; None otherwise."""
    span = ctx.span
    nl = text.find("\n")
    if not span.single_line or nl < 0 or not text[nl + 1:].strip():
        return None
    cursor = ctx.cursor
    head = cursor.line_prefix
    below = cursor.next_code_line()
    if below is not None and columns(below) > columns(head):
        return None  # the body is there already
    line = head + text[:nl]
    lexed = lex(line, cursor.language)
    code = lexed.blanked().rstrip()
    if len(code) <= len(head):
        return None
    if cursor.language == "python":
        opens = code.endswith(":") and bool(_PY_HEADER.match(line)) and lexed.depth_before(len(code) - 1) <= 0
    else:
        opened: list[int] = []  # the brackets of the line still open at its end
        for b in lexed.brackets:
            if b.char in OPENERS:
                opened.append(b.offset)
            elif opened:
                opened.pop()
        opens = code[-1] == "{" and bool(opened) and opened[-1] == len(code) - 1
    if not opens:
        return None
    return dataclasses.replace(span, kind="block", single_line=False, stop_indent=columns(head),
                               max_lines=MAX_LINES["block"])


_DEFINITION = {
    "python": re.compile(r"(async\s+def|def|class)\b|@"),
    "javascript": re.compile(r"(export\s+)?(default\s+)?(async\s+)?(function|class)\b"),
    "typescript": re.compile(r"(export\s+)?(default\s+)?(async\s+)?(function|class|interface)\b"),
    "go": re.compile(r"func\b"),
    "rust": re.compile(r"(pub(\([^)]*\))?\s+)?(async\s+)?(fn|struct|enum|impl|trait)\b"),
}


def _starts_another_definition(ctx: Context, span: Span, text: str, line_start: int, line: str) -> bool:
    """A run of statements ends where, after a blank line, the completion starts a definition at the
    cursor's level or outside it: the statements are done, and the next definition is not theirs
    to write (a completion that begins with a definition keeps it: that is its first line)."""
    rule = _DEFINITION.get(ctx.cursor.language)
    if span.kind != "statements" or rule is None or not rule.match(line.lstrip()):
        return False
    before = text[:line_start]
    gap = before[len(before.rstrip(" \t\r\n")):]
    if not before.strip() or gap.count("\n") < 2:
        return False  # nothing before it, or no blank line between the last statement and it
    return columns(line) <= columns(ctx.cursor.line_prefix)  # the cursor line's indentation


def _ends_span_by_indent(ctx: Context, span: Span, line: str) -> bool:
    stop = span.stop_indent
    if stop is None:
        return False
    stripped = line.lstrip()
    if columns(line) == stop and _CONTINUATION_CLAUSE.match(stripped):
        return False  # `else:` and friends continue the statement whose body this is
    if ctx.cursor.language != "python" and (stripped[0] in CLOSERS or _DIRECTIVE.match(stripped)):
        return False  # closers are the bracket rule's business; directives sit at column 0
    return columns(line) <= stop
