"""The diffill language server (pygls 2): thin handlers over plain modules.

    diffill serve                 over stdin/stdout
    diffill serve --tcp PORT      on 127.0.0.1:PORT (for debugging)
    diffill serve --check         validate the settings and the model, print a report

Each handler gets the document, calls one function (documents.py, completion.py, settings.py),
and converts the answer to LSP types. Positions are converted in positions.py, in the encoding
negotiated at initialize. This process never imports torch: the model lives in the worker.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time

from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder
from pygls.lsp.server import LanguageServer

from diffill.lsp.pipeline.windows import ContextWindows
from diffill.lsp.server import positions
from diffill.lsp.server import settings as settings_mod
from diffill.lsp.server.completer import Completer, Completion
from diffill.lsp.server.documents import DocumentStore
from diffill.lsp.server.protocol import DiffillProtocol, serve_stdio
from diffill.lsp.server.remote.client import RemoteFill
from diffill.lsp.server.worker_client import WorkerClient, WorkerError, socket_path_for, worker_command

VERSION = "0.1.0"
STATUS = "diffill/status"
STATS = "diffill/stats"
log = logging.getLogger("diffill")


class DiffillServer(LanguageServer):
    def __init__(self):
        super().__init__("diffill", VERSION, protocol_cls=DiffillProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings = settings_mod.DEFAULTS
        self.documents = DocumentStore()
        self.worker = WorkerClient(self.settings, self._on_worker_status, self._on_worker_progress)
        self.completer = Completer(self.settings, self.worker.fill, self._on_refusal)
        self.remote: RemoteFill | None = None  # the fill when settings.backend is "remote" (no worker then)
        self.progress_token: str | None = None
        self.progress_state: dict = {}
        self.shown_error: str | None = None
        self.last_status: dict | None = None  # the last diffill/status sent
        self.supports_progress = False

    def report_server_error(self, error, source):
        log.error("%s", error)  # malformed traffic is logged, not shown to the user

    def start_io(self, stdin=None, stdout=None):
        """Serve stdio with our reader (lsp/server/protocol.py); the exit status is in `exit_code`."""
        self.exit_code = serve_stdio(self, stdin, stdout)

    # -- settings --
    def apply_settings(self, raw, *, initial: bool = False) -> None:
        new, problems = settings_mod.parse(raw, settings_mod.DEFAULTS if initial else self.settings)
        if problems:
            self.window_show_message(types.ShowMessageParams(
                types.MessageType.Warning, "diffill: " + "; ".join(problems)))
        old, restart = self.settings, new.worker_key() != self.settings.worker_key()
        self.settings = new
        self.completer.configure(new)
        switched = self._use_backend(old, new, initial)
        if not initial and (switched or (restart and new.backend == "local")):
            asyncio.ensure_future(self._restart_worker())

    def _use_backend(self, old, new, initial: bool) -> bool:
        """Put the worker's fill or a remote server's behind the completer; True when it changed."""
        if new.backend == "remote":
            if self.remote is not None and old.backend == "remote" and old.remote == new.remote:
                return False
            if self.remote is not None:
                asyncio.ensure_future(self.remote.close())
            elif not initial:
                asyncio.ensure_future(self.worker.close())
            self.remote = RemoteFill(new.remote, self._on_worker_status)
            self.completer.fill = self.remote.fill
            self.completer.windows = ContextWindows(self.remote.counter)
            return True
        if self.remote is None:
            return False
        asyncio.ensure_future(self.remote.close())
        self.remote = None
        self.completer.fill = self.worker.fill
        self.completer.windows = ContextWindows()
        return True

    async def _restart_worker(self) -> None:
        if self.settings.backend == "local" and not await self.worker.restart(self.settings):
            return  # a newer settings change superseded this restart: it starts the worker
        if self.settings.preload:
            await self.start_worker()

    async def start_worker(self) -> None:
        try:
            await (self.remote.start() if self.remote is not None else self.worker.start())
        except WorkerError:  # RemoteError is one
            pass  # the status (and one message) already told the user

    # -- status and progress --
    def _on_worker_status(self, status: dict) -> None:
        state = status.get("state", "error")
        message = str(status.get("message") or "")
        if state == "stopped":
            state, message = "ready", "the model worker is stopped; it starts again at the next completion"
        latency = status.get("last_ms")
        if latency is not None and self.completer.stats.last_fill_ms is None:
            self.completer.stats.last_fill_ms = float(latency)  # what the (shared) worker takes
        # slow_reason: the last fill was slow because the machine was busy; model: what the worker
        # serves (a folder, a hub snapshot, or fixed answers)
        shown = {"state": state, "message": message, "latency_ms": latency,
                 "slow_reason": status.get("slow_reason"), "model": status.get("model")}
        if shown != self.last_status:
            self.last_status = shown
            self.protocol.notify(STATUS, shown)
        if state == "error" and message != self.shown_error:
            self.shown_error = message
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"diffill: {message}"))
        if state in ("ready", "busy", "error"):
            if state != "error":
                self.shown_error = None
                self.completer.windows.counter.load(status.get("tokenizer"))
                self.completer.model_context_tokens = status.get("context_tokens")
                self.completer.model_languages = tuple(status.get("languages") or ()) or None
            self._end_progress(message)

    def _on_refusal(self, reason: str) -> None:
        """A gate refused completions for a reason the user should know (once per reason)."""
        log.info("%s", reason)
        last = self.last_status or {"latency_ms": None, "slow_reason": None, "model": None}
        self.protocol.notify(STATUS, {**last, "state": "ready", "message": reason})

    def _on_worker_progress(self, percent: int, message: str) -> None:
        """Model load progress as `$/progress`: the token is created first, and begin/report are
        sent once the client has answered (what happened meanwhile is folded into them)."""
        if not self.supports_progress:
            return
        if self.progress_token is None:
            if percent >= 100:
                return
            token = self.progress_token = f"diffill-load-{time.monotonic_ns()}"
            self.progress_state = {"created": False, "percent": percent, "message": message, "end": None}

            def created(*_):
                state = self.progress_state
                state["created"] = True
                self.work_done_progress.begin(token, types.WorkDoneProgressBegin(
                    title="diffill: loading the model", message=state["message"], percentage=state["percent"],
                    cancellable=False))
                if state["end"] is not None:
                    self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=state["end"]))

            self.work_done_progress.create(token, callback=created)
            return
        self.progress_state.update(percent=percent, message=message)
        if self.progress_state["created"]:
            self.work_done_progress.report(self.progress_token, types.WorkDoneProgressReport(
                message=message, percentage=percent))

    def _end_progress(self, message: str) -> None:
        if self.progress_token is None:
            return
        token, self.progress_token = self.progress_token, None
        if self.progress_state["created"]:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        else:
            self.progress_state["end"] = message  # sent right after begin, once the token exists


server = DiffillServer()


# ---- lifecycle ---------------------------------------------------------------------------------

@server.feature(types.INITIALIZE)
def initialize(ls: DiffillServer, params: types.InitializeParams) -> None:
    encoding = ServerCapabilitiesBuilder.choose_position_encoding(params.capabilities)
    ls.documents = DocumentStore(positions.normalize_encoding(encoding))
    window = params.capabilities.window
    ls.supports_progress = bool(window and window.work_done_progress)
    ls.apply_settings(params.initialization_options, initial=True)
    ls.worker.settings = ls.settings
    text_caps = params.capabilities.text_document
    no_inline = text_caps is None or text_caps.inline_completion is None
    if no_inline and types.TEXT_DOCUMENT_COMPLETION not in ls.protocol.fm.features:
        # clients without inline completion get the completion as an ordinary completion item
        ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())(completion)


@server.feature(types.INITIALIZED)
async def initialized(ls: DiffillServer, params: types.InitializedParams) -> None:
    if ls.settings.preload:
        await ls.start_worker()


@server.feature(types.SHUTDOWN)
async def shutdown(ls: DiffillServer, params) -> None:
    if ls.remote is not None:
        await ls.remote.close()
    await ls.worker.close()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: DiffillServer, params: types.DidChangeConfigurationParams) -> None:
    ls.apply_settings(params.settings)


# ---- documents ---------------------------------------------------------------------------------

@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: DiffillServer, params: types.DidOpenTextDocumentParams) -> None:
    d = params.text_document
    ls.completer.forget(d.uri)
    ls.documents.open(d.uri, d.language_id, d.version, d.text)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: DiffillServer, params: types.DidChangeTextDocumentParams) -> None:
    if ls.documents.change(params.text_document.uri, params.text_document.version, params.content_changes):
        ls.completer.note_edit(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: DiffillServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.documents.close(params.text_document.uri)
    ls.completer.forget(params.text_document.uri)


# ---- completions -------------------------------------------------------------------------------

async def _complete(ls: DiffillServer, uri: str, position: types.Position) -> tuple[Completion, types.Range] | None:
    doc = ls.documents.get(uri)
    if doc is None:
        return None
    try:
        found = await ls.completer.complete(doc, position.line, position.character)
    except WorkerError:
        return None  # the status notification and one message tell the user what happened
    except asyncio.CancelledError:
        raise
    except Exception:  # a bug must cost this completion, not answer the editor with a traceback
        log.exception("completion at %s:%d:%d failed", uri, position.line, position.character)
        return None
    if found is None:
        return None
    start = doc.position_at(found.offset)
    end = positions.Position(start.line, start.character + positions.length_in_units(
        doc.text[found.offset : found.offset + found.replace], doc.encoding))
    rng = types.Range(types.Position(start.line, start.character), types.Position(end.line, end.character))
    return found, rng


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: DiffillServer, params: types.InlineCompletionParams):
    found = await _complete(ls, params.text_document.uri, params.position)
    if found is None:
        return None
    completion_, rng = found
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=completion_.text, range=rng)])


async def completion(ls: DiffillServer, params: types.CompletionParams):
    found = await _complete(ls, params.text_document.uri, params.position)
    if found is None:
        return types.CompletionList(is_incomplete=True, items=[])
    completion_, rng = found
    first_line = completion_.text.strip().splitlines()[0] if completion_.text.strip() else completion_.text
    item = types.CompletionItem(
        label=first_line[:80], kind=types.CompletionItemKind.Text, detail="diffill",
        text_edit=types.TextEdit(range=rng, new_text=completion_.text),
        insert_text_format=types.InsertTextFormat.PlainText, filter_text=completion_.text, sort_text="0",
        documentation=completion_.text,
    )
    return types.CompletionList(is_incomplete=True, items=[item])


@server.feature(STATS)
def stats(ls: DiffillServer, params) -> dict:
    """Counters for benchmarks and tests: requests, cache hits, fills, wasted steps, the worker's status."""
    s = ls.completer.stats
    return {"requests": s.requests, "answered": s.answered, "cache_hits": s.cache_hits, "shared": s.shared,
            "superseded": s.superseded, "model_fills": s.model_fills, "empty": s.empty,
            "last_server_ms": s.last_server_ms, "last_source": s.last_source, "last_fill_ms": s.last_fill_ms,
            "recent_server_ms": s.recent_server_ms, "inflight": len(ls.completer.inflight),
            "cache_entries": len(ls.completer.cache), "documents": len(ls.documents),
            "lsp_futures": len(ls.protocol._request_futures),
            "worker": {**ls.worker.stats, "status": ls.worker.status, "pending": len(ls.worker._pending),
                       "log": ls.worker.log_path},
            "remote": {**ls.remote.stats, "status": ls.remote.status} if ls.remote is not None else None}
