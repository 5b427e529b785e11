"""Filter: when prefix + text + suffix has more parse errors than prefix + suffix (more error
nodes, or errors over more bytes), take the longest cut at a line end that adds none (at most
`MAX_CANDIDATES` tried); otherwise keep the text. Languages without a grammar are left alone."""
from __future__ import annotations

from diffill.lsp.code import syntax
from diffill.lsp.code.trim.context import Context
from diffill.lsp.code.trim.replace_range import replaced_closers

MAX_CANDIDATES = 48


def apply(ctx: Context, text: str) -> str:
    if ctx.tree is None:
        return text
    baseline = syntax.error_extent(ctx.tree.update(ctx.cursor.prefix + ctx.cursor.suffix))
    if _adds_no_errors(_errors(ctx, text), baseline):
        return text
    ends = [i for i, ch in enumerate(text) if ch == "\n"]
    for end in reversed(ends[-MAX_CANDIDATES:]):
        candidate = text[:end].rstrip(" \t")
        if not candidate.strip():
            break
        if _adds_no_errors(_errors(ctx, candidate), baseline):
            return candidate
    return text


def _errors(ctx: Context, text: str) -> tuple[int, int]:
    cursor = ctx.cursor
    consumed = replaced_closers(ctx, text)
    return syntax.error_extent(ctx.tree.update(cursor.prefix + text + cursor.suffix[consumed:]))


def _adds_no_errors(errors: tuple[int, int], baseline: tuple[int, int]) -> bool:
    return errors[0] <= baseline[0] and errors[1] <= baseline[1]
