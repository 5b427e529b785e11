"""The model worker: a process that holds one model warm and fills holes on request.

    diffill worker                       serve one client over stdin/stdout (a private child)
    diffill worker --socket PATH         a shared per-user daemon on a Unix socket (0600, in a 0700 folder)
    diffill worker --check               load the model, fill one hole, print a JSON report

The wire format is diffill.lsp.wire.messages (length-prefixed JSON). One compute thread runs the fills;
the event loop only moves messages. A fill is cancelled between two denoising steps when its client
sends "cancel", sends a newer fill for the same document, or goes away.

A shared worker binds its socket before it loads the model (clients see "loading" with progress
rather than a refused connection), serves any number of clients, and exits after --idle-timeout
seconds without one, or as soon as no client is connected when its model failed to load. A lock
in the private runtime folder makes sure one worker serves one socket; the socket's folder is
checked and used as lsp/wire/sockets.py says, and a socket removed from under the worker (a temp
cleaner) is bound again while the lock is still its own.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import json
import os
import signal
import stat
import sys
import threading
import time
import traceback

from diffill.lsp.wire import messages, sockets
from diffill.model.worker.fixed_answers import ENV as FIXED_ENV, FixedAnswers

MAX_QUEUED = 64  # fills waiting at once, over all clients; the oldest beyond this are refused
LOAD_ERROR_GRACE_S = 10.0  # a shared worker whose model failed waits this long for its first client


def main(args) -> int:
    """Run the worker with the options of `diffill worker`."""
    _lower_priority(getattr(args, "nice", 0))
    if args.check:
        return _check(args)
    if args.socket:
        return _main_shared(args)
    worker = Worker(args, shared=False)
    _exit_now(asyncio.run(worker.serve_stdio()))


def _main_shared(args) -> int:
    """The shared daemon: the socket's folder and the runtime folder are opened and checked first;
    nothing at the socket's path is touched unless it is a socket of this user and the lock is ours."""
    path = os.path.abspath(os.path.expanduser(args.socket))
    try:
        place = sockets.SocketPlace(path, create=True)
        state_fd = sockets.open_runtime_dir()
    except (OSError, sockets.UnsafeSocketDir) as exc:
        print(f"diffill worker: cannot use {path}: {exc}", file=sys.stderr)
        return 2
    try:
        place.check_socket()  # a file, a link, another user's socket: refused, never removed
        taken = _take_lock(state_fd, sockets.lock_name(path), path)
    except (OSError, sockets.UnsafeSocket) as exc:
        print(f"diffill worker: cannot use {path}: {exc}", file=sys.stderr)
        return 2
    if taken is None:
        print(f"diffill worker: another worker already serves {path}", file=sys.stderr)
        return 0
    lock, left_by = taken
    if args.detach and _detach(state_fd, sockets.log_name(path)):
        return 0
    _write_pid(lock, path)
    worker = Worker(args, shared=True)
    _exit_now(asyncio.run(worker.serve_socket(place, lock, state_fd, sockets.lock_name(path), left_by)))


def _lower_priority(nice: int) -> None:
    """Below the editor: a busy fill must not make typing lag (the setting `workerNice`)."""
    if nice and hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(nice)


def _exit_now(code: int) -> None:
    """Exit without waiting for the compute thread (it may be in the middle of a step)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ---- the model -------------------------------------------------------------------------------

class Engine:
    """The loaded model and its Infiller; loading happens on a thread, reporting progress."""

    def __init__(self, args, on_progress, on_state):
        self.args = args
        self.on_progress = on_progress
        self.on_state = on_state
        self.state = "loading"
        self.message = "starting"
        self.model_path: str | None = None
        self.tokenizer_path: str | None = None
        self.infiller = None
        self.device: str | None = None
        self.context_tokens: int | None = None  # the checkpoint's own prefix + suffix budget, if it names one
        self.languages: list[str] | None = None  # the languages it was trained for, if it names them
        self.ready = threading.Event()
        self.random_weights = False
        self.fast_path: dict[str, str] | None = None  # part -> verdict, when the fast path was checked
        self.degraded: str | None = None              # the fast parts that failed their check, and why
        self.plan = None                              # memory.Plan on CUDA: the experts' form that fits

    def load(self) -> None:
        try:
            self._load()
        except Exception as exc:  # any failure becomes the worker's error state, told to every client
            self.state, self.message = "error", _describe_load_error(exc, self.args.model)
            traceback.print_exc(file=sys.stderr)
        else:
            self.state, self.message = "ready", f"model {self.model_path} on {self.device}"
            if self.plan is not None:
                self.message += f" ({self.plan.message})"
            if self.degraded:
                self.message = f"ready (degraded: {self.degraded}); {self.message}"
            if self.random_weights:
                self.message += " (random weights, no trained model in this build: completions are noise)"
        self.ready.set()
        self.on_state()

    def _load(self) -> None:
        fixed = os.environ.get(FIXED_ENV)
        if fixed:
            self.infiller = FixedAnswers(fixed)
            self.device, self.model_path = "cpu", f"fixed answers from {fixed}"
            return
        self.on_progress(5, "importing torch")
        import torch

        if self.args.threads:
            torch.set_num_threads(self.args.threads)
        from diffill.model import load_model
        from diffill.model.engine.builder import RANDOM_PREFIX, random_model
        from diffill.model.engine.infill import Infiller

        self.device = _pick_device(torch, self.args.device)
        dtype = _pick_dtype(torch, self.args.dtype, self.device)
        spec = self.args.model
        if spec is None:
            spec, self.random_weights = _embedded_model_path()
        experts = self._fit(spec, dtype)
        self.on_progress(20, f"loading {spec} ({dtype}, {self.device}{', ' + experts + ' experts' if experts else ''})")
        if str(spec).startswith(RANDOM_PREFIX):  # a random model of a real shape, built on the device
            model = random_model(spec[len(RANDOM_PREFIX):], self.device, dtype, experts)
        else:
            model = load_model(spec, device=self.device, dtype=dtype, allow_download=self.args.allow_download,
                               experts=experts)
        self.model_path = str(getattr(model, "path", spec))
        self.context_tokens = model.config.raw.get("diffill_context_tokens")
        self.languages = model.config.raw.get("diffill_languages")
        tok = os.path.join(self.model_path, "tokenizer.json")
        self.tokenizer_path = tok if os.path.isfile(tok) else None
        self.infiller = Infiller(model, uniform=self._fast_path(model), max_documents=self._documents(model))
        self.on_progress(80, "warming up")
        self.infiller.fill("def f(x):\n    return ", "\n", canvas_length=None, max_steps=2, doc_key="\0warmup")
        self.on_progress(100, "ready")

    def _fit(self, spec, dtype) -> str | None:
        """The experts' form to load: on CUDA the first that fits the free memory (setting `experts`,
        default auto: unquantised, fp8, int4), said in the log and the status; a model that does not
        fit is refused with what would. Elsewhere the form asked (auto: as the checkpoint stores it)."""
        from diffill.model.engine import memory
        from diffill.model.engine.builder import RANDOM_PREFIX, random_config
        from diffill.model.engine.checkpoint import resolve_path
        from diffill.model.engine.config import ModelConfig
        from diffill.model.gpu.fused_head import DEFAULT_CHUNK

        asked = getattr(self.args, "experts", "auto") or "auto"
        free = memory.free_device_bytes(self.device)
        if free is None:
            return None if asked in ("auto", "none") else asked
        if str(spec).startswith(RANDOM_PREFIX):
            config = ModelConfig.from_dict(random_config(spec[len(RANDOM_PREFIX):]))
        else:
            config = ModelConfig.from_file(resolve_path(spec, self.args.allow_download) / "config.json")
        fast = getattr(self.args, "fast_path", "auto") != "off"
        self.plan = memory.plan_for_device(config, dtype, asked, free, head_chunk=DEFAULT_CHUNK if fast else None)
        print(f"diffill worker: memory: {self.plan.message}", file=sys.stderr, flush=True)
        if self.plan.fits is False:
            raise DoesNotFit(f"does not fit on {self.device}: {self.plan.message}")
        return self.plan.experts

    def _documents(self, model) -> int:
        """Prefix caches to keep (one per document, up to 8): on CUDA as many as the memory left after
        the plan holds."""
        plan = self.plan
        if plan is None:  # not on CUDA: no memory plan
            return 8
        from diffill.model.engine import memory

        one = memory.kv_bytes_per_token(model.config, model.dtype) * plan.estimate.cached_tokens
        return max(1, min(8, 1 + (plan.free_bytes - plan.estimate.total) // max(1, one)))

    def _fast_path(self, model):
        """On CUDA (or --fast-path on): check every fast part against its reference, keep those that
        pass; the uniform process's denoiser for the Infiller, or None for the reference."""
        wanted = getattr(self.args, "fast_path", "auto")
        if wanted == "off" or (wanted == "auto" and model.device.type != "cuda"):
            return None
        from diffill.model.gpu import faults, self_test
        from diffill.model.gpu.fast_path import uniform_denoiser

        faults.install_from_env()
        self.on_progress(70, "checking the fast path")
        off = {p.strip() for p in (getattr(self.args, "fast_off", "") or "").split(",") if p.strip()}
        log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
        parts, verdicts = self_test.run(model, off, log=log)
        self.fast_path = {v.part: v.detail for v in verdicts}
        self.degraded = self_test.degraded(verdicts)
        print(f"diffill worker: fast path: {json.dumps(self.fast_path)}", file=sys.stderr, flush=True)
        return uniform_denoiser(model, parts, log=log)


def _pick_device(torch, device: str) -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for, but torch sees no CUDA GPU; "
                           "set device to \"cpu\" (slower) or install a CUDA build of torch")
    return device


def _pick_dtype(torch, dtype: str, device: str):
    from diffill.model import resolve_dtype
    return resolve_dtype(dtype, device)


def _embedded_model_path() -> tuple[str, bool]:
    try:
        from diffill.model import default_model_path
    except ImportError:
        try:
            from diffill.model.engine.default import default_model_path
        except ImportError:
            default_model_path = None
    if default_model_path is None:
        raise RuntimeError("no model is configured and this build has no embedded model; "
                           "set the `model` setting to a checkpoint folder")
    found = default_model_path()
    if isinstance(found, tuple):  # (path, random weights)
        return str(found[0]), bool(found[1])
    return str(found), False


class DoesNotFit(Exception):
    """The memory plan found no form of the model that fits the device."""


def _describe_load_error(exc: Exception, spec) -> str:
    what = f"model {spec!r}" if spec else "the embedded model"
    if isinstance(exc, DoesNotFit):
        return f"{what} {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (f"{what} does not fit in memory ({exc}); choose a smaller model or dtype, "
                "or another device")
    return f"cannot load {what}: {exc}"


# ---- requests --------------------------------------------------------------------------------

class Job:
    __slots__ = ("conn", "id", "doc", "params", "cancel", "steps", "cancelled_at_step", "queued_at")

    def __init__(self, conn, msg: dict):
        self.conn = conn
        self.id = msg.get("id")
        self.doc = str(msg.get("doc") or "")
        self.params = msg
        self.cancel = threading.Event()
        self.steps = 0
        self.cancelled_at_step: int | None = None
        self.queued_at = time.perf_counter()

    def request_cancel(self) -> None:
        if not self.cancel.is_set():
            self.cancelled_at_step = self.steps
            self.cancel.set()

    @property
    def key(self):
        return (self.conn.number, self.doc)


class Connection:
    _count = 0

    def __init__(self, writer: asyncio.StreamWriter | None, send_raw=None):
        Connection._count += 1
        self.number = Connection._count
        self.writer = writer
        self._send_raw = send_raw
        self.closed = False
        self.client = "?"

    def send(self, message: dict) -> None:
        if self.closed:
            return
        try:
            data = messages.encode(message)
            if self._send_raw is not None:
                self._send_raw(data)
            else:
                self.writer.write(data)
        except (OSError, RuntimeError, messages.WireError):
            self.closed = True


class Worker:
    def __init__(self, args, shared: bool):
        self.args = args
        self.shared = shared
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[Connection] = set()
        self.cond = threading.Condition()
        self.pending: collections.OrderedDict = collections.OrderedDict()  # key -> Job
        self.running: Job | None = None
        self.stats = {"fills": 0, "cancelled": 0, "steps": 0, "wasted_steps": 0, "errors": 0}
        self.last_ms: float | None = None
        self.last_slow: str | None = None  # why the last fill was slow, when the machine was busy
        self.progress = (0, "starting")
        self.stopping = False
        self.clients_seen = 0
        self._servers: list = []
        self.engine = Engine(args, self._progress_from_thread, self._state_from_thread)

    # -- status --
    def status(self) -> dict:
        state = self.engine.state
        if state == "ready" and self.running is not None:
            state = "busy"
        return {"op": "status", "state": state, "message": self.engine.message, "last_ms": self.last_ms,
                "model": self.engine.model_path, "tokenizer": self.engine.tokenizer_path,
                "context_tokens": self.engine.context_tokens, "languages": self.engine.languages,
                "pid": os.getpid(), "fast_path": self.engine.fast_path, "slow_reason": self.last_slow,
                "version": messages.VERSION, "shared": self.shared, "progress": self.progress[0],
                "stats": dict(self.stats)}

    def broadcast(self, message: dict) -> None:
        for conn in list(self.connections):
            conn.send(message)

    def _progress_from_thread(self, percent: int, message: str) -> None:
        self.progress = (percent, message)
        self.engine.message = message
        self._post(self.broadcast, {"op": "progress", "percent": percent, "message": message})

    def _state_from_thread(self) -> None:
        self._post(lambda: self.broadcast(self.status()))
        with self.cond:
            self.cond.notify_all()

    def _post(self, fn, *args) -> None:
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:
                pass

    # -- message handling (event loop) --
    def handle(self, conn: Connection, msg: dict) -> None:
        op = msg.get("op")
        if op == "fill":
            self.submit(conn, msg)
        elif op == "cancel":
            self.cancel(conn, msg.get("id"))
        elif op in ("hello", "status"):
            if op == "hello":
                conn.client = str(msg.get("client", "?"))
            conn.send(self.status())
        elif op == "shutdown":
            self.stop(f"stopped at the request of {conn.client}")
        else:
            conn.send({"op": "error", "id": msg.get("id"), "message": f"unknown op {op!r}"})

    def submit(self, conn: Connection, msg: dict) -> None:
        if not isinstance(msg.get("prefix"), str) or not isinstance(msg.get("suffix"), str):
            conn.send({"op": "error", "id": msg.get("id"), "message": "a fill needs string prefix and suffix"})
            return
        if self.engine.state == "error":
            conn.send({"op": "error", "id": msg.get("id"), "message": self.engine.message})
            return
        job = Job(conn, msg)
        with self.cond:
            older = self.pending.pop(job.key, None)
            if older is not None:
                self._reply_cancelled(older)
            if self.running is not None and self.running.key == job.key:
                self.running.request_cancel()
            self.pending[job.key] = job
            while len(self.pending) > MAX_QUEUED:
                _, dropped = self.pending.popitem(last=False)
                dropped.conn.send({"op": "error", "id": dropped.id,
                                   "message": f"the worker has more than {MAX_QUEUED} requests queued; try again"})
            self.cond.notify_all()

    def cancel(self, conn: Connection, job_id) -> None:
        with self.cond:
            for key, job in list(self.pending.items()):
                if job.conn is conn and job.id == job_id:
                    del self.pending[key]
                    self._reply_cancelled(job)
            if self.running is not None and self.running.conn is conn and self.running.id == job_id:
                self.running.request_cancel()

    def drop_connection(self, conn: Connection) -> None:
        conn.closed = True
        self.connections.discard(conn)
        with self.cond:
            for key, job in list(self.pending.items()):
                if job.conn is conn:
                    del self.pending[key]
            if self.running is not None and self.running.conn is conn:
                self.running.request_cancel()

    def _reply_cancelled(self, job: Job) -> None:
        self.stats["cancelled"] += 1
        job.conn.send({"op": "result", "id": job.id, "text": "", "steps": 0, "ms": 0.0, "cancelled": True,
                       "reused_tokens": 0, "encoded_tokens": 0, "queue_ms": 0.0})

    def stop(self, reason: str = "stopped") -> None:
        if not self.stopping:
            self.broadcast({**self.status(), "state": "stopped", "message": reason})
        self.stopping = True
        with self.cond:
            if self.running is not None:
                self.running.request_cancel()
            self.cond.notify_all()
        if self.loop is not None:
            self._post(self._stop_event.set)

    # -- the compute thread --
    def compute(self) -> None:
        self.engine.load()
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                _, job = self.pending.popitem(last=False)
                self.running = job
            if self.engine.state == "error":
                job.conn.send({"op": "error", "id": job.id, "message": self.engine.message})
                reply = None
            else:
                self._post(self.broadcast, self.status())
                reply = self._fill(job)
            with self.cond:
                self.running = None
            if reply is not None:
                self._post(job.conn.send, reply)
            self._post(lambda: self.broadcast(self.status()))

    def _fill(self, job: Job) -> dict:
        p = job.params
        started = time.perf_counter()

        def on_step(stats) -> bool:
            job.steps += 1
            return not job.cancel.is_set()

        try:
            res = self.engine.infiller.fill(
                p["prefix"], p["suffix"], canvas_length=_opt_int(p.get("canvas_length")),
                max_steps=_opt_int(p.get("max_steps")), seed=int(p.get("seed") or 0), on_step=on_step,
                doc_key=f"{job.conn.number}:{job.doc}", language=p.get("language") or None,
                max_lines=_opt_int(p.get("max_lines")),
            )
        except Exception as exc:  # a bad request must not take the worker down
            traceback.print_exc(file=sys.stderr)
            self.stats["errors"] += 1
            return {"op": "error", "id": job.id, "message": f"the fill failed: {type(exc).__name__}: {exc}"}
        ms = (time.perf_counter() - started) * 1000.0
        cancelled = bool(getattr(res, "cancelled", False)) or job.cancel.is_set()
        steps = int(getattr(res, "steps", job.steps) or job.steps)
        after = None if job.cancelled_at_step is None else job.steps - job.cancelled_at_step
        self.stats["steps"] += steps
        if cancelled:
            self.stats["cancelled"] += 1
            self.stats["wasted_steps"] += steps
        else:
            self.stats["fills"] += 1
            self.last_ms = round(ms, 1)
            self.last_slow = busy_machine(ms, self.engine.device)
        return {"op": "result", "id": job.id, "text": "" if cancelled else res.text, "steps": steps,
                "ms": round(ms, 2), "cancelled": cancelled,
                "reused_tokens": int(getattr(res, "reused_tokens", 0) or 0),
                "encoded_tokens": int(getattr(res, "encoded_tokens", 0) or 0),
                "queue_ms": round((started - job.queued_at) * 1000.0, 2), "steps_after_cancel": after,
                "line_confidence": None if cancelled else getattr(res, "line_confidence", None)}

    # -- serving --
    async def _connection(self, reader: asyncio.StreamReader, conn: Connection) -> None:
        self.connections.add(conn)
        conn.send({"op": "progress", "percent": self.progress[0], "message": self.progress[1]})
        try:
            while not self.stopping:
                try:
                    msg = await messages.read_message(reader)
                except messages.WireError as exc:
                    conn.send({"op": "error", "id": None, "message": f"bad message, closing: {exc}"})
                    break
                if msg is None:
                    break
                self.handle(conn, msg)
        except (ConnectionError, OSError):
            pass
        finally:
            self.drop_connection(conn)

    async def serve_stdio(self) -> int:
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        reader = asyncio.StreamReader(limit=messages.MAX_MESSAGE_BYTES)
        await self.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        out = sys.stdout.buffer
        lock = threading.Lock()

        def send_raw(data: bytes) -> None:
            with lock:
                out.write(data)
                out.flush()

        threading.Thread(target=self.compute, name="compute", daemon=True).start()
        conn = Connection(None, send_raw)
        await self._connection(reader, conn)  # returns at end of input: the server has gone
        self.stop()
        return 0

    async def serve_socket(self, place: sockets.SocketPlace, lock_fd: int, state_fd: int, lock_name: str,
                           left_by: tuple[int, ...] | None = None) -> int:
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._place, self._lock_fd, self._state_fd, self._lock_name = place, lock_fd, state_fd, lock_name
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stop, f"stopped by signal {sig.name}")
        try:
            place.remove_stale(left_by)  # left by a worker that died: we hold the lock, so it is stale
        except sockets.UnsafeSocket as exc:
            print(f"diffill worker: cannot use {place.path}: {exc}", file=sys.stderr, flush=True)
            os.close(lock_fd)
            return 2
        await self._bind()
        print(f"diffill worker {os.getpid()}: serving {place.path}", file=sys.stderr, flush=True)
        threading.Thread(target=self.compute, name="compute", daemon=True).start()
        idle = asyncio.ensure_future(self._idle_watch())
        try:
            await self._stop_event.wait()
        finally:
            idle.cancel()
            for server in self._servers:
                server.close()
            with contextlib.suppress(OSError):
                place.remove_if(self._bound)  # ours only: never a socket that replaced it
            os.close(lock_fd)
        return 0

    async def _bind(self) -> None:
        sock, self._bound = self._place.listen()
        _write_pid(self._lock_fd, self._place.path, self._bound)  # the next worker may remove this one only
        server = await asyncio.start_unix_server(self._accept, sock=sock, limit=messages.MAX_MESSAGE_BYTES)
        self._servers.append(server)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            if sock is None:
                raise sockets.UnsafeSocket("no socket to check")
            sockets.check_peer(sock, "this connection")
        except sockets.UnsafeSocket:
            writer.close()  # another user (or nobody we can name): not a word is sent
            return
        self.clients_seen += 1
        conn = Connection(writer)
        await self._connection(reader, conn)
        try:
            writer.close()
        except Exception:
            pass

    async def _watch_socket(self) -> None:
        """Notice a socket removed (a temp cleaner) or replaced: bind it again, or leave.

        It is bound again only while the lock is still ours and nothing else is at its name; if
        another worker's socket is there, or the lock or the folder is gone, this worker stops, so
        that one worker serves one socket."""
        place = self._place
        info = None if place.folder_gone() else place.lstat()
        if info is not None and (info.st_ino, info.st_dev) == (self._bound.st_ino, self._bound.st_dev):
            return
        if info is None and not place.folder_gone() and self._lock_is_ours():
            try:
                await self._bind()
            except (OSError, sockets.UnsafeSocket) as exc:
                self.stop(f"the socket {place.path} was removed and cannot be bound again: {exc}")
                return
            print(f"diffill worker {os.getpid()}: the socket {place.path} was removed; bound it again",
                  file=sys.stderr, flush=True)
            return
        self.stop(f"the socket {place.path} was removed or replaced; another worker serves it now")

    def _lock_is_ours(self) -> bool:
        try:
            now = os.stat(self._lock_name, dir_fd=self._state_fd, follow_symlinks=False)
            held = os.fstat(self._lock_fd)
        except OSError:
            return False
        return (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev)

    async def _idle_watch(self) -> None:
        idle_since = time.monotonic()
        failed_since = None
        while not self.stopping:
            await asyncio.sleep(min(1.0, self.args.idle_timeout / 4))
            await self._watch_socket()
            if self.stopping:
                return
            if self.engine.state == "error":
                # a worker without a model serves nobody: it leaves as soon as no editor is connected
                # (once one has heard why, or after a grace period for the editor that started it)
                now = time.monotonic()
                failed_since = failed_since or now
                if not self.connections and (self.clients_seen or now - failed_since >= LOAD_ERROR_GRACE_S):
                    print(f"diffill worker {os.getpid()}: the model did not load and no client is "
                          f"connected, exiting", file=sys.stderr, flush=True)
                    self.stop(f"the model did not load: {self.engine.message}")
                    return
            if self.connections or self.running is not None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.args.idle_timeout:
                print(f"diffill worker {os.getpid()}: no client for {self.args.idle_timeout:g} s, exiting",
                      file=sys.stderr, flush=True)
                self.stop(f"no client for {self.args.idle_timeout:g} s")
                return


SLOW_FILL_MS = 500.0


def busy_machine(ms: float, device: str, load: float | None = None, cpus: int | None = None) -> str | None:
    """Why a fill of `ms` on `device` was slow, when it was slow because the CPUs were busy: the
    one-minute load average (`load`, default: the system's) above the CPUs this process may use
    (`cpus`, default: its affinity). GPU fills are not judged."""
    if ms < SLOW_FILL_MS or not str(device).startswith("cpu"):
        return None
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        if not hasattr(os, "getloadavg"):
            return None
        load = os.getloadavg()[0]
    if load <= cpus:
        return None
    return f"the machine was busy (load {load:.1f} on {cpus} CPU{'s' if cpus != 1 else ''})"


def _opt_int(v):
    return None if v is None else int(v)


def _open_own_file(state_fd: int, name: str, flags: int) -> int:
    """A regular file of this user in the private runtime folder (never a link, never another's)."""
    fd = os.open(name, flags | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=state_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_nlink != 1:
        os.close(fd)
        raise OSError(f"{name} in the runtime folder is not a plain file of yours; remove it")
    return fd


def _take_lock(state_fd: int, name: str, path: str) -> tuple[int, tuple[int, ...] | None] | None:
    """An exclusive lock held for the worker's life (in the runtime folder, named after the socket),
    with the identity of the socket the last worker of this lock bound (sockets.identity); None when
    another worker has it. The lock holds "PID\\nSOCKET PATH\\nINODE DEVICE CTIME_NS\\n"."""
    fd = _open_own_file(state_fd, name, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    left_by = None
    lines = os.pread(fd, 8192, 0).decode("utf-8", "surrogateescape").splitlines()
    if len(lines) >= 3 and lines[1] == path:
        try:
            left_by = tuple(int(x) for x in lines[2].split())
        except ValueError:
            pass
    _write_pid(fd, path)
    return fd, left_by


def _write_pid(fd: int, path: str, bound: os.stat_result | None = None) -> None:
    text = f"{os.getpid()}\n{path}\n" + (" ".join(map(str, sockets.identity(bound))) + "\n" if bound else "")
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8", "surrogateescape"), 0)


def _detach(state_fd: int, log_name: str) -> bool:
    """Fork twice so the worker outlives (and is not a child of) whoever started it.

    Returns True in the process that should exit now. The worker's output goes to its log in the
    runtime folder."""
    if os.fork() > 0:
        return True  # the caller's child: it exits at once and is reaped by the caller
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    log = _open_own_file(state_fd, log_name, os.O_WRONLY)
    os.ftruncate(log, 0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    return False


def _check(args) -> int:
    """Load the model, fill one hole, print a JSON report (for `diffill serve --check`)."""
    report: dict = {"model": args.model, "device": args.device, "dtype": args.dtype}
    progress = []
    engine = Engine(args, lambda p, m: progress.append(m), lambda: None)
    t0 = time.perf_counter()
    engine.load()
    report["load_s"] = round(time.perf_counter() - t0, 2)
    report["state"] = engine.state
    report["message"] = engine.message
    report["model_path"] = engine.model_path
    report["fast_path"] = engine.fast_path
    report["degraded"] = engine.degraded
    if engine.state == "ready":
        t0 = time.perf_counter()
        res = engine.infiller.fill("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n", doc_key="check")
        report["fill_ms"] = round((time.perf_counter() - t0) * 1000.0, 1)
        report["fill_steps"] = int(getattr(res, "steps", 0) or 0)
        report["fill_text"] = res.text
    print(json.dumps(report), flush=True)
    return 0 if engine.state == "ready" else 1
