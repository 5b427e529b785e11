"""The worker going wrong under a running server: hung (stopped, or stuck in a fill), its socket
deleted, its model missing, a storm of settings that restart it, settings that do not parse."""
import asyncio
import contextlib
import json
import os
import signal
import time

import pytest

from diffill.lsp.server import settings
from server_harness import (ANSWERS, COMPLETES, COMPLETES_AT, COMPLETION, NO_WORKER, RawServer, daemon_pid,  # noqa: F401
                            editor, fixed_answers, kill_pid, socket_dir)

FAST = {"debounceMs": 0, "maxSteps": 4, "canvasCap": 16}


@pytest.fixture
def hanging_answers(tmp_path) -> dict:
    """The fixed answers, and a fill after `hang(` that never ends and ignores cancellation."""
    table = {**ANSWERS, "answers": ANSWERS["answers"] + [{"after": "hang(", "text": "x", "step_ms": 600_000}]}
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(table))
    return {"DIFFILL_WORKER_FIXED_ANSWERS": str(path)}


async def wait_status(s, predicate, after: int = 0, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in s.statuses[after:]:
            if predicate(status):
                return status
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no such status; got {s.statuses[after:]}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"
    return True


# ---- a hung worker -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["private", "shared"])
async def test_a_stopped_worker_costs_one_deadline_then_is_replaced(mode, fixed_answers, socket_dir):
    worker = {"workerMode": "private"} if mode == "private" else \
        {"workerMode": "shared", "workerSocket": os.path.join(socket_dir, "w.sock"), "workerIdleTimeout": 30}
    opts = {**FAST, **worker, "fillTimeoutMs": 1500, "workerTimeoutMs": 1500}
    async with editor(opts, env=fixed_answers) as s:
        a, b = "file:///project/a.py", "file:///project/b.py"
        s.open(a, COMPLETES)
        s.open(b, COMPLETES)
        assert (await s.inline(a, *COMPLETES_AT)).items[0].insert_text == COMPLETION
        pid = (await s.stats())["worker"]["status"]["pid"]
        seen = len(s.statuses)
        os.kill(pid, signal.SIGSTOP)
        try:
            s.edit(a, 1, 11, " ")
            s.edit(b, 1, 11, " ")
            started = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(s.inline(a, 1, 12), s.inline(b, 1, 12)), 20)
            assert time.monotonic() - started < 5.0  # on time, in both documents (it used to wait for ever)
            assert all(r is None or r.items[0].insert_text == COMPLETION for r in results)
            hung = await wait_status(s, lambda st: "stopped answering" in st["message"], seen)
            assert hung["state"] == "error"
            await wait_status(s, lambda st: st["state"] == "ready", seen + 1)
            c = "file:///project/c.py"
            s.open(c, COMPLETES)
            assert (await s.inline(c, *COMPLETES_AT)).items[0].insert_text == COMPLETION
            stats = await s.stats()
            assert stats["worker"]["status"]["pid"] != pid and stats["worker"]["hangs"] >= 1
            assert not alive(pid)  # the hung one was killed, not left behind
        finally:
            kill_pid(pid)


async def test_a_fill_that_never_ends_gives_no_completion_on_time_and_the_worker_is_replaced(hanging_answers):
    opts = {**FAST, "workerMode": "private", "fillTimeoutMs": 1000, "workerTimeoutMs": 1500}
    async with editor(opts, env=hanging_answers) as s:
        stuck, other = "file:///project/stuck.py", "file:///project/other.py"
        s.open(stuck, "x = hang(")
        s.open(other, COMPLETES)
        pid = (await s.stats())["worker"]["status"]["pid"]
        seen = len(s.statuses)
        started = time.monotonic()
        assert (await asyncio.wait_for(s.inline(stuck, 0, 9), 20)) is None
        assert time.monotonic() - started < 3.0
        status = await wait_status(s, lambda st: "cancelled fill still runs" in st["message"], seen, timeout=20)
        assert status["state"] == "error"
        await wait_status(s, lambda st: st["state"] == "ready", seen + 1)
        assert (await s.inline(other, *COMPLETES_AT)).items[0].insert_text == COMPLETION
        stats = await s.stats()
        assert stats["worker"]["status"]["pid"] != pid and stats["worker"]["timeouts"] >= 1


# ---- the shared worker's socket removed ---------------------------------------------------------

async def test_a_deleted_socket_is_bound_again_and_the_next_editor_gets_in(socket_dir, fixed_answers):
    path = os.path.join(socket_dir, "w.sock")
    opts = {**FAST, "workerMode": "shared", "workerSocket": path, "workerIdleTimeout": 60}
    async with editor(opts, env=fixed_answers) as first:
        pid = (await first.stats())["worker"]["status"]["pid"]
        os.unlink(path)  # a temp cleaner, while the first editor stays connected
        started = time.monotonic()
        async with editor(opts, env=fixed_answers) as second:
            assert time.monotonic() - started < 10.0  # it used to wait 20 s and fail
            assert (await second.stats())["worker"]["status"]["pid"] == pid
            uri = "file:///project/a.py"
            second.open(uri, COMPLETES)
            assert (await second.inline(uri, *COMPLETES_AT)).items[0].insert_text == COMPLETION
        first.open("file:///project/b.py", COMPLETES)  # the first one is still served too
        assert (await first.inline("file:///project/b.py", *COMPLETES_AT)) is not None
    assert os.path.exists(path)


async def test_a_worker_whose_socket_another_worker_took_over_leaves(socket_dir, fixed_answers):
    from diffill.lsp.wire import sockets
    path = os.path.join(socket_dir, "w.sock")
    opts = {**FAST, "workerMode": "shared", "workerSocket": path, "workerIdleTimeout": 60}
    async with editor(opts, env=fixed_answers) as first:
        pid = (await first.stats())["worker"]["status"]["pid"]
        os.unlink(path)
        os.unlink(sockets.lock_path(path))  # the lock gone too: the old worker must not stay and compete
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not alive(pid)


# ---- a model that does not load ----------------------------------------------------------------

async def test_a_shared_worker_whose_model_failed_exits_when_its_last_editor_leaves(socket_dir, tmp_path):
    path = os.path.join(socket_dir, "w.sock")
    opts = {"model": str(tmp_path / "no-such-model"), "workerMode": "shared", "workerSocket": path,
            "workerIdleTimeout": 900, "debounceMs": 0}
    async with editor(opts) as s:
        status = await s.wait_ready()
        assert status["state"] == "error" and "no-such-model" in status["message"]
        pid = daemon_pid(path)
        assert pid and alive(pid)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not alive(pid), "the worker without a model stayed (it used to stay for workerIdleTimeout)"
    assert not os.path.exists(path)


# ---- a storm of restarts -----------------------------------------------------------------------

async def test_a_storm_of_worker_restarting_settings_leaves_the_next_completion_prompt(fixed_answers):
    from lsprotocol import types
    opts = {**FAST, "workerMode": "private"}
    async with editor(opts, env=fixed_answers) as s:
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        for i in range(20):  # each one changes a setting that needs another worker
            s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
                settings={"diffill": {"workerIdleTimeout": 30 + i % 2, "model": f"/models/m{i % 2}"}}))
        started = time.monotonic()
        shown = await asyncio.wait_for(s.inline(uri, *COMPLETES_AT), 30)
        assert time.monotonic() - started < 5.0  # 11-15 s before
        assert shown is not None and shown.items[0].insert_text == COMPLETION


# ---- settings that do not parse ----------------------------------------------------------------

@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1e308", "NaN", "Infinity", "123456789012345678901234567890"])
def test_each_out_of_range_number_falls_back_alone_with_its_message(literal):
    raw = json.loads('{"contextTokens": %s, "maxSteps": 7, "canvasCap": %s, "prefixShare": %s, "languages": ["rust"]}'
                     % (literal, literal, literal))
    s, problems = settings.parse(raw)
    assert (s.max_steps, s.languages) == (7, ("rust",))
    assert (s.context_tokens, s.canvas_cap, s.prefix_share) == (None, 256, 0.7)
    assert len(problems) == 3
    for key, problem in zip(("contextTokens", "canvasCap", "prefixShare"), problems):
        assert key in problem and "using" in problem


async def test_an_unparsable_number_costs_only_its_own_setting_at_initialize_and_after(fixed_answers):
    s = await RawServer.start(env=fixed_answers)
    try:
        body = ('{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": null, "rootUri": null, '
                '"capabilities": {}, "initializationOptions": {"workerMode": "private", "debounceMs": 0, '
                '"maxSteps": 4, "contextTokens": 1e400, "languages": ["rust"]}}}').encode()
        await s.send(body)
        assert "result" in await s.response(1)  # it used to fail with OverflowError
        await s.notify("initialized", {})
        warning = await s.until(lambda m: m.get("method") == "window/showMessage")
        assert "contextTokens" in warning["params"]["message"] and "languages" not in warning["params"]["message"]
        for uri, lang in (("file:///a.py", "python"), ("file:///a.rs", "rust")):
            await s.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": lang, "version": 1,
                                                                     "text": COMPLETES}})
        params = lambda uri: {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 11},  # noqa: E731
                              "context": {"triggerKind": 2}}
        await s.request(2, "textDocument/inlineCompletion", params("file:///a.py"))
        assert (await s.response(2))["result"] is None  # languages: ["rust"] was applied
        await s.request(3, "textDocument/inlineCompletion", params("file:///a.rs"))
        assert (await s.response(3, timeout=60))["result"]["items"][0]["insertText"] == COMPLETION
        # through didChangeConfiguration: the good value applies, the bad one is told about
        await s.send(b'{"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": {"settings": '
                     b'{"diffill": {"contextTokens": 1e400, "languages": null}}}}')
        await s.until(lambda m: m.get("method") == "window/showMessage" and m is not warning
                      and "contextTokens" in m["params"]["message"])
        await s.request(4, "textDocument/inlineCompletion", params("file:///a.py"))
        assert (await s.response(4, timeout=60))["result"]["items"][0]["insertText"] == COMPLETION
    finally:
        await s.close()


# ---- a killed worker is gone only when all its threads are -------------------------------------

HALF_DEAD = r"""
import ctypes, socket, sys, threading, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(sys.argv[1]); sock.listen(8)
threading.Thread(target=time.sleep, args=(60,)).start()  # the worker's compute thread
print("listening", flush=True)
ctypes.CDLL(None).pthread_exit(None)  # the main thread ends: a zombie, the process and its socket live on
"""


def test_a_process_whose_main_thread_is_a_zombie_is_not_gone_while_its_threads_hold_the_socket(tmp_path):
    """A killed multi-threaded worker: its main thread shows "Z" before the compute thread has
    closed the listening socket, which then still takes connections."""
    import socket
    import subprocess
    import sys

    from diffill.lsp.server.worker_client import _process_gone

    path = str(tmp_path / "s.sock")
    proc = subprocess.Popen([sys.executable, "-c", HALF_DEAD, path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        else:
            pytest.fail("the main thread never became a zombie")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(path)  # the half-dead process still accepts
        assert not _process_gone(proc.pid)
        proc.kill()
        proc.wait(10)
        assert _process_gone(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
