"""The real `diffill serve` over stdio with `"backend": "remote"`, against the vLLM counterpart."""
import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from lsprotocol import types

import server_harness
from server_harness import COMPLETES, COMPLETES_AT, COMPLETION, editor
from vllm_counterpart import Behaviour, Counterpart

SECRET = "sk-live-4b1d9e7a2c5f8e0d6a3b"
WRONG = "sk-wrong-7c2e9a4d1f6b3e8a0d5c"
AREA = "import math\n\n\ndef area(radius):\n    \n"
ANSWERS = {"    return ": COMPLETION, "def area(radius):\n    ": "return math.pi * radius ** 2"}


def options(url, **remote):
    return {"backend": "remote", "remote": {"url": url, **remote}, "debounceMs": 0, "adaptiveDebounce": False}


@pytest.fixture
def cp():
    with Counterpart(Behaviour(answers=dict(ANSWERS))) as server:
        yield server


def _maps(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.read()
    except OSError:
        return ""


async def test_completions_come_from_the_remote_server_and_the_status_names_it(cp, tmp_path):
    sock = str(tmp_path / "w.sock")
    async with editor({**options(cp.url), "workerSocket": sock}) as s:
        ready = [st for st in s.statuses if st["state"] == "ready"][-1]
        assert f"remote 127.0.0.1:{cp.port} google/diffusiongemma-26B-A4B-it" in ready["message"]
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        result = await s.inline(uri, *COMPLETES_AT)
        assert result.items[0].insert_text == COMPLETION
        await asyncio.sleep(0.1)
        assert isinstance(s.statuses[-1]["latency_ms"], (int, float))
        stats = await s.stats()
        assert stats["remote"]["completed"] == 1 and stats["worker"]["status"]["state"] == "stopped"
        pid = s.client._server.pid
        maps = _maps(pid)
        if maps:
            assert "libtorch" not in maps, "the remote backend imported torch"
    assert not os.path.exists(sock), "no worker was started"
    [post] = cp.app.completions()
    assert "suffix" not in post.body and post.body["prompt"].endswith("def total(values):\n    return ")


async def test_a_superseded_request_is_aborted_by_closing_its_connection(cp):
    cp.behaviour.latency_ms = 8000  # far longer than an abort takes, even on a loaded machine
    async with editor(options(cp.url)) as s:
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        first = s.inline(uri, *COMPLETES_AT)
        for _ in range(1000):
            if cp.app.completions():
                break
            await asyncio.sleep(0.01)
        cp.behaviour.latency_ms = 0
        s.replace_all(uri, AREA)
        sent = time.monotonic()
        second = s.inline(uri, 4, 4)
        assert (await first) is None
        assert (await second).items[0].insert_text == "return math.pi * radius ** 2"
        posts = cp.app.completions()
        for _ in range(500):  # the counterpart notices the closed connection on its own thread
            if posts[0].disconnected:
                break
            await asyncio.sleep(0.01)
        assert len(posts) == 2 and posts[0].disconnected and not posts[1].disconnected, json.dumps(await s.stats())
        aborted_in = posts[1].arrived - sent
        assert aborted_in < 4.0  # not after the first canvas (8 s)
        stats = await s.stats()
        assert stats["remote"]["aborted"] == 1


async def test_the_key_never_appears_in_logs_statuses_messages_or_stats(cp, capfd, monkeypatch):
    monkeypatch.setattr(server_harness, "SERVER", server_harness.SERVER + ["--log-level", "DEBUG"])
    cp.behaviour.api_key = SECRET
    seen = []
    async with editor(options(cp.url), env={"DIFFILL_API_KEY": SECRET}) as s:
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        assert (await s.inline(uri, *COMPLETES_AT)).items[0].insert_text == COMPLETION
        seen += [json.dumps(s.statuses), json.dumps(await s.stats()), repr(s.client.messages),
                 repr(s.client.log_messages)]
    assert cp.records[-1].headers["authorization"] == f"Bearer {SECRET}"
    async with editor(options(cp.url, apiKeyEnv="TEAM_KEY"), env={"TEAM_KEY": WRONG}) as s:
        errors = [m.message for m in s.client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and "TEAM_KEY" in errors[0] and "refused the key" in errors[0]
        s.open("file:///project/a.py", COMPLETES)
        assert (await s.inline("file:///project/a.py", *COMPLETES_AT)) is None
        seen += [json.dumps(s.statuses), json.dumps(await s.stats()), repr(s.client.messages),
                 repr(s.client.log_messages)]
    out, err = capfd.readouterr()
    seen += [out, err]
    assert "HTTP Request: POST" in err or "httpx" in err or "diffill" in err  # DEBUG logging was on
    for text in seen:
        assert SECRET not in text and WRONG not in text


async def test_a_timeout_gives_no_completion_and_a_status_note_not_a_pop_up(cp):
    cp.behaviour.first_byte_ms = 3000
    async with editor(options(cp.url, timeoutMs=400)) as s:
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        assert (await s.inline(uri, *COMPLETES_AT)) is None
        await asyncio.sleep(0.1)
        assert not [m for m in s.client.messages if m.type == types.MessageType.Error]
        assert s.statuses[-1]["state"] == "ready" and "no completion" in s.statuses[-1]["message"]


async def test_the_backend_can_change_at_runtime(cp, tmp_path):
    async with editor({"backend": "remote", "remote": {"url": "http://gpu1.example:8000/v1"},
                       "debounceMs": 0}) as s:
        assert s.statuses[-1]["state"] == "error" and "allowInsecureHttp" in s.statuses[-1]["message"]
        s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"diffill": {"remote": {"url": cp.url}}}))
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        assert (await s.inline(uri, *COMPLETES_AT)).items[0].insert_text == COMPLETION


def test_serve_check_probes_models_and_one_tiny_fill_without_showing_the_key(cp):
    cp.behaviour.api_key = SECRET
    settings = json.dumps(options(cp.url))
    env = {**os.environ, "DIFFILL_API_KEY": SECRET}
    proc = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "serve", "--check", "--settings", settings],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "google/diffusiongemma-26B-A4B-it" in proc.stdout and "check: ok" in proc.stdout
    assert "DIFFILL_API_KEY" in proc.stdout and SECRET not in proc.stdout + proc.stderr
    assert [r.path for r in cp.records if r.path.startswith("/v1")][:2] == ["/v1/models", "/v1/completions"]
    bad = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "serve", "--check", "--settings", settings],
                         capture_output=True, text=True, env={**os.environ, "DIFFILL_API_KEY": WRONG}, timeout=60)
    assert bad.returncode == 1 and "refused the key" in bad.stdout and WRONG not in bad.stdout + bad.stderr
