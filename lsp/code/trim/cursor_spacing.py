"""Filter: no doubled blank at either end of the completion.

After code that ends with a space or tab on the cursor's line (`x = |`), the completion's leading
blanks go; before a rest of the line that starts with one (`foo(| , b)`), its trailing blanks on its
last line go. Indentation (a cursor line of blanks only) is left to the other filters.
"""
from __future__ import annotations

from diffill.lsp.code.trim.context import Context

_BLANK = " \t"


def apply(ctx: Context, text: str) -> str:
    cursor = ctx.cursor
    head = cursor.line_prefix
    if head.strip() and head[-1] in _BLANK and text[:1] in _BLANK:
        text = text.lstrip(_BLANK)
    rest = cursor.rest_of_line
    if rest[:1] in _BLANK and rest and text[-1:] in _BLANK:
        last = text.rsplit("\n", 1)[-1]
        if last.strip() or "\n" not in text:
            text = text.rstrip(_BLANK)
    return text
