"""Recent completions, and typing-through: serving the rest of a shown completion from memory.

An entry remembers a completion with the text just before and just after the cursor where it was
made. When the user has since typed the first k characters of that completion (and the text after
the cursor is unchanged), the answer is the completion's remaining characters, with no model call.
Every entry therefore serves each of its prefixes, like a cache filled for every keystroke ahead.

An entry also remembers the model's context window it was made with (the plan's window, start to
end), as the length and hash of its text before and after the cursor: an edit anywhere in that
window (renaming a parameter at the top of the function) makes the entry miss, since the model
would have seen something else; edits outside it (above the window) do not.

Entries are kept least-recently-used first out; lookups read the document in place (no copies of
large texts beyond the window's, hashed).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

CONTEXT_CHARS = 200  # characters kept on each side of the cursor to recognise the place again


@dataclass(frozen=True)
class ContextKey:
    """The model's window around a cursor, by length and hash of its two sides."""
    head: int          # characters of the window before the cursor
    head_hash: int
    tail: int          # characters of the window after the cursor
    tail_hash: int

    @classmethod
    def of(cls, text: str, offset: int, window: tuple[int, int] | None) -> "ContextKey | None":
        if window is None:
            return None
        start, end = max(0, min(window[0], offset)), max(offset, min(window[1], len(text)))
        return cls(offset - start, hash(text[start:offset]), end - offset, hash(text[offset:end]))

    def matches(self, text: str, cursor_then: int, cursor_now: int) -> bool:
        """Whether `text` still has the window's head before `cursor_then` (where the completion was
        asked) and its tail after `cursor_now` (what was typed since lies in between)."""
        if cursor_then < self.head or cursor_now + self.tail > len(text):
            return False
        return (hash(text[cursor_then - self.head : cursor_then]) == self.head_hash
                and hash(text[cursor_now : cursor_now + self.tail]) == self.tail_hash)


@dataclass(frozen=True)
class Entry:
    uri: str
    before: str        # text just before the cursor when the completion was made
    after: str         # text just after it (all of it when shorter than CONTEXT_CHARS)
    text: str          # the completion
    replace: int       # characters after the cursor that the completion replaces
    context: ContextKey | None = None  # the model's window it was made with


@dataclass(frozen=True)
class Hit:
    text: str          # what is left of the completion to show
    replace: int
    typed: int         # characters of the completion already typed


class CompletionCache:
    def __init__(self, size: int = 256):
        self.size = size
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, uri: str, text: str, offset: int, completion: str, replace: int = 0,
            window: tuple[int, int] | None = None) -> None:
        """Remember `completion` made at `offset`; `window`: the (start, end) document offsets of
        the model's context, so that an edit anywhere in it invalidates the entry."""
        if self.size <= 0 or not completion:
            return
        before = text[max(0, offset - CONTEXT_CHARS) : offset]
        after = text[offset : offset + CONTEXT_CHARS]
        context = ContextKey.of(text, offset, window)
        entry = Entry(uri, before, after, completion, replace, context)
        key = (uri, before, after, completion, context)
        self._entries.pop(key, None)
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def lookup(self, uri: str, text: str, offset: int) -> Hit | None:
        """The rest of a remembered completion that the text up to `offset` has typed into, if any."""
        for key in reversed(self._entries):
            entry = self._entries[key]
            if entry.uri != uri:
                continue
            typed = _typed_into(entry, text, offset)
            if typed is not None:
                self._entries.move_to_end(key)
                return Hit(entry.text[typed:], entry.replace, typed)
        return None

    def forget(self, uri: str) -> None:
        for key in [k for k, e in self._entries.items() if e.uri == uri]:
            del self._entries[key]


def _typed_into(entry: Entry, text: str, offset: int) -> int | None:
    """k such that the text before `offset` is entry.before + completion[:k], the text after is
    unchanged, and something of the completion is left (the largest such k)."""
    if not text.startswith(entry.after, offset):
        return None
    if len(entry.after) < CONTEXT_CHARS and len(text) - offset != len(entry.after):
        return None
    before, completion = entry.before, entry.text
    if len(before) < CONTEXT_CHARS:  # made near the start of the text: `before` is all of it
        candidates = [0] if text.startswith(before, 0) else []
    else:
        lo = max(0, offset - (len(completion) - 1) - len(before))
        candidates = []
        p = text.find(before, lo, offset)
        while p != -1:
            candidates.append(p)
            p = text.find(before, p + 1, offset)
    for p in candidates:
        k = offset - p - len(before)
        if 0 <= k < len(completion) and text.startswith(completion[:k], p + len(before)):
            if entry.context is not None and not entry.context.matches(text, p + len(before), offset):
                continue  # the model's window has changed since: the completion is for other text
            return k
    return None
