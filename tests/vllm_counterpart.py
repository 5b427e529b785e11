"""A stand-in for `vllm serve google/diffusiongemma-26B-A4B-it` that behaves as vLLM documents it.

    python tests/vllm_counterpart.py --port 8000 --latency-ms 150 [--api-key-env VAR] [--tls-dir DIR]

No real vLLM starts on machines without a GPU, so tests and benchmarks talk to this server instead.
What it does as vLLM does (shared facts in docs/remote.md):
- `GET /v1/models` (with max_model_len), `GET /health`, `POST /tokenize` at the root (one token per
  TOKEN_CHARS characters here), `POST /v1/completions` and `POST /v1/chat/completions`.
- 400 "suffix is not currently supported" when a completion request has `suffix`; 400 on
  `vllm_xargs` keys it does not know (switchable: `strict_xargs`, `known_xargs`).
- Diffusion timing: every canvas takes `latency_ms`; a stream sends one SSE chunk per canvas (an
  answer shorter than a canvas is one event, with its finish reason), then `data: [DONE]`.
  `max_tokens`, `stop` and `diffusion_canvas_length` are honoured; `stream: false` gives one JSON body.
- Bearer keys (401), scripted 429/503 (with Retry-After), a slow first byte, a stalled stream, a
  redirect, a chat-only mode (hosted NIM: 404 on /v1/completions), TLS with a certificate made by
  `make_certificates` (the openssl command line).
- A record of every request (headers, body, arrival, first and last byte) and of every client
  disconnect before the answer was complete (an abort: vLLM stops denoising then).

`Counterpart(...)` runs it on its own event loop in a thread; `Proxy` is an HTTP forward proxy
(CONNECT and absolute-form) that records what passes through it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

TOKEN_CHARS = 4
MODEL = "google/diffusiongemma-26B-A4B-it"
KNOWN_XARGS = frozenset({"diffusion_canvas_length", "diffusion_max_steps", "diffusion_seed_canvas",
                         "diffusion_pinned", "diffusion_read_only"})
CURSOR, FIM_SUFFIX = "<|cursor|>", "<|fim_suffix|>"
REASONS = {200: "OK", 307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Record:
    method: str
    path: str
    headers: dict
    body: object
    arrived: float                   # time.monotonic() when the request was read
    status: int | None = None
    first_byte: float | None = None  # response head written
    done: float | None = None        # last byte written
    disconnected: bool = False       # the client closed the connection before the answer was complete
    peer: str = ""


@dataclass
class Behaviour:
    """What the server does; tests change it while it runs."""

    model: str = MODEL
    max_model_len: int = 32768
    canvas: int = 256                        # the served canvas width, in tokens
    latency_ms: float = 0.0                  # per canvas
    first_byte_ms: float = 0.0               # before the response head
    api_key: str | None = None               # Bearer key required when set
    strict_xargs: bool = True                # 400 on unknown vllm_xargs keys
    known_xargs: frozenset = KNOWN_XARGS
    stall_after_first_chunk: bool = False    # send one chunk, then nothing until the client leaves
    stall_first_chunk_finishes: bool = False  # ... and that chunk carries the finish reason
    chat_only: bool = False                  # hosted NIM: no /v1/completions
    tokenize: bool = True
    chat_fence: bool = True                  # chat answers come wrapped in a code fence, as a chat model writes them
    redirect_to: str | None = None           # answer completions with a 307 to this URL
    drop_requests: int = 0                   # close the connection on this many completion requests, unanswered
    reset_requests: int = 0                  # ... reset it (RST, as a proxy that closes with unread data does)
    script: list = field(default_factory=list)  # (status, headers, message) for the next completion requests
    answers: dict = field(default_factory=dict)  # text before the cursor ends with key -> answer
    default_answer: str = "pass"
    answer: Callable[[dict], str] | None = None
    complete_line: str | None = None         # answer the rest of this line after what was typed of it


def _before_cursor(body: dict, chat: bool) -> str:
    if chat:
        messages = body.get("messages") or [{}]
        return str(messages[-1].get("content") or "").rsplit(CURSOR, 1)[0]
    prompt = str(body.get("prompt") or "")
    return prompt.split(FIM_SUFFIX)[0] if FIM_SUFFIX in prompt else prompt


class Server:
    def __init__(self, behaviour: Behaviour | None = None):
        self.b = behaviour or Behaviour()
        self.records: list[Record] = []
        self.disconnects = 0
        self.connections = 0

    # ---- answers ----------------------------------------------------------------------------
    def _answer(self, body: dict, chat: bool) -> str:
        if self.b.answer is not None:
            return self.b.answer(body)
        before = _before_cursor(body, chat)
        if self.b.complete_line is not None:
            line = self.b.complete_line
            typed = next((k for k in range(len(line), 0, -1) if before.endswith(line[:k])), 0)
            return line[typed:]
        best = None
        for key, text in self.b.answers.items():
            if before.endswith(key) and (best is None or len(key) > len(best[0])):
                best = (key, text)
        return best[1] if best else self.b.default_answer

    # ---- one connection ---------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = writer.get_extra_info("peername")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = await reader.readline()
                    if not h or h in (b"\r\n", b"\n"):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                rec = Record(method, target, headers, body, time.monotonic(), peer=str(peer))
                self.records.append(rec)
                keep = await self._route(rec, reader, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, ssl.SSLError):
            return
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _route(self, rec: Record, reader, writer) -> bool:
        b = self.b
        path = rec.path.split("?")[0]
        if path == "/health":
            return await self._json(rec, writer, 200, None)
        if path == "/_counterpart/records":  # not vLLM's: what a benchmark in another process reads
            return await self._json(rec, writer, 200, [
                {k: getattr(r, k) for k in ("method", "path", "arrived", "status", "first_byte", "done", "disconnected")}
                for r in self.records if not r.path.startswith("/_counterpart")])
        if b.api_key is not None and rec.headers.get("authorization") != f"Bearer {b.api_key}":
            return await self._error(rec, writer, 401, "Unauthorized", "AuthenticationError")
        if path == "/tokenize" and rec.method == "POST":
            if not b.tokenize:
                return await self._error(rec, writer, 404, "Not Found")
            text = str((rec.body or {}).get("prompt") or "")
            tokens = [sum(map(ord, text[i:i + TOKEN_CHARS])) % 250000 + 5 for i in range(0, len(text), TOKEN_CHARS)]
            return await self._json(rec, writer, 200, {"count": len(tokens), "max_model_len": b.max_model_len,
                                                       "tokens": tokens, "token_strs": None})
        if path == "/v1/models" and rec.method == "GET":
            return await self._json(rec, writer, 200, {"object": "list", "data": [
                {"id": b.model, "object": "model", "created": 0, "owned_by": "vllm", "root": b.model,
                 "parent": None, "max_model_len": b.max_model_len, "permission": []}]})
        chat = path == "/v1/chat/completions"
        if rec.method != "POST" or path not in ("/v1/completions", "/v1/chat/completions") or (b.chat_only and not chat):
            return await self._error(rec, writer, 404, "Not Found")
        return await self._complete(rec, reader, writer, chat)

    async def _complete(self, rec: Record, reader, writer, chat: bool) -> bool:
        b, body = self.b, rec.body if isinstance(rec.body, dict) else {}
        if b.redirect_to:
            return await self._send(rec, writer, 307, b"", "text/plain", {"location": b.redirect_to})
        if b.drop_requests > 0:  # as a server does that closes an idle keep-alive connection as a request comes in
            b.drop_requests -= 1
            return False
        if b.reset_requests > 0:
            b.reset_requests -= 1
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if b.script:
            status, headers, message = b.script.pop(0)
            return await self._error(rec, writer, status, message, extra=headers)
        if not chat and "suffix" in body:
            return await self._error(rec, writer, 400, "suffix is not currently supported")
        if body.get("model") != b.model:
            return await self._error(rec, writer, 404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        xargs = body.get("vllm_xargs") or {}
        unknown = sorted(set(xargs) - set(b.known_xargs))
        if b.strict_xargs and unknown:
            return await self._error(rec, writer, 400, f"Unknown vllm_xargs: {', '.join(unknown)}")
        canvas = int(xargs.get("diffusion_canvas_length") or b.canvas) if "diffusion_canvas_length" in b.known_xargs else b.canvas
        if canvas > b.canvas:
            return await self._error(rec, writer, 400, f"diffusion_canvas_length {canvas} exceeds the served {b.canvas}")
        text = self._answer(body, chat)
        if chat and b.chat_fence:
            text = "```\n" + text + "\n```"
        limit = int(body.get("max_tokens") or 16) * TOKEN_CHARS
        reason = "length" if len(text) > limit else "stop"
        text = text[:limit]
        for stop in body.get("stop") or []:
            cut = text.find(stop)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        step = canvas * TOKEN_CHARS
        pieces = [text[i:i + step] for i in range(0, len(text), step)] or [""]
        if b.first_byte_ms and not await self._wait(reader, b.first_byte_ms / 1000.0, rec):
            return False
        if not body.get("stream"):
            if not await self._wait(reader, b.latency_ms * len(pieces) / 1000.0, rec):
                return False
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
                      if chat else {"index": 0, "text": text, "logprobs": None, "finish_reason": reason,
                                    "stop_reason": None})
            return await self._json(rec, writer, 200, {
                "id": "cmpl-1", "object": "chat.completion" if chat else "text_completion", "created": 0,
                "model": b.model, "choices": [choice],
                "usage": {"prompt_tokens": 0, "completion_tokens": len(text) // TOKEN_CHARS}})
        try:
            rec.status, rec.first_byte = 200, time.monotonic()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                         b"transfer-encoding: chunked\r\n\r\n")
            if chat:
                await self._event(writer, {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                        "finish_reason": None}]})
            for i, piece in enumerate(pieces):
                if not await self._wait(reader, b.latency_ms / 1000.0, rec):
                    return False
                last = i == len(pieces) - 1
                stalled = b.stall_after_first_chunk and i == 0
                finish = reason if last or (stalled and b.stall_first_chunk_finishes) else None
                choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": finish} if chat
                          else {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish, "stop_reason": None})
                await self._event(writer, {"id": "cmpl-1", "object": "chat.completion.chunk" if chat else "text_completion",
                                           "created": 0, "model": b.model, "choices": [choice]})
                if stalled:
                    await self._wait(reader, 3600.0, rec)
                    return False
            rec.done = time.monotonic()  # before the last bytes go out: the client may read the record once it has them
            writer.write(self._chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, RuntimeError):
            rec.done = None
            rec.disconnected = True
            self.disconnects += 1
            return False
        return True

    async def _wait(self, reader: asyncio.StreamReader, seconds: float, rec: Record) -> bool:
        """Sleep `seconds` (denoising); False as soon as the client disconnects (the request is aborted)."""
        if seconds <= 0 and not reader.at_eof():
            return True
        eof = asyncio.ensure_future(reader.read(1))
        sleep = asyncio.ensure_future(asyncio.sleep(seconds))
        done, _ = await asyncio.wait({eof, sleep}, return_when=asyncio.FIRST_COMPLETED)
        if eof in done:
            sleep.cancel()
            rec.disconnected = True
            self.disconnects += 1
            return False
        eof.cancel()
        try:
            await eof
        except asyncio.CancelledError:
            pass
        return True

    @staticmethod
    def _chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    async def _event(self, writer, payload: dict) -> None:
        writer.write(self._chunk(("data: " + json.dumps(payload) + "\n\n").encode()))
        await writer.drain()

    async def _send(self, rec: Record, writer, status: int, data: bytes, ctype: str, extra: dict | None = None) -> bool:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"content-type: {ctype}",
                f"content-length: {len(data)}"] + [f"{k}: {v}" for k, v in (extra or {}).items()]
        try:
            rec.status, rec.first_byte = status, time.monotonic()
            rec.done = rec.first_byte  # set before the bytes go out, as above
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            await writer.drain()
        except (ConnectionError, RuntimeError):
            rec.done = None
            return False
        return True

    async def _json(self, rec, writer, status, payload) -> bool:
        return await self._send(rec, writer, status, b"" if payload is None else json.dumps(payload).encode(),
                                "application/json")

    async def _error(self, rec, writer, status, message, kind="BadRequestError", extra=None) -> bool:
        return await self._send(rec, writer, status, json.dumps(
            {"error": {"message": message, "type": kind, "param": None, "code": status}}).encode(),
            "application/json", extra)

    # ---- what tests read --------------------------------------------------------------------
    def completions(self) -> list[Record]:
        return [r for r in self.records if r.path.endswith("/completions")]


class _LoopThread:
    """An asyncio server on its own loop in a daemon thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = None
        self.port = 0

    def _serve(self, handler, port: int, ssl_ctx=None) -> None:
        self.thread.start()

        async def start():
            return await asyncio.start_server(handler, "127.0.0.1", port, ssl=ssl_ctx)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close():
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self.server is not None:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Counterpart(_LoopThread):
    """The counterpart server on 127.0.0.1 (an ephemeral port unless given), in a thread."""

    def __init__(self, behaviour: Behaviour | None = None, port: int = 0, tls: tuple[str, str] | None = None):
        super().__init__()
        self.app = Server(behaviour)
        self.behaviour = self.app.b
        ctx = None
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*tls)
        self.scheme = "https" if tls else "http"
        self._serve(self.app.handle, port, ctx)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/v1"

    def url_for(self, host: str) -> str:
        return f"{self.scheme}://{host}:{self.port}/v1"

    @property
    def records(self) -> list[Record]:
        return self.app.records

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Proxy(_LoopThread):
    """A forward proxy that sends every host to 127.0.0.1 (same port) and records what it was asked."""

    def __init__(self):
        super().__init__()
        self.requests: list[dict] = []
        self._serve(self._handle, 0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, reader, writer) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            method, target, version = line.decode("latin-1").split(" ", 2)
            head = [line]
            headers = {}
            while True:
                h = await reader.readline()
                head.append(h)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            self.requests.append({"method": method, "target": target, "headers": headers})
            if method == "CONNECT":
                port = int(target.rsplit(":", 1)[1])
                up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:  # absolute form: one request, then the connection closes
                from urllib.parse import urlsplit
                parts = urlsplit(target)
                up_r, up_w = await asyncio.open_connection("127.0.0.1", parts.port or 80)
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                origin = parts.path + (f"?{parts.query}" if parts.query else "")
                rest = [h for h in head[1:-1] if not h.lower().startswith((b"connection:", b"proxy-"))]
                up_w.write(f"{method} {origin} {version.strip()}\r\n".encode() + b"".join(rest)
                           + b"connection: close\r\n\r\n" + body)
                await up_w.drain()
                # the answer's head says the connection closes after it, as a proxy that closes must
                answer = [await up_r.readline()]
                while answer[-1] not in (b"\r\n", b"\n", b""):
                    answer.append(await up_r.readline())
                kept = [h for h in answer[1:-1] if not h.lower().startswith(b"connection:")]
                writer.write(answer[0] + b"".join(kept) + b"connection: close\r\n\r\n")
                await writer.drain()

            async def pipe(src, dst):
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except (ConnectionError, RuntimeError):
                    pass
                finally:
                    try:
                        dst.close()
                    except Exception:
                        pass

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass


def make_certificates(folder: str, hosts=("localhost", "counterpart.test"), ips=("127.0.0.1",)) -> dict:
    """A test certificate authority and a server certificate it signed, made with the openssl command.
    Returns the paths {"ca", "cert", "key"}."""
    os.makedirs(folder, exist_ok=True)
    p = {name: os.path.join(folder, name) for name in ("ca.pem", "ca.key", "cert.pem", "key.pem", "req.csr", "ext.cnf")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.pem"], "-days", "2", "-subj", "/CN=diffill test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", p["key.pem"], "-out", p["req.csr"], "-subj", f"/CN={hosts[0]}")
    san = ",".join([f"DNS:{h}" for h in hosts] + [f"IP:{i}" for i in ips])
    with open(p["ext.cnf"], "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                f"extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n")
    run("x509", "-req", "-in", p["req.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"], "-set_serial", "1",
        "-days", "2", "-out", p["cert.pem"], "-extfile", p["ext.cnf"])
    return {"ca": p["ca.pem"], "cert": p["cert.pem"], "key": p["key.pem"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency-ms", type=float, default=0.0, help="time per canvas")
    ap.add_argument("--first-byte-ms", type=float, default=0.0)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--api-key-env", help="require the key in this environment variable")
    ap.add_argument("--answer", default="pass", help="what every completion answers")
    ap.add_argument("--complete-line", help="answer the rest of this line after what was typed of it")
    ap.add_argument("--tls-dir", help="serve https with a test certificate written to this folder (its ca.pem)")
    args = ap.parse_args(argv)
    tls = None
    if args.tls_dir:
        paths = make_certificates(args.tls_dir)
        tls = (paths["cert"], paths["key"])
    b = Behaviour(model=args.model, latency_ms=args.latency_ms, first_byte_ms=args.first_byte_ms,
                  api_key=os.environ.get(args.api_key_env) if args.api_key_env else None, default_answer=args.answer,
                  complete_line=args.complete_line)
    server = Counterpart(b, port=args.port, tls=tls)
    print(f"serving {args.model} at {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
