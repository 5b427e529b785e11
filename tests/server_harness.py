"""Running the real `diffill serve` over stdio for tests, against a tiny real checkpoint."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import make_test_lsp_client

SERVER = [sys.executable, "-m", "diffill.lsp.cli", "serve"]

# A place and the completion the fixed-answers worker gives there (see `fixed_answers`).
COMPLETES = "def total(values):\n    return \n"
COMPLETES_AT = (1, 11)
COMPLETION = "sum(values)"
# The worker's table: the longest `after` the model's prefix window ends with picks the answer.
ANSWERS = {
    "answers": [
        {"after": "    return ", "text": COMPLETION},
        {"after": "' + ", "text": "name"},
        {"after": "x", "text": " + 1"},  # after a word being typed: goes on from it
        {"after": "def area(radius):\n    ", "text": "return math.pi * radius ** 2"},
    ],
    "default": COMPLETION,
    "steps": 256,
    "step_ms": 20,
}


def capabilities(inline: bool = True, encodings=None, progress: bool = True) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        general=types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None,
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            inline_completion=types.InlineCompletionClientCapabilities() if inline else None,
            completion=types.CompletionClientCapabilities(),
        ),
        window=types.WindowClientCapabilities(work_done_progress=progress),
    )


class Editor:
    """A client started against the real server, with what the server told it."""

    def __init__(self, client: LanguageClient):
        self.client = client
        self.statuses: list[dict] = []
        self.version: dict[str, int] = {}

    async def wait_ready(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in reversed(self.statuses):
                if s["state"] in ("ready", "error"):
                    return s
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the worker did not get ready; statuses: {self.statuses}")

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.version[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))

    def edit(self, uri: str, line: int, character: int, text: str, end: tuple[int, int] | None = None) -> None:
        self.version[uri] += 1
        end_line, end_char = end or (line, character)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=self.version[uri]),
            [types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(line, character), types.Position(end_line, end_char)), text=text)]))

    def replace_all(self, uri: str, text: str) -> None:
        self.version[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=self.version[uri]),
            [types.TextDocumentContentChangeWholeDocument(text=text)]))

    def inline(self, uri: str, line: int, character: int) -> asyncio.Future:
        """Send an inline completion request now (in order with notifications); its future.

        The request's id is in `self.last_id` (for `$/cancelRequest`)."""
        import uuid
        self.last_id = str(uuid.uuid4())
        future = self.client.protocol.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, character)),
            msg_id=self.last_id)
        return asyncio.wrap_future(future)

    async def raw_request(self, method: str, params, timeout: float = 10.0):
        """Send a request whose params need not be valid; the response's result or JsonRpcException."""
        import concurrent.futures
        import uuid
        proto = self.client.protocol
        msg_id = str(uuid.uuid4())
        future = concurrent.futures.Future()
        proto._request_futures[msg_id] = future
        proto._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def raw_notify(self, method: str, params) -> None:
        self.client.protocol._send_data({"jsonrpc": "2.0", "method": method, "params": params})

    async def stats(self) -> dict:
        result = await self.client.protocol.send_request_async("diffill/stats", None)
        return _plain(result)


def _plain(obj):
    """A response of an unknown method comes back as attribute objects; turn it into dicts."""
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "_asdict"):  # pygls builds namedtuples
        return _plain(obj._asdict())
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__dict__"):
        return {k: _plain(v) for k, v in vars(obj).items()}
    return obj


@contextlib.asynccontextmanager
async def editor(options: dict, caps: types.ClientCapabilities | None = None, env: dict | None = None,
                  wait: bool = True):
    holder: dict = {}

    def factory():
        client = make_test_lsp_client()

        @client.feature("diffill/status")
        def on_status(params):
            holder["editor"].statuses.append(_plain(params))

        return client

    server_env = {**os.environ, **(env or {})}
    config = ClientServerConfig(server_command=SERVER, client_factory=factory, server_env=server_env)
    client = await config.start()
    s = Editor(client)
    holder["editor"] = s
    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=caps or capabilities(), initialization_options=options, process_id=os.getpid()))
        if wait:
            await s.wait_ready()
        yield s
    finally:
        try:
            await asyncio.wait_for(client.shutdown_session(), 20)
        except Exception:
            pass
        server = getattr(client, "_server", None)
        await client.stop()
        if server is not None and server.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                server.kill()


def rss_kb(pid: int) -> int:
    """A process's resident memory in KB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def kill_pid(pid: int | None) -> None:
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


# ---- fixtures (import them into a test module to use them) -----------------------------------

import shutil  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fixed_answers(tmp_path_factory) -> dict:
    """The environment that makes the server's worker answer from ANSWERS (no model, no torch): the
    deterministic fill behind the real server, worker and wire."""
    import json
    path = tmp_path_factory.mktemp("answers") / "answers.json"
    path.write_text(json.dumps(ANSWERS))
    return {"DIFFILL_WORKER_FIXED_ANSWERS": str(path)}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny random-weight checkpoint in the real layout (FIM tokens, mask noise)."""
    from diffill.model import build_random_checkpoint
    out = tmp_path_factory.mktemp("tiny") / "model"
    build_random_checkpoint(out, fim=True, noise="mask", prompt_format="fim", canvas_length=32)
    return str(out)


def daemon_pid(socket_path: str) -> int | None:
    """The pid in the lock of the worker serving `socket_path` (the lock is in the runtime folder)."""
    from diffill.lsp.wire import sockets
    try:
        with open(sockets.lock_path(socket_path)) as f:
            return int(f.readline().strip() or 0) or None
    except (OSError, ValueError):
        return None


def daemons_under(folder: str) -> list[str]:
    """Socket paths under `folder` that a worker's lock names (alive or not)."""
    from diffill.lsp.wire import sockets
    found = []
    runtime = sockets.runtime_dir()
    try:
        names = os.listdir(runtime)
    except OSError:
        return found
    prefix = os.path.join(os.path.abspath(folder), "")
    for name in names:
        if not name.endswith(".lock"):
            continue
        try:
            with open(os.path.join(runtime, name)) as f:
                f.readline()
                path = f.readline().strip()
        except OSError:
            continue
        if path.startswith(prefix):
            found.append(path)
    return found


def stop_daemon(socket_path: str, timeout: float = 10.0) -> None:
    pid = daemon_pid(socket_path)
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    kill_pid(pid)


@pytest.fixture
def socket_dir():
    """A short private folder for worker sockets; any worker started there is stopped afterwards."""
    d = tempfile.mkdtemp(prefix="dft-", dir="/tmp")
    os.chmod(d, 0o700)
    yield d
    for path in daemons_under(d):
        stop_daemon(path)
        with contextlib.suppress(OSError):
            os.unlink(_lock_of(path))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory):
    """The socket path of a shared worker used by a whole test module (started by the first server)."""
    d = tempfile.mkdtemp(prefix="dfm-", dir="/tmp")
    os.chmod(d, 0o700)
    path = os.path.join(d, "w.sock")
    yield path
    stop_daemon(path)
    with contextlib.suppress(OSError):
        os.unlink(_lock_of(path))
    shutil.rmtree(d, ignore_errors=True)


def _lock_of(socket_path: str) -> str:
    from diffill.lsp.wire import sockets
    with contextlib.suppress(OSError):
        os.unlink(sockets.log_path(socket_path))
    return sockets.lock_path(socket_path)


# ---- a raw LSP client: exact bytes in, messages out (framing, lifecycle, soak tests) ------------

class RawServer:
    """`diffill serve` over pipes, written to byte for byte and read message by message."""

    def __init__(self, proc):
        self.proc = proc
        self.messages: list[dict] = []

    @classmethod
    async def start(cls, env: dict | None = None) -> "RawServer":
        proc = await asyncio.create_subprocess_exec(
            *SERVER, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}, limit=1 << 24)
        return cls(proc)

    @staticmethod
    def frame(message, header: str = "Content-Length: {n}\r\n\r\n", delta: int = 0) -> bytes:
        import json
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        return header.format(n=len(body) + delta).encode() + body

    async def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def send(self, message, **framing) -> None:
        await self.send_raw(self.frame(message, **framing))

    async def request(self, id_, method: str, params=None, **framing) -> None:
        await self.send({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}, **framing)

    async def notify(self, method: str, params=None, **framing) -> None:
        await self.send({"jsonrpc": "2.0", "method": method, "params": params}, **framing)

    async def _read_one(self) -> dict | None:
        import json
        length = None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return None
            if not line.strip():
                break
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await self.proc.stdout.readexactly(length)
        message = json.loads(body)
        if message.get("method") in ("window/workDoneProgress/create", "client/registerCapability"):
            await self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
        return message

    async def until(self, predicate, timeout: float = 30.0) -> dict:
        for message in self.messages:
            if predicate(message):
                return message

        async def loop():
            while True:
                message = await self._read_one()
                assert message is not None, "the server closed its output"
                self.messages.append(message)
                if predicate(message):
                    return message
        return await asyncio.wait_for(loop(), timeout)

    async def response(self, id_, timeout: float = 30.0) -> dict:
        return await self.until(lambda m: m.get("id") == id_ and ("result" in m or "error" in m), timeout)

    async def initialize(self, options: dict | None = None, id_=0) -> dict:
        await self.request(id_, "initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {},
                                               "initializationOptions": options or {}})
        reply = await self.response(id_)
        await self.notify("initialized", {})
        return reply

    async def close(self, timeout: float = 20.0) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    async def stderr_text(self) -> str:
        data = await self.proc.stderr.read()
        return data.decode(errors="replace")


NO_WORKER = {"workerMode": "private", "preload": False, "debounceMs": 0}
