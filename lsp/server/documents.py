"""Open documents: text, version and language, kept in sync with the client.

Full and incremental synchronisation. Ranges are read in the position encoding negotiated at
initialize (see positions.py). A document's text is an ordinary `str`; its line index is built
lazily once per version, so a burst of edits to a large file costs one scan per edit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from diffill.lsp.server import positions

# Documents with a NUL in their first megabyte are treated as binary: kept in sync, never completed.
_BINARY_SNIFF = 1 << 20


@dataclass
class Document:
    uri: str
    language_id: str
    version: int
    text: str
    encoding: str = positions.UTF16
    _index: positions.LineIndex | None = field(default=None, repr=False)
    _model: tuple[str, str] | None = field(default=None, repr=False)

    @property
    def index(self) -> positions.LineIndex:
        if self._index is None or self._index.text is not self.text:
            self._index = positions.LineIndex(self.text)
        return self._index

    @property
    def model_text(self) -> str:
        """The text as the completion pipeline reads it: the same length and offsets as `text`, with
        each lone surrogate (which no tokenizer or parser can encode) as U+FFFD, and in a file whose
        lines all end in a lone \\r, each \\r as \\n (the pipeline knows \\n and \\r\\n; see
        `to_document` for the way back)."""
        if self._model is None or self._model[0] is not self.text:
            self._model = (self.text, model_view(self.text))
        return self._model[1]

    @property
    def cr_only(self) -> bool:
        return "\r" in self.text and "\n" not in self.text

    def to_document(self, completion: str) -> str:
        """A completion made on `model_text`, in this document's own line ends."""
        if "\n" in completion and self.cr_only:
            return completion.replace("\r\n", "\r").replace("\n", "\r")
        return completion

    @property
    def is_binary(self) -> bool:
        return self.text.find("\x00", 0, _BINARY_SNIFF) != -1

    def offset_at(self, line: int, character: int) -> int:
        return self.index.offset_at(line, character, self.encoding)

    def position_at(self, offset: int) -> positions.Position:
        return self.index.position_at(offset, self.encoding)

    def apply_change(self, text: str, start: tuple[int, int] | None = None, end: tuple[int, int] | None = None) -> None:
        """Replace the range start..end (LSP (line, character) pairs) by `text`, or the whole text."""
        if start is None or end is None:
            self.text = text
            return
        a = self.offset_at(*start)
        b = self.offset_at(*end)
        if b < a:
            a, b = b, a
        self.text = self.text[:a] + text + self.text[b:]


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(text: str) -> str:
    """`text` with each lone surrogate as U+FFFD (the same length); `text` itself when it has none."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", text)
    return text


def model_view(text: str) -> str:
    """`text` with lone surrogates as U+FFFD and, when every line ends in a lone \\r, \\r as \\n;
    always the same length (offsets stay valid in both)."""
    text = without_lone_surrogates(text)
    if "\r" in text and "\n" not in text:
        text = text.replace("\r", "\n")
    return text


class DocumentStore:
    """The documents the client has open, by URI."""

    def __init__(self, encoding: str = positions.UTF16):
        self.encoding = positions.normalize_encoding(encoding)
        self._docs: dict[str, Document] = {}

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        doc = Document(uri, language_id or "", version if version is not None else 0, text or "", self.encoding)
        self._docs[uri] = doc
        return doc

    def change(self, uri: str, version: int | None, changes) -> Document | None:
        """Apply LSP content changes (objects with .text and optionally .range) in order."""
        doc = self._docs.get(uri)
        if doc is None:
            return None
        for change in changes:
            rng = getattr(change, "range", None)
            if rng is None:
                doc.apply_change(change.text)
            else:
                doc.apply_change(
                    change.text,
                    (rng.start.line, rng.start.character),
                    (rng.end.line, rng.end.character),
                )
        if version is not None:
            doc.version = version
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def __len__(self) -> int:
        return len(self._docs)
