"""The server's side of the model worker: start or find it, send fills, follow its status.

Two ways to run the worker (setting `workerMode`):
- "shared": a per-user daemon on a Unix socket, found by its path or started (detached) when
  none answers. It outlives this server and serves every editor of the user.
- "private": a child process of this server, spoken to over its stdin/stdout.

When the worker dies, fills in flight are sent once more to a fresh worker; a fill that fails
twice fails cleanly with a message. A worker that keeps dying is not restarted in a loop: the
status says so and the next request tries again after a pause.
"""
from __future__ import annotations

import asyncio
import itertools
import os
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
    if socket_path:
        cmd += ["--socket", socket_path, "--detach", "--idle-timeout", str(settings.worker_idle_timeout_s)]
    return cmd


def socket_path_for(settings: Settings) -> str:
    if settings.worker_socket:
        return os.path.abspath(os.path.expanduser(settings.worker_socket))
    return sockets.default_socket_path(settings.model, settings.device, settings.dtype)


class WorkerClient:
    def __init__(self, settings: Settings, on_status=None, on_progress=None, name: str = "diffill"):
        self.settings = settings
        self.on_status = on_status or (lambda status: None)
        self.on_progress = on_progress or (lambda percent, message: None)
        self.name = f"{name} {os.getpid()}"
        self.status: dict = {"state": "stopped", "message": "not started"}
        self.stats = {"fills": 0, "cancelled": 0, "wasted_steps": 0, "retries": 0, "restarts": 0}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._read_task: asyncio.Task | None = None
        self._start_task: asyncio.Task | None = None
        self._restarts: list[float] = []
        self._closing = False
        self._first_status: asyncio.Future | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def socket_path(self) -> str | None:
        return socket_path_for(self.settings) if self.settings.worker_mode == "shared" else None

    # ---- starting --------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to (or start) the worker; concurrent callers share one attempt."""
        if self.connected:
            return
        if self._start_task is None or self._start_task.done():
            self._start_task = asyncio.ensure_future(self._start())
        await asyncio.shield(self._start_task)

    async def _start(self) -> None:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
        if len(self._restarts) >= RESTARTS_ALLOWED:
            wait = RESTART_PAUSE_S - (now - self._restarts[-1])
            if wait > 0:
                raise WorkerError(f"the model worker stopped {len(self._restarts)} times in a minute; "
                                  f"not restarting for {wait:.0f} s. {self._log_hint()}")
        self._restarts.append(now)
        self._set_status({"state": "loading", "message": "starting the model worker"})
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
        self._first_status = asyncio.get_running_loop().create_future()
        self._read_task = asyncio.ensure_future(self._read_loop(self._reader, self._writer))
        await self._send({"op": "hello", "client": self.name, "version": messages.VERSION})
        try:
            status = await asyncio.wait_for(asyncio.shield(self._first_status), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise WorkerError(f"the model worker does not answer. {self._log_hint()}") from None
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
            sockets.ensure_private_dir(os.path.dirname(path))
        except sockets.UnsafeSocketDir as exc:
            raise WorkerError(f"the worker socket is not private: {exc}") from None
        if await self._try_connect(path):
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
            if await self._try_connect(path):
                return
            await asyncio.sleep(0.05)
        raise WorkerError(f"the model worker started but its socket {path} does not answer. {self._log_hint()}")

    async def _try_connect(self, path: str) -> bool:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(path, limit=messages.MAX_MESSAGE_BYTES)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False

    def _log_hint(self) -> str:
        if self.settings.worker_mode == "shared":
            return f"Its log is {self.socket_path}.log."
        return "Its messages are in this server's log (stderr)."

    # ---- the connection --------------------------------------------------------------------
    async def _send(self, message: dict) -> None:
        if not self.connected:
            raise WorkerGone()
        try:
            await messages.write_message(self._writer, message)
        except (ConnectionError, OSError, RuntimeError):
            raise WorkerGone() from None

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stopped = False
        try:
            while True:
                msg = await messages.read_message(reader)
                if msg is None:
                    break
                op = msg.get("op")
                if op == "result" or op == "error":
                    fut = self._pending.pop(msg.get("id"), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    elif op == "error" and msg.get("id") is None:
                        self._set_status({"state": "error", "message": msg.get("message", "")})
                elif op == "status":
                    stopped = msg.get("state") == "stopped"
                    if self._first_status is not None and not self._first_status.done():
                        self._first_status.set_result(msg)
                    self._set_status(msg)
                elif op == "progress":
                    self.on_progress(int(msg.get("percent") or 0), str(msg.get("message") or ""))
        except (ConnectionError, OSError, messages.WireError):
            pass
        finally:
            if self._writer is writer:
                self._reader = self._writer = None
                try:
                    writer.close()
                except Exception:
                    pass
                pending, self._pending = self._pending, {}
                for fut in pending.values():
                    if not fut.done():
                        fut.set_exception(WorkerGone())
                if self._first_status is not None and not self._first_status.done():
                    self._first_status.set_exception(WorkerGone())
                if not self._closing:
                    self._set_status({"state": "stopped" if stopped else "error",
                                      "message": "the model worker stopped" if stopped else
                                      f"the model worker exited; restarting it. {self._log_hint()}"})
                    if not stopped:
                        asyncio.ensure_future(self._restart_quietly())

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
        """Fill the hole (the server's `Fill`); retried once on a fresh worker if the worker dies meanwhile.

        Cancelling the awaiting task cancels the fill in the worker (between two steps)."""
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
                               float(reply.get("queue_ms") or 0.0))
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
        self._pending[job_id] = fut
        try:
            await self._send({**message, "id": job_id})
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            if self.connected and not fut.done():
                # keep the future until the worker's "cancelled" reply, to count the wasted steps
                try:
                    self._writer.write(messages.encode({"op": "cancel", "id": job_id}))
                except (ConnectionError, OSError, RuntimeError):
                    pass
                sent = time.perf_counter()
                fut.add_done_callback(lambda f: self._count_cancelled(f, sent))
            else:
                self._pending.pop(job_id, None)
            raise
        except BaseException:
            self._pending.pop(job_id, None)
            raise

    def _count_cancelled(self, fut: asyncio.Future, sent: float) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        reply = fut.result()
        if reply.get("op") == "result":
            self.stats["cancelled"] += 1
            self.stats["wasted_steps"] += int(reply.get("steps") or 0)
            self.stats["last_cancel_ms"] = round((time.perf_counter() - sent) * 1000.0, 2)
            self.stats["last_steps_after_cancel"] = reply.get("steps_after_cancel")

    # ---- stopping --------------------------------------------------------------------------
    async def _disconnect(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        if self._read_task is not None:
            self._read_task.cancel()
            self._read_task = None
        await self._reap()

    async def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            try:
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
        await self._disconnect()

    async def restart(self, settings: Settings) -> None:
        """Use new settings: disconnect and start again (the old shared worker stays for others)."""
        await self.close()
        self.settings = settings
        self._closing = False
        self._restarts.clear()
        self._set_status({"state": "stopped", "message": "settings changed"})

    def worker_pid(self) -> int | None:
        pid = self.status.get("pid")
        return int(pid) if pid else None
