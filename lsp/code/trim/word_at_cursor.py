"""Filter: the completion's start aligned with the word being typed at the cursor.

When the cursor is right after an identifier (`ret|`) or inside one (`pri|nt`), the completion's
first characters join that word. A word is *known* when it is a keyword or builtin of the language
or appears as a whole word near the cursor.

- A completion that starts by typing the partial word again (`return x` after `ret`) extends it:
  the repeated part is dropped (`urn x`), unless the word and the completion's first word together
  are themselves known.
- One that would glue a second word onto the typed one (`value` after `ret`, `x` after `return`)
  is dropped: a known word joined to the typed one into a word that is not known.
- With the cursor inside a word, the word the completion's start makes must be known; so must it
  when words near the cursor start with the typed part (the user is typing one of them).

The completion's end against a word right after the cursor is `word_after_cursor`'s business, once
the other filters have decided where the completion ends.
"""
from __future__ import annotations

import builtins
import functools
import keyword
import re

from diffill.lsp.code.trim.context import Context

NEAR_BEFORE, NEAR_AFTER = 200_000, 50_000  # characters of the document searched for known words (the region)

_WORD_END = re.compile(r"[\w$]+$")
_WORD_START = re.compile(r"^[\w$]+")

_COMMON_KEYWORDS = frozenset("""
abstract and as assert async await auto bool boolean break byte case catch char chan class const constexpr
continue debugger def default defer del delete do double dyn elif else enum except export extends extern
false final finally float fn for foreach from func function get global go goto if impl implements import
in inline instanceof int interface is lambda let long loop match mod module move mut namespace native new
nil none not null of or override package pass private protected pub public raise range readonly ref
return select self set short signed sizeof static struct super switch synchronized template then this
throw throws trait true try type typedef typeof union unsafe unsigned use using var virtual void
volatile where while with yield string number any unknown never undefined println printf console
""".split())


@functools.lru_cache(maxsize=None)
def _keywords(language: str) -> frozenset[str]:
    if language == "python":
        return frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
    return _COMMON_KEYWORDS


def apply(ctx: Context, text: str) -> str:
    cursor = ctx.cursor
    typed = typed_word(cursor)
    if not typed or not text:
        return text
    after = _WORD_START.search(cursor.rest_of_line)
    rest = after.group() if after else ""
    lead, whole = _lead(text)
    if not lead:
        return text
    words = Words(ctx)
    if words.known(typed + lead + (rest if whole else "")):
        return text  # the completion finishes the word
    if text.startswith(typed):
        text = text[len(typed):]  # the typed part again: the model started the word over
        if not text.strip():
            return ""
        lead, whole = _lead(text)
        if lead and not words.known(typed + lead + (rest if whole else "")) and (
                rest or words.known(lead) and len(lead) >= 2):
            return ""
        return text
    if rest or words.known(lead) and (len(lead) >= 2 or typed in _keywords(cursor.language)):
        return ""  # a second word glued onto the typed one
    if words.extended(typed):
        return ""  # a word the user is typing, finished into none of the words that start so
    return text


def _lead(text: str) -> tuple[str, bool]:
    """(the identifier the completion starts with, whether it is the whole completion)."""
    m = _WORD_START.match(text)
    lead = m.group() if m else ""
    return lead, bool(lead) and lead == text


def typed_word(cursor) -> str:
    """The identifier (or part of one) right before the cursor; "" when there is none."""
    before = _WORD_END.search(cursor.line_prefix)
    return before.group() if before and not before.group()[0].isdigit() else ""


class Words:
    """Whole words near the cursor (the partial word at the cursor itself left out)."""

    def __init__(self, ctx: Context):
        cursor = ctx.cursor
        self.language = cursor.language
        prefix = cursor.prefix[-NEAR_BEFORE:]
        typed = _WORD_END.search(prefix)
        self.before = prefix[:typed.start()] if typed else prefix
        suffix = cursor.suffix[:NEAR_AFTER]
        rest = _WORD_START.match(suffix)
        self.after = suffix[rest.end():] if rest else suffix

    def extended(self, typed: str) -> bool:
        """Does a longer word near the cursor start with `typed`?"""
        pattern = re.compile(r"(?<![\w$])" + re.escape(typed) + r"[\w$]")
        return bool(pattern.search(self.before) or pattern.search(self.after))

    def known(self, word: str) -> bool:
        if word in _keywords(self.language):
            return True
        pattern = re.compile(r"(?<![\w$])" + re.escape(word) + r"(?![\w$])")
        return bool(pattern.search(self.before) or pattern.search(self.after))
