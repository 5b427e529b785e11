"""Filter: drop text that repeats the rest of the cursor's line at the end of the completion's
first line ("a, b)" before an auto-closed ")"), for one-line spans or one-line completions."""
from __future__ import annotations

from diffill.lsp.code.cursor import Cursor
from diffill.lsp.code.lexing import lex
from diffill.lsp.code.trim.context import Context


def apply(ctx: Context, text: str) -> str:
    nl = text.find("\n")
    if nl >= 0 and not ctx.span.single_line:
        return text
    first = text if nl < 0 else text[:nl]
    cut = rest_of_line_cut(ctx.cursor, first)
    return text if cut is None else text[:cut]


def rest_of_line_cut(cursor: Cursor, first_line: str) -> int | None:
    """Where `first_line` starts repeating the rest of the cursor's line, or None.

    The rest of the line must reappear whole (trailing spaces aside) at a point outside strings and
    comments where the brackets the completion opened are all closed (and none closed that it did
    not open before that point). Returns an offset into `first_line`.
    """
    rest = cursor.rest_of_line.strip()
    if not rest:
        return None
    lexed = lex(first_line, cursor.language)
    # a closer the completion did not open ends the search (that closer's own offset still counts)
    limit = next((b.offset for b in lexed.brackets if b.depth < 0), len(first_line))
    i = first_line.find(rest)
    while 0 <= i <= limit:
        if lexed.mask[i] and lexed.depth_before(i) == 0 and first_line[i + len(rest):].strip() == "":
            if cursor.rest_of_line[:1].isspace():  # the rest of the line brings its own leading space
                return len(first_line[:i].rstrip(" \t"))
            return i
        i = first_line.find(rest, i + 1)
    return None
