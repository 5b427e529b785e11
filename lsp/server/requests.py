"""The life of a completion request: debounce, staleness, and sharing or cancelling fills.

- Every request for a document supersedes the ones before it (`Latest`): a superseded request
  answers "nothing" as soon as it notices, and never reaches the model if it is still waiting.
  Clients that never send `$/cancelRequest` (Neovim) are covered by this rule alone.
- The debounce (`Rhythm`) waits after the last edit before a request goes to the model. It adapts
  to the user's typing: while keystrokes come faster than the model answers, it waits a little
  longer than the usual gap between them, so the model is asked when the user pauses rather than
  for every letter (the typing-through cache answers the letters in between).
- A fill in flight (`Inflight`) is shared: a newer request whose only change is text typed at the
  cursor waits for it (its result may predict what was typed) instead of starting another; any
  other newer request cancels it, and so does `$/cancelRequest` when nobody else waits for it.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from diffill.lsp.server.completion_cache import ContextKey

TYPING_GAP_S = 1.0     # gaps longer than this are pauses, not typing
EMA_WEIGHT = 0.3
TYPE_AHEAD_MAX = 64    # characters typed past an in-flight fill that may still wait for it
CONTEXT_CHARS = 64


@dataclass
class Ticket:
    """One request's place in its document's line: `superseded` is set when a newer one begins."""

    generation: int
    superseded: asyncio.Event


class Latest:
    """A counter per document; a request is current while no newer one has begun."""

    def __init__(self):
        self._tickets: dict[str, Ticket] = {}

    def begin(self, uri: str) -> Ticket:
        old = self._tickets.get(uri)
        if old is not None:
            old.superseded.set()
        ticket = Ticket(old.generation + 1 if old else 1, asyncio.Event())
        self._tickets[uri] = ticket
        return ticket

    def is_current(self, uri: str, ticket: Ticket) -> bool:
        return self._tickets.get(uri) is ticket

    def forget(self, uri: str) -> None:
        ticket = self._tickets.pop(uri, None)
        if ticket is not None:
            ticket.superseded.set()


async def unless_superseded(awaitable, superseded: asyncio.Event) -> tuple[bool, object]:
    """(True, result) when `awaitable` finishes first, (False, None) as soon as `superseded` is set.

    The awaitable is cancelled when it loses (pass a shield to keep what it wraps running). A
    cancelled awaitable counts as finished with None."""
    fut = asyncio.ensure_future(awaitable)
    if superseded.is_set():
        fut.cancel()
        return False, None
    stop = asyncio.ensure_future(superseded.wait())
    try:
        await asyncio.wait({fut, stop}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        fut.cancel()
        stop.cancel()
        raise
    stop.cancel()
    if not fut.done():
        fut.cancel()
        return False, None
    if fut.cancelled():
        return True, None
    return True, fut.result()


class Rhythm:
    """Typing speed per document, and the debounce it calls for."""

    def __init__(self):
        self._last: dict[str, float] = {}
        self._gap: dict[str, float] = {}

    def note_edit(self, uri: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        last = self._last.get(uri)
        self._last[uri] = now
        if last is None:
            return
        gap = now - last
        if gap > TYPING_GAP_S:
            return
        old = self._gap.get(uri)
        self._gap[uri] = gap if old is None else (1 - EMA_WEIGHT) * old + EMA_WEIGHT * gap

    def typing_gap(self, uri: str) -> float | None:
        """The usual gap between keystrokes, while the user is typing (None after a pause)."""
        last = self._last.get(uri)
        if last is None or time.monotonic() - last > TYPING_GAP_S:
            return None
        return self._gap.get(uri)

    def delay(self, uri: str, base_ms: int, max_ms: int, adaptive: bool, model_ms: float | None) -> float:
        """Seconds to wait before asking the model."""
        delay = base_ms / 1000.0
        if not adaptive:
            return delay
        gap = self.typing_gap(uri)
        if gap is None or model_ms is None or model_ms / 1000.0 <= gap:
            return delay  # a pause, or a model quicker than the typist: ask now
        return min(max_ms / 1000.0, max(delay, 1.5 * gap))

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)
        self._gap.pop(uri, None)


@dataclass
class Inflight:
    """A fill running for one document, and where it was asked for."""

    uri: str
    offset: int
    before: str          # text just before the cursor it was asked at
    after: str           # text just after
    task: asyncio.Task
    waiters: int = 0
    started: float = field(default_factory=time.perf_counter)
    context: ContextKey | None = None  # the model's window it was asked with

    @classmethod
    def at(cls, uri: str, text: str, offset: int, task: asyncio.Task,
           window: tuple[int, int] | None = None) -> "Inflight":
        return cls(uri, offset, text[max(0, offset - CONTEXT_CHARS) : offset],
                   text[offset : offset + CONTEXT_CHARS], task, context=ContextKey.of(text, offset, window))

    def typed_ahead(self, text: str, offset: int) -> bool:
        """Whether `text` at `offset` is this fill's place with only some characters typed at the
        cursor (and nothing else changed in the model's window)."""
        k = offset - self.offset
        return (0 <= k <= TYPE_AHEAD_MAX
                and text.startswith(self.before, self.offset - len(self.before))
                and text.startswith(self.after, offset)
                and "\n" not in text[self.offset : offset]
                and (self.context is None or self.context.matches(text, self.offset, offset)))

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()


async def wait_shared(inflight: Inflight, superseded: asyncio.Event) -> tuple[bool, object]:
    """Wait for a shared fill: (True, its result, None when it was cancelled), or (False, None) as
    soon as a newer request supersedes this one (the fill goes on: the newer request may want it).

    When the waiter itself is cancelled ($/cancelRequest) and nobody else waits, the fill is
    cancelled too."""
    inflight.waiters += 1
    try:
        return await unless_superseded(asyncio.shield(inflight.task), superseded)
    except asyncio.CancelledError:
        if inflight.waiters <= 1:
            inflight.cancel()
        raise
    finally:
        inflight.waiters -= 1
