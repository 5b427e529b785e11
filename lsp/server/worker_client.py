"""The server's side of the model worker: start or find it, send fills, follow its status.

Two ways to run the worker (setting `workerMode`):
- "shared": a per-user daemon on a Unix socket, found by its path or started (detached) when
  none answers. It outlives this server and serves every editor of the user. Its folder is opened
  and checked as lsp/wire/sockets.py says, and the process at the other end must run as this user
  (SO_PEERCRED) before a single byte is sent to it.
- "private": a child process of this server, spoken to over its stdin/stdout.

Every fill has a deadline (`fillTimeoutMs`): past it the fill gives no completion, and the worker
is told to stop it. While requests are outstanding the worker is pinged; a worker that stays silent
for `workerTimeoutMs` (stopped, deadlocked) or does not stop a cancelled fill within that time is
hung: it is killed, the status says so, and a fresh one is started.

When the worker dies, fills in flight are sent once more to a fresh worker; a fill that fails
twice fails cleanly with a message. A worker that keeps dying is not restarted in a loop: the
status says so and the next request tries again after a pause. Restarts asked by settings changes
are coalesced: a start for settings that have changed since is abandoned at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time

from diffill.lsp.wire import messages, sockets
from diffill.lsp.pipeline.fill import FillReply, FillRequest
from diffill.lsp.server.settings import Settings

CONNECT_TIMEOUT_S = 20.0
RESTARTS_ALLOWED = 3          # restarts within RESTART_WINDOW_S before giving up for a while
RESTART_WINDOW_S = 60.0
RESTART_PAUSE_S = 15.0


class WorkerError(Exception):
    """The worker could not give an answer; the message is for the user."""


class WorkerGone(Exception):
    """The connection to the worker broke while a request was in flight."""


def worker_command(settings: Settings, socket_path: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "diffill.lsp.cli", "worker", "--device", settings.device, "--dtype", settings.dtype]
    if settings.model:
        cmd += ["--model", settings.model]
    if settings.allow_download:
        cmd.append("--allow-download")
    cmd += ["--experts", settings.experts, "--nice", str(settings.worker_nice), "--fast-path", settings.fast_path]
    if settings.fast_path_off:
        cmd += ["--fast-off", ",".join(settings.fast_path_off)]
    if socket_path:
        cmd += ["--socket", socket_path, "--detach", "--idle-timeout", str(settings.worker_idle_timeout_s)]
    return cmd


def socket_path_for(settings: Settings) -> str:
    if settings.worker_socket:
        return os.path.abspath(os.path.expanduser(settings.worker_socket))
    return sockets.default_socket_path(settings.model, settings.device, settings.dtype)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _process_gone(pid: int) -> bool:
    """True once every thread of `pid` has exited. The main thread of a killed process turns zombie
    while its other threads (the worker's compute thread) still hold its files, the listening
    socket among them, so a zombie main thread alone does not mean the socket is closed."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: only whether the pid is there at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X"):
                    return False
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread is gone
    return True


class WorkerClient:
    def __init__(self, settings: Settings, on_status=None, on_progress=None, name: str = "diffill"):
        self.settings = settings
        self.on_status = on_status or (lambda status: None)
        self.on_progress = on_progress or (lambda percent, message: None)
        self.name = f"{name} {os.getpid()}"
        self.status: dict = {"state": "stopped", "message": "not started"}
        self.stats = {"fills": 0, "cancelled": 0, "wasted_steps": 0, "retries": 0, "restarts": 0,
                      "timeouts": 0, "hangs": 0, "superseded_starts": 0}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._cancelled_at: dict[int, float] = {}  # job id -> when the worker was told to stop it
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._peer_pid: int | None = None
        self._read_task: asyncio.Task | None = None
        self._watch_task: asyncio.Task | None = None
        self._start_task: asyncio.Task | None = None
        self._restarts: list[float] = []
        self._closing = False
        self._first_status: asyncio.Future | None = None
        self._last_heard = 0.0
        self._hung: str | None = None
        self._generation = 0
        self._attempt: object | None = None
        self._killed_pid: int | None = None
        self._unexpected_exit = False

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def socket_path(self) -> str | None:
        return socket_path_for(self.settings) if self.settings.worker_mode == "shared" else None

    @property
    def fill_timeout_s(self) -> float:
        return self.settings.fill_timeout_ms / 1000.0

    @property
    def hang_timeout_s(self) -> float:
        return self.settings.worker_timeout_ms / 1000.0

    # ---- starting --------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to (or start) the worker; concurrent callers share one attempt. An attempt that
        a settings change supersedes ends at once, and its callers go on with the new one."""
        while not self.connected:
            if self._start_task is None or self._start_task.done():
                self._start_task = asyncio.ensure_future(self._start(self._generation))
            task = self._start_task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled() and not _being_cancelled():
                    continue  # superseded by new settings: wait for the start with those
                raise

    async def _start(self, generation: int) -> None:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
        if len(self._restarts) >= RESTARTS_ALLOWED:
            wait = RESTART_PAUSE_S - (now - self._restarts[-1])
            if wait > 0:
                raise WorkerError(f"the model worker stopped {len(self._restarts)} times in a minute; "
                                  f"not restarting for {wait:.0f} s. {self._log_hint()}")
        if self._unexpected_exit:  # only restarts after a worker died count towards the pause
            self._restarts.append(now)
            self._unexpected_exit = False
        await self._wait_killed()
        self._hung = None
        attempt = self._attempt = object()
        self._set_status({"state": "loading", "message": "starting the model worker"})
        try:
            await self._open(generation)
        except asyncio.CancelledError:
            if self._attempt is attempt:  # superseded: what this attempt opened (a private child) goes at once
                await self._disconnect(kill=True)
            raise
        except WorkerGone:
            msg = f"the model worker went away while starting. {self._log_hint()}"
            self._set_status({"state": "error", "message": msg})
            raise WorkerError(msg) from None

    async def _open(self, generation: int) -> None:
        try:
            if self.settings.worker_mode == "shared":
                await self._connect_shared()
            else:
                await self._spawn_private()
        except WorkerError as exc:
            self._set_status({"state": "error", "message": str(exc)})
            raise
        except OSError as exc:
            msg = f"cannot start the model worker: {exc}. {self._log_hint()}"
            self._set_status({"state": "error", "message": msg})
            raise WorkerError(msg) from None
        first = self._first_status = asyncio.get_running_loop().create_future()
        self._last_heard = time.monotonic()
        self._read_task = asyncio.ensure_future(self._read_loop(self._reader, self._writer, first))
        self._watch_task = asyncio.ensure_future(self._watch(self._writer))
        await self._send({"op": "hello", "client": self.name, "version": messages.VERSION})
        try:
            status = await asyncio.wait_for(asyncio.shield(first), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._kill_worker()  # it accepted but never spoke: hung; the next request starts a fresh one
            await self._disconnect()
            msg = f"the model worker does not answer; it was stopped. {self._log_hint()}"
            self._set_status({"state": "error", "message": msg})
            raise WorkerError(msg) from None
        if status.get("version") != messages.VERSION:
            # a worker from another diffill version: ask it to leave and start our own
            await self._send({"op": "shutdown"})
            await self._disconnect()
            raise WorkerError("the running model worker is from another diffill version; it was asked to "
                              "stop, the next request starts a new one")

    async def _spawn_private(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *worker_command(self.settings, None), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None, limit=messages.MAX_MESSAGE_BYTES,
        )
        self._reader, self._writer = self._proc.stdout, self._proc.stdin

    async def _connect_shared(self) -> None:
        path = self.socket_path
        try:
            place = sockets.SocketPlace(path, create=True)
        except (OSError, sockets.UnsafeSocketDir) as exc:
            raise WorkerError(f"the worker socket is not private: {exc}") from None
        with place:
            if await self._try_connect(place):
                return
            spawn = await asyncio.create_subprocess_exec(
                *worker_command(self.settings, path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _, err = await spawn.communicate()  # returns once the daemon has forked away
            if spawn.returncode != 0:
                raise WorkerError(f"the model worker did not start: {err.decode(errors='replace').strip()}")
            deadline = time.monotonic() + CONNECT_TIMEOUT_S
            while time.monotonic() < deadline:
                if await self._try_connect(place):
                    return
                await asyncio.sleep(0.05)
        raise WorkerError(f"the model worker started but its socket {path} does not answer. {self._log_hint()}")

    async def _try_connect(self, place: sockets.SocketPlace) -> bool:
        """Connect through the checked folder; the peer must run as this user before anything is sent."""
        try:
            if place.check_socket() is None:
                return False
        except sockets.UnsafeSocket as exc:
            raise WorkerError(str(exc)) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, place.address)
            self._peer_pid = sockets.check_peer(sock, f"the worker socket {place.path}")
            self._reader, self._writer = await asyncio.open_unix_connection(sock=sock,
                                                                            limit=messages.MAX_MESSAGE_BYTES)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            return False
        except sockets.UnsafeSocket as exc:
            sock.close()
            raise WorkerError(str(exc)) from None
        except BaseException:
            sock.close()
            raise

    @property
    def log_path(self) -> str | None:
        """The shared worker's log (None for a private worker: its messages go to this server's stderr)."""
        return sockets.log_path(self.socket_path) if self.settings.worker_mode == "shared" else None

    def _log_hint(self) -> str:
        if self.log_path:
            return f"Its log is {self.log_path}."
        return "Its messages are in this server's log (stderr)."

    # ---- the connection --------------------------------------------------------------------
    async def _send(self, message: dict) -> None:
        if not self.connected:
            raise WorkerGone()
        try:
            await messages.write_message(self._writer, message)
        except (ConnectionError, OSError, RuntimeError):
            raise WorkerGone() from None

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         first: asyncio.Future) -> None:
        stopped = False
        try:
            while True:
                msg = await messages.read_message(reader)
                if msg is None:
                    break
                if self._writer is writer:
                    self._last_heard = time.monotonic()
                op = msg.get("op")
                if op == "result" or op == "error":
                    fut = self._pending.pop(msg.get("id"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    elif op == "error" and msg.get("id") is None:
                        self._set_status({"state": "error", "message": msg.get("message", "")})
                elif op == "status":
                    stopped = msg.get("state") == "stopped"
                    if not first.done():
                        first.set_result(msg)
                    if self._writer is writer:
                        self._set_status(msg)
                elif op == "progress":
                    self.on_progress(int(msg.get("percent") or 0), str(msg.get("message") or ""))
        except (ConnectionError, OSError, messages.WireError):
            pass
        finally:
            if not first.done():
                first.set_exception(WorkerGone())  # whoever waits for this connection's hello
            if self._writer is writer:
                self._reader = self._writer = None
                try:
                    writer.close()
                except Exception:
                    pass
                self._fail_pending()
                if not self._closing:
                    self._unexpected_exit = not stopped or bool(self._hung)
                    if self._hung:
                        message = f"the model worker stopped answering ({self._hung}); restarting it. " \
                                  f"{self._log_hint()}"
                    elif stopped:
                        message = "the model worker stopped"
                    else:
                        message = f"the model worker exited; restarting it. {self._log_hint()}"
                    self._set_status({"state": "stopped" if stopped and not self._hung else "error",
                                      "message": message})
                    if not stopped or self._hung:
                        asyncio.ensure_future(self._restart_quietly())

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        self._cancelled_at.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(WorkerGone())

    async def _watch(self, writer: asyncio.StreamWriter) -> None:
        """Ping the worker while requests are outstanding; kill it when it is hung."""
        while self._writer is writer:
            hang = self.hang_timeout_s
            await asyncio.sleep(min(1.0, hang / 4))
            if self._writer is not writer or writer.is_closing():
                return
            if not self._pending:
                continue  # nothing asked (a starting worker has CONNECT_TIMEOUT_S to say hello)
            now = time.monotonic()
            silent = now - self._last_heard
            stuck = [now - t for t in self._cancelled_at.values() if now - t >= hang]
            if silent >= hang or stuck:
                reason = (f"no message for {silent:.1f} s" if silent >= hang else
                          f"a cancelled fill still runs after {max(stuck):.1f} s")
                self._declare_hung(writer, reason)
                return
            if silent >= min(1.0, hang / 4):
                with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                    writer.write(messages.encode({"op": "status"}))

    def _declare_hung(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self._hung = reason
        self.stats["hangs"] += 1
        self._set_status({"state": "error",
                          "message": f"the model worker stopped answering ({reason}); restarting it. "
                                     f"{self._log_hint()}"})
        self._kill_worker()
        with contextlib.suppress(Exception):
            writer.close()
        if self._writer is writer:
            # a stopped process may never close its end: end the connection here and now
            self._reader = self._writer = None
            self._fail_pending()
            if self._read_task is not None:
                self._read_task.cancel()
            asyncio.ensure_future(self._restart_quietly())

    def _kill_worker(self) -> None:
        """Kill the worker process: our child, or the shared daemon whose uid SO_PEERCRED vouched for."""
        pid = self._proc.pid if self._proc is not None else self._peer_pid
        if pid and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                self._killed_pid = pid

    async def _wait_killed(self, timeout: float = 5.0) -> None:
        """Until a worker we killed is gone: its socket must not take the next connection."""
        pid, self._killed_pid = self._killed_pid, None
        deadline = time.monotonic() + timeout
        while pid and time.monotonic() < deadline and not _process_gone(pid):
            await asyncio.sleep(0.02)

    async def _restart_quietly(self) -> None:
        await self._reap()
        if self._closing or self.connected or self._pending:
            return  # fills in flight restart it themselves
        try:
            self.stats["restarts"] += 1
            await self.start()
        except (WorkerError, WorkerGone):
            pass

    def _set_status(self, status: dict) -> None:
        self.status = {**self.status, **status}
        self.on_status(self.status)

    # ---- requests --------------------------------------------------------------------------
    async def fill(self, request: FillRequest) -> FillReply:
        """Fill the hole (the server's `Fill`) within the fill deadline; retried once on a fresh worker
        if the worker dies meanwhile.

        Cancelling the awaiting task cancels the fill in the worker (between two steps)."""
        timeout = self.fill_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._fill(request)
        except TimeoutError:
            self.stats["timeouts"] += 1
            raise WorkerError(f"the model gave no answer within {timeout:g} s (fillTimeoutMs)") from None

    async def _fill(self, request: FillRequest) -> FillReply:
        r = request
        message = {"op": "fill", "doc": r.doc, "prefix": r.prefix, "suffix": r.suffix,
                   "canvas_length": r.canvas_length, "max_steps": r.max_steps, "language": r.language,
                   "max_lines": r.max_lines, "seed": r.seed}
        for attempt in (1, 2):
            try:
                await self.start()
                reply = await self._request(message)
            except WorkerGone:
                if attempt == 2:
                    raise WorkerError(f"the model worker stopped twice while completing; "
                                      f"{self._log_hint()}") from None
                self.stats["retries"] += 1
                await self._reap()
                continue
            if reply.get("op") == "error":
                raise WorkerError(str(reply.get("message") or "the model worker failed"))
            result = FillReply(str(reply.get("text") or ""), int(reply.get("steps") or 0),
                               float(reply.get("ms") or 0.0), bool(reply.get("cancelled")),
                               int(reply.get("reused_tokens") or 0), int(reply.get("encoded_tokens") or 0),
                               float(reply.get("queue_ms") or 0.0), _confidence(reply.get("line_confidence")))
            if result.cancelled:
                self.stats["cancelled"] += 1
                self.stats["wasted_steps"] += result.steps
            else:
                self.stats["fills"] += 1
            return result
        raise AssertionError("unreachable")

    async def _request(self, message: dict) -> dict:
        job_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._last_heard = time.monotonic()  # a busy spell begins: silence counts from now
        self._pending[job_id] = fut
        try:
            await self._send({**message, "id": job_id})
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if self.connected and not fut.done():
                # keep the future until the worker's "cancelled" reply, to count the wasted steps
                # (and to notice a worker that does not stop it: see _watch)
                try:
                    self._writer.write(messages.encode({"op": "cancel", "id": job_id}))
                except (ConnectionError, OSError, RuntimeError):
                    pass
                sent = time.perf_counter()
                self._cancelled_at[job_id] = time.monotonic()
                fut.add_done_callback(lambda f: self._count_cancelled(f, sent, job_id))
            else:
                self._pending.pop(job_id, None)
            raise
        except BaseException:
            self._pending.pop(job_id, None)
            raise

    def _count_cancelled(self, fut: asyncio.Future, sent: float, job_id: int) -> None:
        self._cancelled_at.pop(job_id, None)
        if fut.cancelled() or fut.exception() is not None:
            return
        reply = fut.result()
        if reply.get("op") == "result":
            self.stats["cancelled"] += 1
            self.stats["wasted_steps"] += int(reply.get("steps") or 0)
            self.stats["last_cancel_ms"] = round((time.perf_counter() - sent) * 1000.0, 2)
            self.stats["last_steps_after_cancel"] = reply.get("steps_after_cancel")

    # ---- stopping --------------------------------------------------------------------------
    async def _disconnect(self, kill: bool = False) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        for attr in ("_read_task", "_watch_task"):
            task = getattr(self, attr)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            setattr(self, attr, None)
        await self._reap(kill=kill)

    async def _reap(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            try:
                if kill:
                    raise asyncio.TimeoutError
                if proc.stdin is not None:
                    proc.stdin.close()
                await asyncio.wait_for(proc.wait(), 3.0)
            except (asyncio.TimeoutError, ProcessLookupError):
                try:
                    proc.kill()
                    await proc.wait()
                except ProcessLookupError:
                    pass

    async def close(self) -> None:
        """Disconnect; a private worker is stopped, a shared one keeps serving others."""
        self._closing = True
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        task, self._start_task = self._start_task, None
        if task is not None and not task.done():
            task.cancel()
        await self._disconnect()

    async def restart(self, settings: Settings) -> bool:
        """Use new settings: disconnect, and let the next start use them (the old shared worker stays
        for others). Restarts coalesce: a start in progress is abandoned at once, and a call that a
        newer one has superseded returns False without doing anything more."""
        self.settings = settings
        self._generation += 1
        generation = self._generation
        task, self._start_task = self._start_task, None
        if task is not None and not task.done():
            task.cancel()
            self.stats["superseded_starts"] += 1
        # tear the current connection down before anything else can run (no await until then): a
        # start for the new settings, begun meanwhile, is never what this restart stops
        writer, proc = self._writer, self._proc
        self._reader = self._writer = None
        self._proc = None
        for attr in ("_read_task", "_watch_task"):
            old = getattr(self, attr)
            if old is not None:
                old.cancel()
            setattr(self, attr, None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        self._fail_pending()  # fills in flight are sent again, to the worker for the new settings
        self._restarts.clear()
        self._unexpected_exit = False
        self._set_status({"state": "stopped", "message": "settings changed"})
        if proc is not None and proc.returncode is None:  # only a private child is ours to stop
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        return generation == self._generation

    def worker_pid(self) -> int | None:
        pid = self.status.get("pid")
        return int(pid) if pid else None


def _confidence(value) -> tuple[float, ...] | None:
    """The worker's per-line confidence, if it sent a well-formed one."""
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return None
    return tuple(float(x) for x in value)
