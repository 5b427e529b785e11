"""One completion at a cursor, from the document to the text to show.

    typing-through cache -> share a fill in flight -> debounce -> windows -> span -> worker -> trim -> cache

`Completer.complete` is what the server's handlers call; it knows nothing of LSP types. It returns
a `Completion` (text to insert at the cursor, replacing `replace` characters after it) or None
when there is nothing to show: the request was superseded, the span says no, or the model had
nothing useful.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from diffill.lsp.server.completion_cache import CompletionCache
from diffill.lsp.pipeline.windows import ContextWindows
from diffill.lsp.server.documents import Document
from diffill.lsp.server.requests import Inflight, Latest, Rhythm, Ticket, unless_superseded, wait_shared
from diffill.lsp.server.settings import Settings
from diffill.lsp.server.worker_client import WorkerClient


# ---- span and trim (lsp/span.py, lsp/trim.py) ------------------------------------------------

SPAN_BEFORE, SPAN_AFTER = 200_000, 50_000  # characters of the document the span decision parses


def decide_span(language: str, prefix: str, suffix: str):
    from diffill.lsp.code.span import decide_span as decide
    return decide(language, prefix, suffix)


def span_region(text: str, offset: int, before: int = SPAN_BEFORE, after: int = SPAN_AFTER) -> tuple[str, str]:
    """The (prefix, suffix) the span decision sees: far more of the document than the model's window,
    which may start inside a docstring and make the cursor look as if it were inside a string.
    Whole documents up to `before` characters ahead of the cursor; longer ones from a line start."""
    start = max(0, offset - before)
    if start > 0:
        nl = text.find("\n", start, offset)
        start = nl + 1 if nl >= 0 else start
    return text[start:offset], text[offset:offset + after]


def trim(language: str, prefix: str, suffix: str, completion: str, span) -> tuple[str, int]:
    """(text, characters after the cursor it replaces)."""
    from diffill.lsp.code.trim import trim as trim_
    trimmed = trim_(language, prefix, suffix, completion, span)
    (_, _), (end_line, end_char) = trimmed.replace_range
    return trimmed.text, (end_char if end_line == 0 else 0)


# ---- the pipeline ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Completion:
    text: str
    offset: int          # where it goes (the cursor)
    replace: int         # characters after the cursor it replaces
    source: str          # "cache", "shared" (a fill in flight) or "model"


@dataclass
class Stats:
    requests: int = 0
    answered: int = 0
    cache_hits: int = 0
    shared: int = 0
    superseded: int = 0
    model_fills: int = 0
    empty: int = 0
    last_server_ms: float | None = None
    last_source: str | None = None
    last_fill_ms: float | None = None
    recent_server_ms: list = field(default_factory=list)

    def finish(self, started: float, source: str | None) -> None:
        ms = (time.perf_counter() - started) * 1000.0
        self.last_server_ms = round(ms, 3)
        self.last_source = source
        self.recent_server_ms = (self.recent_server_ms + [(source, round(ms, 3))])[-200:]


class Completer:
    def __init__(self, settings: Settings, worker: WorkerClient):
        self.settings = settings
        self.worker = worker
        self.cache = CompletionCache(settings.cache_size)
        self.windows = ContextWindows()
        self.latest = Latest()
        self.rhythm = Rhythm()
        self.inflight: dict[str, Inflight] = {}
        self.stats = Stats()

    def configure(self, settings: Settings) -> None:
        self.settings = settings
        self.cache.size = settings.cache_size

    def note_edit(self, uri: str) -> None:
        self.rhythm.note_edit(uri)

    def forget(self, uri: str) -> None:
        for part in (self.cache, self.windows, self.latest, self.rhythm):
            part.forget(uri)
        inflight = self.inflight.pop(uri, None)
        if inflight is not None:
            inflight.cancel()

    async def complete(self, doc: Document, line: int, character: int) -> Completion | None:
        started = time.perf_counter()
        self.stats.requests += 1
        result = None
        try:
            result = await self._complete(doc, doc.offset_at(line, character), started)
        finally:
            self.stats.finish(started, result.source if result else None)
        if result is not None:
            self.stats.answered += 1
        return result

    async def _complete(self, doc: Document, offset: int, started: float) -> Completion | None:
        uri, settings = doc.uri, self.settings
        ticket = self.latest.begin(uri)
        if not settings.enabled_for(doc.language_id) or doc.is_binary:
            return None
        text, version = doc.text, doc.version

        hit = self.cache.lookup(uri, text, offset)
        if hit is not None:
            self.stats.cache_hits += 1
            return Completion(hit.text, offset, hit.replace, "cache")

        inflight = self.inflight.get(uri)
        if inflight is not None and not inflight.task.done():
            if inflight.typed_ahead(text, offset):
                finished, _ = await wait_shared(inflight, ticket.superseded)
                if not finished or not self._current(doc, ticket, version):
                    self.stats.superseded += not finished
                    return None
                hit = self.cache.lookup(uri, text, offset)
                if hit is not None:
                    self.stats.shared += 1
                    return Completion(hit.text, offset, hit.replace, "shared")
            else:
                inflight.cancel()

        delay = self.rhythm.delay(uri, settings.debounce_ms, settings.debounce_max_ms,
                                  settings.adaptive_debounce, self.stats.last_fill_ms)
        if delay > 0:
            await unless_superseded(asyncio.sleep(delay), ticket.superseded)
        if not self._current(doc, ticket, version):
            return None

        window = self.windows.window(uri, text, offset, settings.context_tokens, settings.prefix_share,
                                     settings.suffix_share)
        language = doc.language_id
        span = decide_span(language, *span_region(text, offset))
        canvas = min(int(span.canvas_length), settings.canvas_cap)
        if canvas <= 0:
            return None
        task = asyncio.ensure_future(self._fill(uri, text, offset, window, span, canvas, language))
        inflight = Inflight.at(uri, text, offset, task)
        self.inflight[uri] = inflight
        task.add_done_callback(lambda _t, i=inflight: self._inflight_done(i))
        finished, shown = await wait_shared(inflight, ticket.superseded)
        if not finished:
            self.stats.superseded += 1
            return None
        if shown is None or not self._current(doc, ticket, version):
            return None
        self.stats.model_fills += 1
        completion_text, replace = shown
        if not completion_text:
            self.stats.empty += 1
            return None
        return Completion(completion_text, offset, replace, "model")

    def _current(self, doc: Document, ticket: Ticket, version: int) -> bool:
        if self.latest.is_current(doc.uri, ticket) and doc.version == version:
            return True
        self.stats.superseded += 1
        return False

    def _inflight_done(self, inflight: Inflight) -> None:
        if self.inflight.get(inflight.uri) is inflight:
            del self.inflight[inflight.uri]
        if not inflight.task.cancelled():
            inflight.task.exception()  # retrieved here; the waiters get it too

    async def _fill(self, uri, text, offset, window, span, canvas, language) -> tuple[str, int] | None:
        """Ask the worker, trim, remember. Runs as its own task, shared by the requests that wait on it."""
        started = time.perf_counter()
        try:
            reply = await self.worker.fill(uri, window.prefix, window.suffix, canvas_length=canvas,
                                           max_steps=self.settings.max_steps, language=language,
                                           max_lines=getattr(span, "max_lines", None) or None)
        except asyncio.CancelledError:
            # a fill cancelled after running this long says the model takes at least this long
            elapsed = (time.perf_counter() - started) * 1000.0
            self.stats.last_fill_ms = max(self.stats.last_fill_ms or 0.0, elapsed)
            raise
        if reply.cancelled:
            return None
        self.stats.last_fill_ms = reply.ms + reply.queue_ms
        shown, replace = trim(language, window.prefix, window.suffix, reply.text, span)
        self.cache.put(uri, text, offset, shown, replace)
        return shown, replace
