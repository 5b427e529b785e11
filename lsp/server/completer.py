"""One completion request at a cursor, from the document to the text to show.

    typing-through cache -> share a fill in flight -> debounce -> the pipeline -> cache

The pipeline (window -> span -> fill -> trim) is lsp/pipeline/complete.py, the same one that
`diffill complete` and the benchmarks run; this module adds what only an editor session needs.

`Completer.complete` is what the server's handlers call; it knows nothing of LSP types. It returns
a `Completion` (text to insert at the cursor, replacing `replace` characters after it) or None
when there is nothing to show: the request was superseded, the span says no, or the model had
nothing useful.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field

from diffill.lsp.pipeline import complete as pipeline
from diffill.lsp.pipeline import confidence_gate
from diffill.lsp.pipeline.fill import Fill
from diffill.lsp.pipeline.windows import ContextWindows
from diffill.lsp.server.completion_cache import CompletionCache
from diffill.lsp.server.documents import Document, without_lone_surrogates
from diffill.lsp.server.requests import Inflight, Latest, Rhythm, Ticket, unless_superseded, wait_shared
from diffill.lsp.server.settings import Settings

log = logging.getLogger("diffill")


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
    def __init__(self, settings: Settings, fill: Fill, on_refusal=None):
        self.settings = settings
        self.fill = fill
        self.on_refusal = on_refusal or (lambda reason: None)
        self.refusals_told: set[str] = set()
        self.model_context_tokens: int | None = None  # the checkpoint's own budget, once the worker says
        self.model_languages: tuple[str, ...] | None = None  # what it was trained for; None: all
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
            result = Completion(doc.to_document(result.text), result.offset, result.replace, result.source)
        return result

    async def _complete(self, doc: Document, offset: int, started: float) -> Completion | None:
        uri, settings = doc.uri, self.settings
        ticket = self.latest.begin(uri)
        if not settings.enabled_for(doc.language_id) or doc.is_binary:
            return None
        text, version = doc.model_text, doc.version  # same offsets as doc.text; see Document.model_text

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

        plan = pipeline.plan(self.request(doc, text, offset), self.windows)
        if plan.refused and plan.refused not in self.refusals_told:
            self.refusals_told.add(plan.refused)
            self.on_refusal(plan.refused)
        if plan.canvas <= 0:
            return None
        task = asyncio.ensure_future(self._fill(plan))
        inflight = Inflight.at(uri, text, offset, task, window=(plan.window.start, plan.window.end))
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

    def context_tokens(self) -> int:
        """The user's budget, else the checkpoint's own, else the pipeline's default."""
        return (self.settings.context_tokens or self.model_context_tokens
                or pipeline.DEFAULT_CONTEXT_TOKENS)

    def request(self, doc: Document, text: str, offset: int) -> pipeline.Request:
        s = self.settings
        return pipeline.Request(text, offset, doc.language_id, self.context_tokens(), doc=doc.uri,
                                prefix_share=s.prefix_share, suffix_share=s.suffix_share,
                                canvas_cap=s.canvas_cap, max_steps=s.max_steps,
                                model_languages=self.model_languages, force_languages=s.force_languages,
                                min_confidence=(confidence_gate.THRESHOLD if s.min_confidence is None
                                                else s.min_confidence))

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

    async def _clean_fill(self, request):
        """The fill, with any lone surrogate in its text (a buggy worker or remote) as U+FFFD."""
        reply = await self.fill(request)
        text = without_lone_surrogates(reply.text)
        return reply if text is reply.text else dataclasses.replace(reply, text=text)

    async def _fill(self, plan: pipeline.Plan) -> tuple[str, int] | None:
        """Fill, trim, remember. Runs as its own task, shared by the requests that wait on it."""
        started = time.perf_counter()
        try:
            outcome = await pipeline.finish(plan, self._clean_fill)
        except asyncio.CancelledError:
            # a fill cancelled after running this long says the model takes at least this long
            elapsed = (time.perf_counter() - started) * 1000.0
            self.stats.last_fill_ms = max(self.stats.last_fill_ms or 0.0, elapsed)
            raise
        if outcome.reply.cancelled:
            return None
        self.stats.last_fill_ms = outcome.reply.ms + outcome.reply.queue_ms
        if outcome.trimmed is not None and outcome.trimmed.trace:
            log.debug("trim at %s:%d: %s", plan.request.doc, plan.request.offset,
                      "; ".join(str(cut) for cut in outcome.trimmed.trace))
        r = plan.request
        self.cache.put(r.doc, r.text, r.offset, outcome.text, outcome.replace,
                       window=(plan.window.start, plan.window.end))  # an edit in the model's context misses
        return outcome.text, outcome.replace
