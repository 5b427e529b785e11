"""Filter: the completion's end against the word right after the cursor.

When an identifier follows the cursor (`x = |foo`, or `pri|nt` with the cursor inside it), the
completion's last characters join it. A completion whose last word would glue onto it into a word
that is not known (see word_at_cursor), where its last word is itself known, is dropped; with the
cursor inside a word, one that splits that word or glues anything onto its rest is dropped too.
"""
from __future__ import annotations

from diffill.lsp.code.trim.context import Context
from diffill.lsp.code.trim.word_at_cursor import _WORD_END, _WORD_START, Words, typed_word


def apply(ctx: Context, text: str) -> str:
    cursor = ctx.cursor
    after = _WORD_START.search(cursor.rest_of_line)
    rest = after.group() if after else ""
    if not rest or not text:
        return text
    typed = typed_word(cursor)
    lead = _WORD_START.match(text)
    if typed and lead and lead.group() == text:
        return text  # typed + completion + rest make one word: word_at_cursor judged it
    words = Words(ctx)
    tail_m = _WORD_END.search(text.rsplit("\n", 1)[-1])
    tail = tail_m.group() if tail_m else ""
    if tail and not words.known(tail + rest) and (typed or words.known(tail) and len(tail) >= 2):
        return ""  # glued onto the word after the cursor
    if not tail and typed and not words.known(rest):
        return ""  # the word at the cursor split in two
    return text
