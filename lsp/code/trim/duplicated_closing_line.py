"""Filter: a completion that ends by typing the rest of the cursor's line again ("}" when the
cursor sat between "{" and "}") ends before it, so the editor's own text is used."""
from __future__ import annotations

from diffill.lsp.code.brackets import leading_closers, open_stack
from diffill.lsp.code.lexing import lex
from diffill.lsp.code.trim.context import Context
from diffill.lsp.code.trim.rest_of_line_echo import rest_of_line_cut


def apply(ctx: Context, text: str) -> str:
    rest = ctx.cursor.rest_of_line.strip()
    if not rest:
        return text
    last_start = text.rfind("\n") + 1
    if last_start == 0:
        cut = rest_of_line_cut(ctx.cursor, text)  # a one-line completion that ends with the closers
        return text if cut is None else text[:cut]
    last = text[last_start:]
    if last.strip() == rest:
        return text[:last_start + len(last) - len(last.lstrip())]
    # the last line ends with the closers after the cursor, which nothing in the completion opened
    end = len(text.rstrip())
    if leading_closers(rest) == rest and text[:end].endswith(rest):
        head = text[:end - len(rest)]
        language = ctx.cursor.language
        if not open_stack(head, language) and all(b.depth >= 0 for b in lex(head, language).brackets):
            return head.rstrip(" \t")
    return text
