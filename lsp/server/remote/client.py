"""The remote backend: fills from an OpenAI-compatible serving engine (vLLM, NVIDIA NIM) over HTTP.

`RemoteFill` is a `Fill` (lsp/pipeline/fill.py) like the local worker's: the language server, `diffill
complete --backend remote` and the benchmarks hand it to the same pipeline. No worker process and
no torch: the language server speaks HTTP itself, with one keep-alive httpx client.

Each fill is one POST to `{url}/completions` (or `{url}/chat/completions`) with `model`, `prompt`
(or `messages`), `max_tokens` from the span, `stop` and `stream`; never `suffix`, which vLLM
rejects. The prompt is rendered here in the checkpoint's format (lsp/wire/prompt_format.py, the text
the local engine uses), stable text first. Where the server takes them, vLLM's per-request
extensions ride along in `vllm_xargs`: the canvas length from the span and, in the "clamped"
format, a seeded canvas with the suffix's first tokens pinned. A server that rejects them gets the
request once more without, and never again.

- A newer fill for a document aborts the older one by closing its connection (vLLM then stops
  denoising it); at most one request per document and `maxInflight` in all are in flight.
- Streams come one canvas per chunk (the first may be the whole answer); plain JSON works too. A
  chunk with a finish reason ends the fill; a stream that stalls past the deadline keeps what came.
- 429 and 503 are retried with backoff and jitter (Retry-After honoured) within the fill's deadline;
  failures in a row open a circuit breaker (breaker.py). A timeout is "no completion" and a status
  message, never a pop-up; a refused key is one clear message naming `apiKeyEnv`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from urllib.parse import urlsplit

from diffill.lsp.pipeline.complete import DEFAULT_CONTEXT_TOKENS
from diffill.lsp.pipeline.fill import FillReply, FillRequest
from diffill.lsp.server.remote import transport
from diffill.lsp.server.remote.breaker import Breaker
from diffill.lsp.server.remote.config import RemoteSettings
from diffill.lsp.server.remote.tokens import SAMPLE, RemoteTokenCounter, find_tokenizer
from diffill.lsp.server.worker_client import WorkerError
from diffill.lsp.wire import prompt_format as pf

log = logging.getLogger("diffill.remote")

AUTH_HOLD_S = 30.0        # after a refused key, ask again only this much later (or when the settings change)
BACKOFF_S = 0.1           # first retry delay on 429/503, doubled each time, with jitter
MAX_RETRY_AFTER_S = 5.0
DONE_GRACE_S = 0.05       # after a chunk with a finish reason, wait this long for [DONE] (keeps the connection)
MAX_ERROR_BYTES = 64 * 1024
CHAT_MARGIN_TOKENS = 16   # the chat endpoint's answer opens with a code fence the client cannot write itself
_UNPRINTABLE = {c: None for c in list(range(0, 9)) + [11, 12] + list(range(14, 32)) + [127, 0xFFFD]}


class RemoteError(WorkerError):
    """No completion from the remote server; the message (for the status) says why."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind  # config | auth | unreachable | timeout | busy | rejected | protocol | paused


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None, location: str | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after, self.location = status, message, retry_after, location


def _error_message(data: bytes) -> str:
    """The message of an OpenAI-style error body ({"error": {"message"}} or vLLM's {"message"})."""
    try:
        body = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace").strip()[:300]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return str(body)[:300]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, min(MAX_RETRY_AFTER_S, float(value))) if value else None
    except ValueError:
        return None


def _piece(chunk: dict, chat: bool) -> tuple[str, str | None]:
    """(text, finish reason) of one response or stream chunk."""
    if "error" in chunk and not chunk.get("choices"):
        raise RemoteError(f"the server failed: {_error_message(json.dumps(chunk).encode())}", "protocol")
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    c = choices[0]
    if chat:
        part = c.get("delta") or c.get("message") or {}
        text = part.get("content") or ""
    else:
        text = c.get("text") or ""
    return str(text), c.get("finish_reason")


class RemoteFill:
    def __init__(self, settings: RemoteSettings, on_status=None, env=None):
        self.cfg = settings
        self.env = dict(os.environ if env is None else env)
        self.on_status = on_status or (lambda status: None)
        self.counter = RemoteTokenCounter()
        self.breaker = Breaker()
        self.model: str | None = settings.model
        self.format: str | None = None
        self.extensions = settings.vllm_extensions
        self.max_model_len: int | None = None
        self.ready = False
        self.status: dict = {"state": "stopped", "message": f"{self.label}: not connected yet"}
        self.stats: dict = {"requests": 0, "completed": 0, "aborted": 0, "failed": 0, "retries": 0, "timeouts": 0,
                            "partial": 0, "superseded": 0, "paused": 0, "extensions": self.extensions,
                            "last_ms": None, "last_pre_ms": None, "last_post_ms": None, "breaker": "closed"}
        self._key: str | None = None
        self._client = None
        self._start_task: asyncio.Task | None = None
        self._slots: asyncio.Semaphore | None = None
        self._by_doc: dict[str, asyncio.Task] = {}
        self._closed = False

    # ---- identity and status ------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"remote {self.cfg.host} {self.model or '(first model listed)'}"

    def _base(self, path: str) -> str:
        return self.cfg.url.rstrip("/") + path

    def _root(self, path: str) -> str:
        """vLLM's /tokenize and /health live at the server's root, not under /v1."""
        base = self.cfg.url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return base + path

    def _set_status(self, state: str, message: str, **extra) -> None:
        message = transport.redact(message, self._key)
        self.status = {**self.status, "state": state, "message": message, "backend": self.label, **extra}
        self.stats["breaker"] = self.breaker.state
        self.on_status(dict(self.status))

    def _ready_message(self) -> str:
        notes = [self.counter.describe()]
        if self.cfg.insecure_skip_tls_verify and self.cfg.url.startswith("https"):
            notes.append("TLS VERIFICATION IS OFF (remote.insecureSkipTlsVerify)")
        if urlsplit(self.cfg.url).scheme == "http" and self.cfg.allow_insecure_http:
            notes.append("plain http (remote.allowInsecureHttp)")
        return f"{self.label}; " + "; ".join(notes)

    # ---- starting -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect: check the settings, list the models, find the tokenizer. Concurrent callers share one try."""
        if self.ready:
            return
        if self._start_task is None or self._start_task.done():
            self._start_task = asyncio.ensure_future(self._start())
        await asyncio.shield(self._start_task)

    async def _start(self) -> None:
        cfg = self.cfg
        problem = cfg.problem()
        if problem:
            self._set_status("error", problem)
            raise RemoteError(problem, "config")
        try:
            self._key, _ = transport.load_key(cfg, self.env)
        except transport.KeyFileError as exc:
            self._set_status("error", str(exc))
            raise RemoteError(str(exc), "config") from None
        transport.protect(self._key)
        if self._client is None:
            try:
                self._client = transport.make_client(cfg, self._key, self.env)
            except (OSError, ValueError) as exc:
                message = f"remote TLS settings: {exc}"
                self._set_status("error", message)
                raise RemoteError(message, "config") from None
        self._set_status("loading", f"connecting to {cfg.host} ({transport.proxy_label(transport.proxy_for(cfg.url, self.env))})")
        try:
            models = await self._list_models()
        except RemoteError as exc:
            self.breaker.failure(str(exc), hold_s=AUTH_HOLD_S if exc.kind == "auth" else None)
            self._report(exc)
            raise
        if models:
            ids = [m.get("id") for m in models if isinstance(m, dict) and m.get("id")]
            if self.model is None:
                self.model = ids[0] if ids else None
            elif self.model not in ids:
                message = f"{cfg.host} does not serve the model {self.model} (it serves: {', '.join(ids)[:300]})"
                self._set_status("error", message)
                raise RemoteError(message, "config")
            entry = next((m for m in models if m.get("id") == self.model), {})
            if isinstance(entry.get("max_model_len"), int):
                self.max_model_len = entry["max_model_len"]
        if self.model is None:
            message = f"{cfg.host} lists no model; set remote.model"
            self._set_status("error", message)
            raise RemoteError(message, "config")
        path = await asyncio.to_thread(find_tokenizer, cfg.tokenizer, self.model)
        if path:
            await asyncio.to_thread(self.counter.load, path)
        elif cfg.endpoint == "completions":
            await self._calibrate()
        fmt = cfg.prompt_format or ("fim" if self.counter.has_fim_tokens() else "chat")
        self.format = "chat" if cfg.endpoint == "chat" else fmt
        self.ready = True
        self.breaker.success()
        self._set_status("ready", self._ready_message(), tokenizer=self.counter.path,
                         context_tokens=self.context_tokens())

    def context_tokens(self) -> int | None:
        if self.max_model_len is None:
            return None
        # room for the instruction, the canvas and the chained canvases the server may add
        return max(64, min(DEFAULT_CONTEXT_TOKENS, self.max_model_len - 1024))

    async def _list_models(self) -> list[dict]:
        try:
            resp = await self._client.get(self._base("/models"))
        except Exception as exc:
            raise self._transport_error(exc) from None
        if resp.status_code == 200:
            try:
                data = resp.json().get("data") or []
            except (ValueError, AttributeError):
                data = []
            return [m for m in data if isinstance(m, dict)]
        err = self._http_error(resp.status_code, resp.content, resp.headers)
        if self.model and err.status == 404:
            return []  # a server without /models: the configured model is taken on trust
        raise self._classify(err, "/models")

    async def _calibrate(self) -> None:
        """Measure characters per token with the server's /tokenize (vLLM); any failure keeps the estimate."""
        try:
            resp = await self._client.post(self._root("/tokenize"),
                                           json={"model": self.model, "prompt": SAMPLE, "add_special_tokens": False},
                                           timeout=self.cfg.connect_timeout_ms / 1000.0 + 1.0)
            if resp.status_code == 200:
                body = resp.json()
                count = body.get("count") or len(body.get("tokens") or [])
                self.counter.calibrate(len(SAMPLE), int(count))
                if self.max_model_len is None and isinstance(body.get("max_model_len"), int):
                    self.max_model_len = body["max_model_len"]
        except Exception as exc:
            log.debug("no /tokenize at %s: %s", self.cfg.host, type(exc).__name__)

    async def _tokenize(self, text: str) -> list[int] | None:
        ids = self.counter.encode(text)
        if ids is not None:
            return ids
        try:
            resp = await self._client.post(self._root("/tokenize"), json={"model": self.model, "prompt": text,
                                                                          "add_special_tokens": False})
            if resp.status_code == 200:
                return [int(t) for t in resp.json().get("tokens") or []]
        except Exception:
            pass
        return None

    # ---- the fill -------------------------------------------------------------------------------
    async def fill(self, request: FillRequest) -> FillReply:
        """The server's `Fill`. Cancelling the calling task aborts the HTTP request (its connection is closed)."""
        called = time.perf_counter()
        me = asyncio.current_task()
        prev = self._by_doc.get(request.doc)
        if prev is not None and prev is not me and not prev.done():
            prev.cancel()  # one request per document: the older one is aborted
            self.stats["superseded"] += 1
            await asyncio.wait([prev])
        self._by_doc[request.doc] = me
        try:
            return await self._fill(request, called)
        finally:
            if self._by_doc.get(request.doc) is me:
                del self._by_doc[request.doc]

    async def _fill(self, r: FillRequest, called: float) -> FillReply:
        cfg = self.cfg
        deadline = called + cfg.timeout_ms / 1000.0
        if not self.breaker.allow():
            self.stats["paused"] += 1
            raise RemoteError(f"{self.label}: paused after failures ({self.breaker.reason})", "paused")
        probing = self.breaker.probing
        try:
            if not self.ready:
                await self.start()
            if self._slots is None:
                self._slots = asyncio.Semaphore(cfg.max_inflight)
            try:
                await asyncio.wait_for(self._slots.acquire(), max(0.001, deadline - time.perf_counter()))
            except asyncio.TimeoutError:
                raise RemoteError(f"{self.label}: {cfg.max_inflight} requests already in flight", "busy") from None
        except BaseException:
            if probing:
                self.breaker.release_probe()
            raise
        queue_ms = (time.perf_counter() - called) * 1000.0
        try:
            return await self._send_fill(r, called, deadline, queue_ms)
        except asyncio.CancelledError:
            if probing:
                self.breaker.release_probe()
            raise
        finally:
            self._slots.release()

    async def _send_fill(self, r: FillRequest, called: float, deadline: float, queue_ms: float) -> FillReply:
        path, body, finish = await self._render(r)
        attempt, without_extensions, fresh_connection = 0, False, False
        while True:
            sent_at = time.perf_counter()
            try:
                text, partial, timeline = await self._post(path, body, deadline, called)
                break
            except _HTTPError as err:
                if err.status == 400 and "vllm_xargs" in body and not without_extensions:
                    # an older vLLM, or another engine, that does not take the extensions: once more without
                    without_extensions, rejected = True, err.message
                    body = {k: v for k, v in body.items() if k != "vllm_xargs"}
                    continue
                if err.status in (429, 503) and attempt < self.cfg.retries:
                    delay = err.retry_after if err.retry_after is not None else BACKOFF_S * 2 ** attempt
                    delay *= random.uniform(0.5, 1.5)
                    if time.perf_counter() + delay < deadline - 0.05:
                        attempt += 1
                        self.stats["retries"] += 1
                        await asyncio.sleep(delay)
                        continue
                exc = self._classify(err, path)
                self._fail(exc)
                raise exc from None
            except RemoteError as exc:
                if exc.kind == "stale" and not fresh_connection and time.perf_counter() < deadline - 0.05:
                    fresh_connection = True  # a keep-alive connection the server had just closed: once more
                    continue
                self._fail(exc)
                raise
        if without_extensions:
            self.extensions = self.stats["extensions"] = False
            log.info("%s rejects vllm_xargs (%s); they stay off for it", self.cfg.host, rejected)
        self.breaker.success()
        text = finish(text.translate(_UNPRINTABLE))
        done = time.perf_counter()
        http_ms = (timeline.get("last_byte", done) - sent_at) * 1000.0
        self.stats["completed"] += 1
        self.stats["partial"] += partial
        self.stats["last_ms"] = round(http_ms, 2)
        self.stats["last_pre_ms"] = timeline.get("pre_ms")
        if timeline.get("last_byte") is not None:
            self.stats["last_post_ms"] = round((done - timeline["last_byte"]) * 1000.0, 3)
        message = self._ready_message() + ("; the last answer was cut at the deadline" if partial else "")
        self._set_status("ready", message, last_ms=round(http_ms, 1))
        return FillReply(text, 0, http_ms, False, queue_ms=queue_ms)

    def _fail(self, exc: RemoteError) -> None:
        self.stats["failed"] += 1
        if exc.kind == "timeout":
            self.stats["timeouts"] += 1
        if exc.kind in ("timeout", "unreachable", "protocol", "stale", "busy", "auth", "server"):
            self.breaker.failure(str(exc), hold_s=AUTH_HOLD_S if exc.kind == "auth" else None)
        else:
            self.breaker.success()  # it answered: the server is there, the request was wrong
        self._report(exc)

    def _report(self, exc: RemoteError) -> None:
        """The status for a failure: an error (shown once) where the user must act, else a quiet note."""
        message = str(exc)
        if exc.kind in ("auth", "config", "unreachable", "redirect", "not-found"):
            self._set_status("error", message)
        else:
            if self.breaker.state != "closed":
                message += "; pausing requests for a moment"
            # never an error (and so never a pop-up) for timeouts and a busy server
            self._set_status("ready" if self.ready else "loading", f"no completion: {message}")

    # ---- rendering ------------------------------------------------------------------------------
    async def _render(self, r: FillRequest):
        """(path, body, finish): the POST for this fill and what turns the answer into the middle."""
        canvas = max(1, int(r.canvas_length))
        body: dict = {"model": self.model}
        xargs: dict = {}
        if self.extensions:
            xargs["diffusion_canvas_length"] = canvas
            if r.max_steps:
                xargs["diffusion_max_steps"] = int(r.max_steps)
        if self.cfg.endpoint == "chat":
            c = pf.chat_pieces(r.prefix, r.suffix, r.language)
            body["messages"] = [{"role": "user", "content": c.instruction()}]
            body["max_tokens"] = canvas + CHAT_MARGIN_TOKENS
            xargs.pop("diffusion_canvas_length", None)  # the fence and any repeated line need room
            finish = lambda text: pf.chat_answer(text, r.prefix)  # noqa: E731
            path = "/chat/completions"
        else:
            path = "/completions"
            body["max_tokens"] = canvas
            if self.format == "fim":
                body["prompt"] = pf.fim_text(r.prefix, r.suffix)
                finish = lambda text: text  # noqa: E731
            elif self.format == "clamped":
                body["prompt"] = r.prefix
                pinned_text = await self._pin(r, canvas, xargs)
                finish = lambda text: text[: text.rfind(pinned_text)] if pinned_text and pinned_text in text else text  # noqa: E731
            else:
                body["prompt"] = pf.chat_text(r.prefix, r.suffix, r.language)
                body["stop"] = list(pf.CHAT_STOPS)
                finish = pf.cut_at_stops
        body["stream"] = bool(self.cfg.stream)
        if xargs:
            body["vllm_xargs"] = xargs
        return path, body, finish

    async def _pin(self, r: FillRequest, canvas: int, xargs: dict) -> str:
        """A seeded canvas with the suffix's first tokens pinned at its end (format "clamped"); the
        pinned text, or "" when there is nothing to pin or the server takes no extensions."""
        if not self.extensions or not r.suffix.strip():
            return ""
        head = r.suffix[: canvas * 8]
        ids = await self._tokenize(head)
        if not ids:
            return ""
        pins = ids[: max(1, canvas // 4)]
        middle = canvas - len(pins)
        vocab = self.counter.vocab_size()
        rng = random.Random(r.seed)
        pool = None if vocab else (await self._tokenize(r.prefix[-2000:]) or pins)
        noise = [rng.randrange(5, vocab) if vocab else rng.choice(pool) for _ in range(middle)]
        xargs["diffusion_seed_canvas"] = noise + pins
        xargs["diffusion_pinned"] = list(range(middle, canvas))
        offsets = self.counter.offsets(head) if self.counter.path else None
        if offsets and len(offsets) > len(pins):
            return head[: offsets[len(pins)]]
        return head if len(ids) <= len(pins) else ""

    # ---- one POST -------------------------------------------------------------------------------
    async def _post(self, path: str, body: dict, deadline: float, called: float) -> tuple[str, bool, dict]:
        """(text, cut at the deadline, timeline) of one POST. Cancelling the caller aborts it.

        The exchange runs as its own task, cancelled exactly once on abort: httpcore closes the
        connection in a shielded step, and a second cancel arriving meanwhile (the completer and a newer
        fill may both cancel) would interrupt that close and leave the server denoising for nobody."""
        inner = asyncio.ensure_future(self._exchange(path, body, deadline, called))
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            if not inner.done():
                inner.cancel()
                while not inner.done():
                    try:
                        await asyncio.shield(inner)
                    except BaseException:  # its own cancellation, or ours again: wait for the close
                        pass
            if not inner.cancelled():
                inner.exception()  # retrieved; the abort is what counts
            raise

    async def _exchange(self, path: str, body: dict, deadline: float, called: float) -> tuple[str, bool, dict]:
        import httpx

        timeline: dict = {}

        async def trace(event: str, info: dict) -> None:
            if event == "http11.send_request_body.complete":
                timeline["sent"] = time.perf_counter()
                timeline["pre_ms"] = round((timeline["sent"] - called) * 1000.0, 3)

        chat = path.startswith("/chat")
        parts: list[str] = []
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise RemoteError(f"{self.label}: no time left for the request", "timeout")
        self.stats["requests"] += 1
        sent = answered = False
        try:
            async with asyncio.timeout(remaining):
                sent = True
                async with self._client.stream("POST", self._base(path), json=body,
                                               extensions={"trace": trace}) as resp:
                    answered = True
                    if resp.status_code != 200:
                        data = await resp.aread()
                        raise self._http_error(resp.status_code, data[:MAX_ERROR_BYTES], resp.headers)
                    if "text/event-stream" in resp.headers.get("content-type", ""):
                        await self._read_stream(resp, parts, chat, timeline)
                    else:
                        data = await resp.aread()
                        timeline["last_byte"] = time.perf_counter()
                        try:
                            text, _ = _piece(json.loads(data), chat)
                        except ValueError:
                            raise RemoteError(f"{self.label}: the answer is not JSON", "protocol") from None
                        parts.append(text)
        except TimeoutError:
            if parts:
                timeline.setdefault("last_byte", time.perf_counter())
                return "".join(parts), True, timeline  # a stalled stream: keep what came
            raise RemoteError(f"{self.label}: the server did not answer within "
                              f"{self.cfg.timeout_ms / 1000:g} s", "timeout") from None
        except asyncio.CancelledError:
            if sent:
                self.stats["aborted"] += 1
            raise
        except (_HTTPError, RemoteError):
            raise
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, answered) from None
        return "".join(parts), False, timeline

    async def _read_stream(self, resp, parts: list[str], chat: bool, timeline: dict) -> None:
        """Server-sent events up to [DONE]; a chunk with a finish reason is the last that matters."""
        data_lines: list[str] = []
        lines = resp.aiter_lines()
        finished = False
        while True:
            try:
                if finished:
                    async with asyncio.timeout(DONE_GRACE_S):
                        line = await anext(lines)
                else:
                    line = await anext(lines)
            except (StopAsyncIteration, TimeoutError):
                break
            if line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
                continue
            if line.strip() or not data_lines:
                continue  # comments, other fields
            data, data_lines = "\n".join(data_lines), []
            if data.strip() == "[DONE]":
                finished = True  # read on to the end of the body, so the connection stays open for the next fill
                continue
            try:
                chunk = json.loads(data)
            except ValueError:
                raise RemoteError(f"{self.label}: a stream event is not JSON", "protocol") from None
            text, reason = _piece(chunk, chat)
            parts.append(text)
            timeline["last_byte"] = time.perf_counter()
            if reason is not None:
                finished = True
        if data_lines and not finished and "\n".join(data_lines).strip() != "[DONE]":
            try:
                parts.append(_piece(json.loads("\n".join(data_lines)), chat)[0])
            except ValueError:
                pass
        timeline.setdefault("last_byte", time.perf_counter())

    # ---- errors ---------------------------------------------------------------------------------
    def _http_error(self, status: int, data: bytes, headers) -> _HTTPError:
        return _HTTPError(status, transport.redact(_error_message(data), self._key),
                          _retry_after(headers.get("retry-after")), headers.get("location"))

    def _classify(self, err: _HTTPError, path: str) -> RemoteError:
        cfg, host = self.cfg, self.cfg.host
        if err.status in (401, 403):
            if self._key:
                msg = (f"{host} refused the key ({err.status}): set the environment variable {cfg.api_key_env} "
                       f"to a key this server accepts, then restart the server")
            else:
                msg = (f"{host} needs a key ({err.status}): set the environment variable {cfg.api_key_env} "
                       f"(or remote.apiKeyFile), then restart the server")
            return RemoteError(msg, "auth")
        if 300 <= err.status < 400:
            where = urlsplit(err.location or "").hostname or "another address"
            return RemoteError(f"{host} redirects {path} to {where}; redirects are not followed (the key goes to "
                               f"the configured host only): set remote.url to the final address", "redirect")
        if err.status == 404:
            hint = (' (hosted NIM serves chat only: set remote.endpoint to "chat")' if path == "/completions"
                    else " (is remote.url the OpenAI-compatible base URL, ending in /v1?)")
            return RemoteError(f"{cfg.url.rstrip('/')}{path} does not exist (404){hint}", "not-found")
        if err.status in (429, 503):
            return RemoteError(f"{host} is busy ({err.status}: {err.message})", "busy")
        if err.status >= 500:
            return RemoteError(f"{host} failed ({err.status}: {err.message})", "server")
        return RemoteError(f"{host} rejected the request ({err.status}: {err.message})", "rejected")

    def _transport_error(self, exc: Exception, answered: bool = True) -> RemoteError:
        """The RemoteError for an httpx transport failure. `answered`: a response head had arrived.
        A connection that fails before any answer (closed, or reset as the request went out) is
        "stale": a keep-alive connection the server or a proxy dropped just then."""
        import httpx

        host = self.cfg.host
        reason = transport.redact(str(exc) or type(exc).__name__, self._key)
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(f"cannot reach {host} within {self.cfg.connect_timeout_ms} ms", "timeout")
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
            return RemoteError(f"{self.label}: the server did not answer in time", "timeout")
        if isinstance(exc, httpx.ConnectError):
            if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
                return RemoteError(f"the certificate of {host} is not trusted ({reason}); set remote.caBundle to "
                                   f"the PEM file of its authority", "config")
            return RemoteError(f"cannot reach {host} ({reason})", "unreachable")
        if isinstance(exc, httpx.RemoteProtocolError) and "without sending a response" in reason:
            return RemoteError(f"{host} closed the connection before answering", "stale")
        if isinstance(exc, (httpx.ReadError, httpx.WriteError)) and not answered:
            return RemoteError(f"{host} reset the connection before answering ({type(exc).__name__})", "stale")
        if isinstance(exc, httpx.ProxyError):
            return RemoteError(f"the proxy refused the connection to {host} ({reason})", "unreachable")
        return RemoteError(f"{self.label}: {type(exc).__name__}: {reason}", "protocol")

    # ---- stopping -------------------------------------------------------------------------------
    async def close(self) -> None:
        self._closed = True
        for task in list(self._by_doc.values()):
            task.cancel()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
