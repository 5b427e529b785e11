"""Filter: trailing blank space. None when the cursor's line ends after the cursor (the suffix
brings its own line break); when code follows on the cursor's line and the completion ends with a
line break, it ends with the cursor line's own indentation so that code keeps its place."""
from __future__ import annotations

from diffill.lsp.code.trim.context import Context


def apply(ctx: Context, text: str) -> str:
    if not text.strip():
        return ""
    if not ctx.cursor.rest_of_line.strip():
        return text.rstrip()
    last_start = text.rfind("\n") + 1
    if last_start > 0 and not text[last_start:].strip():
        lead = ctx.cursor.line_prefix if not ctx.cursor.line_prefix.strip() else ""
        return text[:last_start].rstrip(" \t\n") + "\n" + lead
    return text
