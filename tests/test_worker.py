"""The model worker as a process: its socket, its wire, cancellation, KV reuse, idle exit, sharing."""
import asyncio
import contextlib
import os
import stat
import subprocess
import sys
import time

import pytest

from diffill.lsp.wire import messages, sockets
from server_harness import (COMPLETES, COMPLETES_AT, COMPLETION, daemon_pid, editor, fixed_answers,  # noqa: F401
                            socket_dir, tiny_model)

WORKER = [sys.executable, "-m", "diffill.lsp.cli", "worker"]


@contextlib.contextmanager
def worker_process(model: str, socket_path: str, idle: float = 60.0):
    proc = subprocess.Popen(WORKER + ["--model", model, "--socket", socket_path, "--idle-timeout", str(idle)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(socket_path):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the worker did not bind its socket"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.results: dict = {}
        self.statuses: list = []

    @classmethod
    async def connect(cls, path: str) -> "Client":
        reader, writer = await asyncio.open_unix_connection(path)
        client = cls(reader, writer)
        await client.send({"op": "hello", "client": "test", "version": 1})
        return client

    async def send(self, message: dict) -> None:
        await messages.write_message(self.writer, message)

    async def until(self, predicate, timeout: float = 120.0):
        async def loop():
            while True:
                msg = await messages.read_message(self.reader)
                assert msg is not None, "the worker closed the connection"
                if msg["op"] in ("result", "error"):
                    self.results[msg["id"]] = msg
                elif msg["op"] == "status":
                    self.statuses.append(msg)
                if predicate(msg):
                    return msg
        return await asyncio.wait_for(loop(), timeout)

    async def ready(self) -> dict:
        return await self.until(lambda m: m["op"] == "status" and m["state"] in ("ready", "error"))

    async def fill(self, id_, prefix, suffix="\n", doc="a.py", **extra) -> dict:
        await self.send({"op": "fill", "id": id_, "doc": doc, "prefix": prefix, "suffix": suffix,
                         "canvas_length": 16, "max_steps": 4, **extra})
        return await self.until(lambda m: m.get("id") == id_)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def test_a_shared_worker_listens_on_a_socket_only_its_user_can_open(tiny_model, socket_dir):
    path = os.path.join(socket_dir, "sub", "w.sock")
    with worker_process(tiny_model, path):
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        client = await Client.connect(path)
        assert (await client.ready())["state"] == "ready"
        result = await client.fill(1, "def add(a, b):\n    return ")
        assert result["op"] == "result" and not result["cancelled"] and result["steps"] >= 1
        await client.close()


async def test_the_next_request_of_a_document_reuses_the_kv_cache_of_the_common_prefix(tiny_model, socket_dir):
    path = os.path.join(socket_dir, "w.sock")
    with worker_process(tiny_model, path):
        client = await Client.connect(path)
        await client.ready()
        prefix = "import os\n\n\ndef add(a, b):\n    return a"
        first = await client.fill(1, prefix)
        second = await client.fill(2, prefix + " + b")
        assert first["reused_tokens"] == 0
        assert second["reused_tokens"] >= first["encoded_tokens"] - 4  # all but the prompt's tail
        assert second["encoded_tokens"] < first["encoded_tokens"]
        other = await client.fill(3, prefix, doc="b.py")  # another document has its own cache
        assert other["reused_tokens"] == 0
        await client.close()


async def test_cancel_and_a_newer_fill_for_the_document_stop_a_fill_between_two_steps(tiny_model, socket_dir):
    path = os.path.join(socket_dir, "w.sock")
    long_fill = {"canvas_length": 256, "max_steps": 256}
    with worker_process(tiny_model, path):
        client = await Client.connect(path)
        await client.ready()
        await client.send({"op": "fill", "id": 1, "doc": "a.py", "prefix": "def f(x):\n    ", "suffix": "\n",
                           **long_fill})
        await client.until(lambda m: m["op"] == "status" and m["state"] == "busy")
        await client.send({"op": "cancel", "id": 1})
        result = await client.until(lambda m: m.get("id") == 1)
        assert result["cancelled"] and result["steps_after_cancel"] <= 1 and result["steps"] < 256
        # a newer fill for the same document replaces the running one
        await client.send({"op": "fill", "id": 2, "doc": "a.py", "prefix": "def f(x):\n    ", "suffix": "\n",
                           **long_fill})
        await client.until(lambda m: m["op"] == "status" and m["state"] == "busy")
        done = await client.fill(3, "def f(x):\n    y = ")
        assert client.results[2]["cancelled"] and client.results[2]["steps_after_cancel"] <= 1
        assert not done["cancelled"]
        await client.close()


async def test_two_clients_are_served_by_one_worker(tiny_model, socket_dir):
    path = os.path.join(socket_dir, "w.sock")
    with worker_process(tiny_model, path):
        a, b = await Client.connect(path), await Client.connect(path)
        await a.ready()
        await b.ready()
        ra, rb = await asyncio.gather(a.fill(1, "x = "), b.fill(1, "y = "))  # same id and doc: separate clients
        assert not ra["cancelled"] and not rb["cancelled"]
        await a.close()
        await b.close()


async def test_a_second_worker_for_the_same_socket_steps_aside(tiny_model, socket_dir):
    path = os.path.join(socket_dir, "w.sock")
    with worker_process(tiny_model, path):
        second = subprocess.run(WORKER + ["--model", tiny_model, "--socket", path], capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 0 and "already serves" in second.stderr


async def test_a_shared_worker_exits_after_its_idle_timeout_and_removes_its_socket(tiny_model, socket_dir):
    path = os.path.join(socket_dir, "w.sock")
    with worker_process(tiny_model, path, idle=1.0) as proc:
        client = await Client.connect(path)
        await client.ready()
        await client.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit when idle: {proc.stderr.read() if proc.poll() else ''}")
        assert proc.returncode == 0 and not os.path.exists(path), proc.stderr.read()


def test_a_socket_folder_other_users_can_write_is_refused(tiny_model, socket_dir):
    loose = os.path.join(socket_dir, "loose")
    os.mkdir(loose)
    os.chmod(loose, 0o777)
    out = subprocess.run(WORKER + ["--model", tiny_model, "--socket", os.path.join(loose, "w.sock")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "other users" in out.stderr and "chmod" in out.stderr


async def test_the_server_starts_a_shared_worker_that_outlives_it_and_serves_the_next_editor(
        tiny_model, socket_dir, fixed_answers):
    path = os.path.join(socket_dir, "w.sock")
    opts = {"model": tiny_model, "workerMode": "shared", "workerSocket": path, "workerIdleTimeout": 30,
            "debounceMs": 0, "maxSteps": 4, "canvasCap": 16}
    async with editor(opts, env=fixed_answers) as first:
        pid = (await first.stats())["worker"]["status"]["pid"]
        assert pid == daemon_pid(path)
    os.kill(pid, 0)  # still running after the editor left
    started = time.monotonic()
    async with editor(opts, env=fixed_answers) as second:
        assert (await second.stats())["worker"]["status"]["pid"] == pid
        uri = "file:///project/a.py"
        second.open(uri, COMPLETES)
        assert (await second.inline(uri, *COMPLETES_AT)).items[0].insert_text == COMPLETION
    assert time.monotonic() - started < 30  # warm: no model load this time


@pytest.mark.parametrize("bad", [b"\x00\x00\x00\x05hello", b"\x00\x00\x00\x02[]"])
async def test_a_malformed_message_closes_only_that_connection(tiny_model, socket_dir, bad):
    path = os.path.join(socket_dir, "w.sock")
    with worker_process(tiny_model, path) as proc:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(bad)
        await writer.drain()
        while (msg := await asyncio.wait_for(messages.read_message(reader), 60)) is not None:
            if msg["op"] == "error":
                assert "bad message" in msg["message"]
        writer.close()
        client = await Client.connect(path)
        await client.ready()
        assert not (await client.fill(1, "x = "))["cancelled"]
        await client.close()
        assert proc.poll() is None


def test_the_blocking_reader_reads_what_encode_frames_and_stops_at_a_cut_message():
    import io
    framed = messages.encode({"op": "status", "text": "é"}) + messages.encode({"op": "result", "id": 2})
    stream = io.BytesIO(framed)
    assert messages.read_message_blocking(stream) == {"op": "status", "text": "é"}
    assert messages.read_message_blocking(stream) == {"op": "result", "id": 2}
    assert messages.read_message_blocking(stream) is None
    cut = io.BytesIO(framed[:-3])
    messages.read_message_blocking(cut)
    assert messages.read_message_blocking(cut) is None  # the second message lost its end
