"""What surrounds the cursor: the text before and after it, split the ways span and trim need.

Everything here is in Python `str` terms with line breaks normalised to "\\n"; `eol` remembers
the document's own line break so that results can be written back in it.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from diffill.lsp.code.syntax import canonical_language, has_grammar


def normalise_newlines(text: str) -> str:
    """CRLF and lone CR become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Cursor:
    """A cursor in a document: `prefix` and `suffix` are the text before and after it."""

    language: str       # canonical id (see syntax.canonical_language)
    prefix: str         # LF line breaks
    suffix: str         # LF line breaks
    eol: str            # the document's line break: "\n" or "\r\n"

    @classmethod
    def of(cls, language: str, prefix: str, suffix: str) -> "Cursor":
        raw = prefix[-4000:] + suffix[:4000]
        eol = "\r\n" if raw.count("\r\n") * 2 > raw.count("\n") else "\n"
        return cls(canonical_language(language), normalise_newlines(prefix), normalise_newlines(suffix), eol)

    @property
    def has_grammar(self) -> bool:
        return has_grammar(self.language)

    @functools.cached_property
    def line_prefix(self) -> str:
        """Text on the cursor's line before the cursor."""
        return self.prefix[self.prefix.rfind("\n") + 1:]

    @functools.cached_property
    def rest_of_line(self) -> str:
        """Text on the cursor's line after the cursor (no line break)."""
        end = self.suffix.find("\n")
        return self.suffix if end < 0 else self.suffix[:end]

    @functools.cached_property
    def suffix_lines(self) -> list[str]:
        """The suffix as full lines: the first is the whole cursor line (line_prefix + rest)."""
        lines = self.suffix.split("\n")
        lines[0] = self.line_prefix + lines[0]
        return lines

    @functools.cached_property
    def previous_lines(self) -> list[str]:
        """Lines of the prefix before the cursor's line, nearest last."""
        cut = self.prefix.rfind("\n")
        return self.prefix[:cut].split("\n") if cut >= 0 else []

    def previous_code_line(self) -> str | None:
        """The nearest non-blank line above the cursor's line, or None."""
        for line in reversed(self.previous_lines[-200:]):
            if line.strip():
                return line
        return None

    def next_code_line(self) -> str | None:
        """The nearest non-blank line below the cursor's line, or None."""
        for line in self.suffix_lines[1:200]:
            if line.strip():
                return line
        return None
