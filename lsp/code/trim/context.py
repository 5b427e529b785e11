"""What every trim filter reads: the cursor, the span, and what the filters found before."""
from __future__ import annotations

from dataclasses import dataclass

from diffill.lsp.code import syntax
from diffill.lsp.code.brackets import leading_closers
from diffill.lsp.code.cursor import Cursor
from diffill.lsp.code.span import Span


@dataclass
class Context:
    cursor: Cursor
    span: Span
    auto_closed: str        # closers right after the cursor that a completion may retype
    tree: syntax.IncrementalTree | None  # the trim role's parse cache; None for fallback languages
    echo_confirmed: bool = False  # the completion went on to repeat the code below the cursor

    @classmethod
    def of(cls, language: str, prefix: str, suffix: str, span: Span) -> "Context":
        cursor = Cursor.of(language, prefix, suffix)
        return cls(cursor, span, leading_closers(cursor.rest_of_line), syntax.incremental_tree(cursor.language, "trim"))

    @property
    def may_close(self) -> int:
        """Closers the completion may type: the span's close depth plus the auto-closed ones."""
        return self.span.close_depth + len(self.auto_closed)
