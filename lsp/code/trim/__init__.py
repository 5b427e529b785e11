"""After generation: cut the model's canvas down to the completion to show.

`trim(language, prefix, suffix, completion, span)` runs the filters in `FILTERS`, in order, each a
module with `apply(context, text) -> text` and its own golden cases (tests/golden/trim/<module>/),
and then works out the replace range (replace_range.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from diffill.lsp.code.cursor import normalise_newlines
from diffill.lsp.code.span import Span
from diffill.lsp.code.trim import (cursor_spacing, duplicated_closing_line, file_scope, parse_gate, reindent,
                                   repetition, rest_of_line_echo, span_end, suffix_echo, tidy_end, unreachable,
                                   word_after_cursor, word_at_cursor)
from diffill.lsp.code.trim.context import Context
from diffill.lsp.code.trim.replace_range import replaced_closers

Position = tuple[int, int]

FILTERS = (
    suffix_echo,              # whole lines that repeat the lines below the cursor
    rest_of_line_echo,        # a first line that ends by repeating the rest of the cursor's line
    span_end,                 # the span's stopping rule: line end, dedent, closing brackets, max lines
    file_scope,               # a line that belongs at a file's top (#include, import) inside a body
    repetition,               # repeated lines and blocks, lines that end in a repeating token run
    unreachable,              # code after return/raise/break/continue/throw at the same level
    word_at_cursor,           # the start against the word being typed: retyped part dropped, glue not shown
    duplicated_closing_line,  # a last line that repeats the closers after the cursor
    reindent,                 # continuation lines in the file's indentation style
    parse_gate,               # the longest prefix that adds no syntax error to the document, or nothing
    word_after_cursor,        # the end against the word right after the cursor
    cursor_spacing,           # no doubled blank at either end
    tidy_end,                 # trailing blank space the suffix already provides
)


def filter_name(module) -> str:
    return module.__name__.rpartition(".")[2]


@dataclass(frozen=True)
class Cut:
    """One filter's verdict: the text it was given and what it left."""

    filter: str
    before: str
    after: str

    def __str__(self) -> str:
        if self.after and self.before.startswith(self.after):
            return f"{self.filter}: cut {self.before[len(self.after):]!r}"
        return f"{self.filter}: {self.before!r} -> {self.after!r}"


@dataclass(frozen=True)
class Trimmed:
    """The completion to show.

    text: what to insert, with the document's own line breaks.
    replace_range: ((start_line, start_char), (end_line, end_char)) relative to the cursor: lines
        counted from the cursor's line (0), characters as offsets into Python `str` (code points)
        from the cursor on line 0. Start is always (0, 0); the end is (0, n) where n > 0 when the
        completion retypes closing brackets that sit right after the cursor (editor auto-pairs):
        those n characters of the rest of the line are replaced by `text`, and they appear in
        `text` in order, so the edit only adds characters. The server converts to UTF-16.
    trace: what each filter that changed the text cut, in order.
    """

    text: str
    replace_range: tuple[Position, Position] = ((0, 0), (0, 0))
    trace: tuple[Cut, ...] = ()


EMPTY = Trimmed("")


def trim(language: str, prefix: str, suffix: str, completion: str, span: Span) -> Trimmed:
    """Trim a raw model completion for the cursor between `prefix` and `suffix`.

    `span` is what `decide_span` returned for the same cursor. Never raises on any input; returns
    `EMPTY` (text "" and an empty range) when nothing is worth showing.
    """
    if not span.wants_completion or not completion:
        return EMPTY
    ctx = Context.of(language, prefix, suffix, span)
    text = normalise_newlines(completion)
    trace: list[Cut] = []
    for step in FILTERS:
        before, text = text, step.apply(ctx, text)
        if text != before:
            trace.append(Cut(filter_name(step), before, text))
        if not text:
            return Trimmed("", trace=tuple(trace))
    consumed = replaced_closers(ctx, text)
    if ctx.cursor.eol != "\n":
        text = text.replace("\n", ctx.cursor.eol)
    return Trimmed(text, ((0, 0), (0, consumed)), tuple(trace))
