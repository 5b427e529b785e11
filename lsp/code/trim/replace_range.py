"""How much of the rest of the cursor's line a completion replaces."""
from __future__ import annotations

from diffill.lsp.code.brackets import unmatched_closers
from diffill.lsp.code.trim.context import Context


def replaced_closers(ctx: Context, text: str) -> int:
    """How many characters of the rest of the line `text` replaces: the auto-closed brackets right
    after the cursor that the completion types itself. The completion's unmatched closers, in
    order, are paired with those brackets (the innermost open brackets, so the first to close);
    pairing stops at the first that differs."""
    if not ctx.auto_closed:
        return 0
    unmatched = unmatched_closers(text, ctx.cursor.language)
    k = 0
    while k < len(unmatched) and k < len(ctx.auto_closed) and unmatched[k] == ctx.auto_closed[k]:
        k += 1
    return k  # auto_closed is a run of closers at the very start of the rest of the line
