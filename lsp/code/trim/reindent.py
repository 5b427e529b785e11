"""Filter: continuation lines in the file's own indentation style (tabs or spaces, and width)."""
from __future__ import annotations

from diffill.lsp.code.indentation import detect_style, reindent
from diffill.lsp.code.trim.context import Context


def apply(ctx: Context, text: str) -> str:
    if "\n" not in text:
        return text
    cursor = ctx.cursor
    sample = cursor.prefix[-6000:] + cursor.suffix[:3000]
    nearby = "\n".join(cursor.previous_lines[-30:] + cursor.suffix_lines[1:30])
    return reindent(text, detect_style(sample), cursor.line_prefix, nearby)
