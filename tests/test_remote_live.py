"""The end-to-end checks against a real serving engine (`vllm serve`, a NIM), where one is given:

    DIFFILL_TEST_REMOTE_URL=https://gpu1:8000/v1        the server's base URL (required; skipped without)
    DIFFILL_TEST_REMOTE_KEY_ENV=DIFFILL_API_KEY         the variable that holds its key (default DIFFILL_API_KEY)
    DIFFILL_TEST_REMOTE_MODEL, DIFFILL_TEST_REMOTE_ENDPOINT (completions | chat), DIFFILL_TEST_REMOTE_CA

    DIFFILL_TEST_REMOTE_URL=http://127.0.0.1:8000/v1 .venv/bin/python -m pytest -q tests/test_remote_live.py

The same checks as the counterpart tests: /models, a fill, an abort that leaves the client healthy,
the real `diffill serve` answering with the status naming the server, `serve --check`, and the key
absent from everything the server writes.
"""
import asyncio
import json
import os
import subprocess
import sys

import pytest

import server_harness
from diffill.lsp.pipeline.fill import FillRequest
from diffill.lsp.server.remote.client import RemoteFill
from diffill.lsp.server.remote.config import parse_remote
from server_harness import COMPLETES, COMPLETES_AT, editor

URL = os.environ.get("DIFFILL_TEST_REMOTE_URL")
KEY_ENV = os.environ.get("DIFFILL_TEST_REMOTE_KEY_ENV", "DIFFILL_API_KEY")
pytestmark = pytest.mark.skipif(not URL, reason="DIFFILL_TEST_REMOTE_URL is not set (no real serving engine)")


def remote_settings() -> dict:
    raw = {"url": URL, "apiKeyEnv": KEY_ENV}
    for key, var in (("model", "DIFFILL_TEST_REMOTE_MODEL"), ("endpoint", "DIFFILL_TEST_REMOTE_ENDPOINT"),
                     ("caBundle", "DIFFILL_TEST_REMOTE_CA")):
        if os.environ.get(var):
            raw[key] = os.environ[var]
    raw["timeoutMs"] = int(os.environ.get("DIFFILL_TEST_REMOTE_TIMEOUT_MS", "20000"))
    return raw


def key() -> str | None:
    return os.environ.get(KEY_ENV) or None


async def test_models_a_fill_and_an_abort_that_leaves_the_client_healthy():
    cfg, problems = parse_remote(remote_settings())
    assert problems == []
    f = RemoteFill(cfg)
    try:
        await f.start()
        assert f.model and f.status["state"] == "ready"
        reply = await f.fill(FillRequest("live", "def total(values):\n    return ", "\n", 32, "python"))
        assert isinstance(reply.text, str) and reply.ms > 0
        slow = asyncio.ensure_future(f.fill(FillRequest("live", "import os\n\n\ndef walk(top):\n    ", "\n", 256,
                                                        "python")))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        again = await f.fill(FillRequest("live", "def area(r):\n    return ", "\n", 32, "python"))
        assert isinstance(again.text, str)
        assert f.stats["failed"] == 0
    finally:
        await f.close()


async def test_the_real_server_completes_and_names_the_backend_without_showing_the_key(capfd, monkeypatch):
    monkeypatch.setattr(server_harness, "SERVER", server_harness.SERVER + ["--log-level", "DEBUG"])
    options = {"backend": "remote", "remote": remote_settings(), "debounceMs": 0}
    async with editor(options) as s:
        ready = s.statuses[-1]
        assert ready["state"] == "ready", ready
        assert ready["message"].startswith("remote ")
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        await s.inline(uri, *COMPLETES_AT)
        stats = await s.stats()
        assert stats["remote"]["completed"] >= 1 and stats["remote"]["failed"] == 0
        seen = json.dumps(s.statuses) + json.dumps(stats) + repr(s.client.messages) + repr(s.client.log_messages)
    out, err = capfd.readouterr()
    if key():
        assert key() not in seen + out + err


def test_serve_check_passes():
    settings = json.dumps({"backend": "remote", "remote": remote_settings()})
    proc = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "serve", "--check", "--settings", settings],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if key():
        assert key() not in proc.stdout + proc.stderr
