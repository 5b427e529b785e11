"""Context windows: the prefix and suffix the model sees, cut to a token budget.

The suffix gets at most `suffix_share` of the budget and the prefix the rest (at least
`prefix_share`). Cuts fall on line boundaries where the text has them.

The prefix window's start is kept still while the user types (it moves only when the prefix
outgrows its budget, and then by a quarter of it), so consecutive requests share their leading
tokens and the worker can reuse its KV cache for them.

Tokens are counted with the checkpoint's own tokenizer.json (the `tokenizers` library, no torch)
once the worker has said where it is; before that, by a conservative estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

CHARS_PER_TOKEN_MAX = 8  # read at most this many characters per budgeted token (bounds the work)
ESTIMATE_CHARS_PER_TOKEN = 3
SLACK = 0.25  # when the prefix window must move, leave this share of its budget free for typing


class TokenCounter:
    def __init__(self, tokenizer_path: str | None = None):
        self.path: str | None = None
        self._tok = None
        self.chars_per_token: float = float(ESTIMATE_CHARS_PER_TOKEN)  # the estimate without a tokenizer
        if tokenizer_path:
            self.load(tokenizer_path)

    def load(self, tokenizer_path: str | None) -> None:
        if not tokenizer_path or tokenizer_path == self.path:
            return
        try:
            from tokenizers import Tokenizer
            self._tok = Tokenizer.from_file(tokenizer_path)
            self.path = tokenizer_path
        except Exception:  # unreadable: keep estimating
            self._tok = None

    def offsets(self, text: str) -> list[int]:
        """The start offset of each token of `text`."""
        if self._tok is None:
            step = self.chars_per_token
            return [int(i * step) for i in range(math.ceil(len(text) / step))]
        return [a for a, _ in self._tok.encode(text, add_special_tokens=False).offsets]

    def count(self, text: str) -> int:
        return len(self.offsets(text))


@dataclass(frozen=True)
class Window:
    prefix: str
    suffix: str
    start: int          # document offset where the prefix window begins
    end: int            # document offset where the suffix window ends
    prefix_tokens: int
    suffix_tokens: int


def _line_start_at_or_after(text: str, pos: int, limit: int) -> int:
    """Where a window starting near `pos` should start: the first top-level line (one that starts
    with neither blank nor a closing bracket or quote) in the first half of [pos, limit), else the
    first line start, else `pos`.

    Starting at a top-level line keeps the cut out of a string or comment that began above it, so
    the parser (and the model) see the cursor where it really is."""
    if pos <= 0:
        return 0
    half = pos + (limit - pos) // 2
    first = pos if text[pos - 1] == "\n" else -1
    i = pos if text[pos - 1] == "\n" else text.find("\n", pos, limit) + 1
    while 0 < i < half:
        if first == -1:
            first = i
        if i < limit and text[i] not in " \t\r\n)]}'\"`":
            return i
        i = text.find("\n", i, limit) + 1
    return first if first != -1 else pos


def cut_suffix(text: str, offset: int, budget: int, counter: TokenCounter) -> tuple[int, int]:
    """(end offset, tokens) of the suffix window starting at `offset`."""
    if budget <= 0 or offset >= len(text):
        return offset, 0
    chunk = text[offset : offset + budget * CHARS_PER_TOKEN_MAX]
    starts = counter.offsets(chunk)
    if len(starts) <= budget:
        return offset + len(chunk), len(starts)
    cut = starts[budget]
    nl = chunk.rfind("\n", 0, cut)
    if nl > 0:
        cut = nl + 1
    tokens = sum(1 for s in starts if s < cut)
    return offset + cut, tokens


def cut_prefix(text: str, offset: int, budget: int, counter: TokenCounter, slack: float = 0.0) -> tuple[int, int]:
    """(start offset, tokens) of a prefix window ending at `offset` holding at most budget*(1-slack) tokens."""
    keep = max(1, int(budget * (1.0 - slack)))
    lo = max(0, offset - budget * CHARS_PER_TOKEN_MAX)
    chunk = text[lo:offset]
    starts = counter.offsets(chunk)
    if len(starts) <= keep and lo == 0:
        return 0, len(starts)
    first = len(starts) - keep if len(starts) > keep else 0
    start = lo + (starts[first] if starts else len(chunk))
    aligned = _line_start_at_or_after(text, start, offset)
    tokens = len(starts) - first
    if aligned != start:
        tokens = sum(1 for s in starts if lo + s >= aligned)
    return aligned, tokens


class ContextWindows:
    """Cuts windows for each document, remembering where its prefix window began."""

    def __init__(self, counter: TokenCounter | None = None):
        self.counter = counter or TokenCounter()
        self._anchors: dict[str, tuple[int, str]] = {}  # uri -> (start offset, text at the start)

    def forget(self, uri: str) -> None:
        self._anchors.pop(uri, None)

    def window(self, uri: str, text: str, offset: int, budget: int, prefix_share: float,
               suffix_share: float) -> Window:
        offset = max(0, min(offset, len(text)))
        end, suffix_tokens = cut_suffix(text, offset, int(budget * suffix_share), self.counter)
        prefix_budget = max(int(budget * prefix_share), budget - suffix_tokens)
        start, prefix_tokens = self._prefix_start(uri, text, offset, prefix_budget)
        return Window(text[start:offset], text[offset:end], start, end, prefix_tokens, suffix_tokens)

    def _prefix_start(self, uri: str, text: str, offset: int, budget: int) -> tuple[int, int]:
        anchor = self._anchors.get(uri)
        if anchor is not None:
            start, head = anchor
            if start <= offset and text.startswith(head, start) and (start == 0 or text[start - 1] == "\n"):
                if offset - start <= budget * CHARS_PER_TOKEN_MAX:
                    tokens = self.counter.count(text[start:offset])
                    if tokens <= budget:
                        return start, tokens
        start, tokens = cut_prefix(text, offset, budget, self.counter, slack=SLACK)
        self._anchors[uri] = (start, text[start : min(start + 64, offset)])
        return start, tokens
