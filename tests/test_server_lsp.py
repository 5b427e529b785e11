"""The real `diffill serve` over stdio, with a tiny real checkpoint in a shared worker."""
import asyncio
import os
import subprocess
import sys
import time

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from server_harness import (COMPLETES, COMPLETES_AT, COMPLETION, capabilities, editor, fixed_answers, socket_dir,  # noqa: F401,E501
                            shared_worker, tiny_model)

# "é" as e + combining accent, an emoji outside the BMP, CJK: each counts differently per encoding
LINE = "label = 'e\u0301😀漢字' + "
SOURCE = f"import os\n\n\ndef greet(name):\n    {LINE}\n\n\nprint(greet('x'))\n"


def options(model, socket, **extra):
    return {"model": model, "workerMode": "shared", "workerSocket": socket, "workerIdleTimeout": 30,
            "debounceMs": 0, "maxSteps": 4, "canvasCap": 16, **extra}


def units(text: str, encoding: str) -> int:
    return {"utf-8": len(text.encode("utf-8")), "utf-16": len(text.encode("utf-16-le")) // 2,
            "utf-32": len(text)}[encoding]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
async def test_inline_completion_returns_an_item_at_the_cursor_in_the_negotiated_encoding(
        encoding, tiny_model, shared_worker, fixed_answers):
    caps = capabilities(encodings=[encoding] if encoding != "utf-16" else None)
    async with editor(options(tiny_model, shared_worker), caps, env=fixed_answers) as s:
        uri = "file:///project/greet.py"
        s.open(uri, SOURCE)
        character = units("    " + LINE, encoding)
        result = await s.inline(uri, 4, character)
        assert result is not None and len(result.items) == 1
        item = result.items[0]
        assert item.insert_text == "name"
        assert item.range.start == types.Position(4, character)
        assert item.range.end == types.Position(4, character)


async def test_clients_without_inline_completion_get_a_completion_item_with_a_text_edit(tiny_model, shared_worker,
                                                                                         fixed_answers):
    async with editor(options(tiny_model, shared_worker), capabilities(inline=False), env=fixed_answers) as s:
        uri = "file:///project/greet.py"
        s.open(uri, SOURCE)
        character = units("    " + LINE, "utf-16")
        result = await s.client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri), position=types.Position(4, character)))
        assert result.is_incomplete and len(result.items) == 1
        item = result.items[0]
        assert item.text_edit.range.start == types.Position(4, character)
        assert item.text_edit.new_text == "name" and item.label == "name"


async def test_invalid_settings_fall_back_to_defaults_with_one_message(tiny_model, shared_worker, fixed_answers):
    opts = options(tiny_model, shared_worker, maxSteps="many", colour="blue")
    async with editor(opts, env=fixed_answers) as s:
        warnings = [m for m in s.client.messages if m.type == types.MessageType.Warning]
        assert len(warnings) == 1
        assert "maxSteps" in warnings[0].message and "colour" in warnings[0].message
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        shown = await s.inline(uri, *COMPLETES_AT)  # still completes, with the default steps
        assert shown.items[0].insert_text == COMPLETION


async def test_configuration_changes_apply_without_a_restart(tiny_model, shared_worker, fixed_answers):
    async with editor(options(tiny_model, shared_worker), env=fixed_answers) as s:
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"diffill": {"languages": ["rust"]}}))
        assert (await s.inline(uri, *COMPLETES_AT)) is None  # python is no longer enabled
        s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"diffill": {"languages": None}}))
        assert (await s.inline(uri, *COMPLETES_AT)).items[0].insert_text == COMPLETION


async def test_a_missing_model_gives_one_clear_message_and_the_server_stays_up(tmp_path):
    missing = str(tmp_path / "no-such-model")
    opts = {"model": missing, "workerMode": "private", "debounceMs": 0}
    async with editor(opts) as s:
        status = await s.wait_ready()
        assert status["state"] == "error" and missing in status["message"]
        uri = "file:///project/a.py"
        s.open(uri, "x = ")
        assert (await s.inline(uri, 0, 4)) is None
        assert (await s.inline(uri, 0, 4)) is None
        errors = [m for m in s.client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and missing in errors[0].message
        assert (await s.stats())["requests"] == 2


async def test_malformed_requests_get_lsp_errors_not_a_crash(tiny_model, shared_worker, fixed_answers):
    async with editor(options(tiny_model, shared_worker), env=fixed_answers) as s:
        # params of the wrong shape: InvalidParams
        with pytest.raises(JsonRpcException) as error:
            await s.raw_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, {"textDocument": 5, "position": "here"})
        assert error.value.code == -32602
        with pytest.raises(JsonRpcException) as error:
            await s.raw_request("diffill/noSuchMethod", {})
        assert error.value.code == -32601
        # a document nobody opened, positions far outside the text: no answer, no error
        assert (await s.inline("file:///never/opened.py", 3, 4)) is None
        uri = "file:///project/a.py"
        s.open(uri, "x = 1\n")
        await s.inline(uri, 10**6, 10**6)
        s.edit(uri, 50, 50, "junk", end=(0, 0))  # a range past the end and reversed
        assert (await s.stats())["documents"] == 1


async def test_a_ten_megabyte_or_binary_document_does_not_stall_the_server(tiny_model, shared_worker, fixed_answers):
    async with editor(options(tiny_model, shared_worker), env=fixed_answers) as s:
        big = ("def f(x):\n    return x + 1\n" * 400_000)[: 10 * 1024 * 1024]
        uri = "file:///project/big.py"
        started = time.monotonic()
        s.open(uri, big)
        s.edit(uri, 200_000, 4, "y = ")
        await asyncio.wait_for(s.inline(uri, 200_000, 8), 60)
        binary = "file:///project/blob.py"
        s.open(binary, "\x00\x01\x02\xff" * 250_000)
        assert (await asyncio.wait_for(s.inline(binary, 0, 10), 10)) is None
        assert time.monotonic() - started < 60
        assert (await s.stats())["documents"] == 2


def test_the_server_process_never_imports_torch():
    code = "import sys, diffill.lsp.server.app, diffill.lsp.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_serve_check_reports_the_model_and_a_test_fill(tiny_model):
    settings = '{"model": "%s", "workerMode": "private"}' % tiny_model
    out = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "serve", "--check", "--settings", settings],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "loaded in" in out.stdout and "test fill took" in out.stdout and "check: ok" in out.stdout


def test_serve_check_explains_a_bad_setting_and_a_missing_model(tmp_path):
    settings = '{"model": "%s", "debounceMs": -3}' % (tmp_path / "nope")
    out = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "serve", "--check", "--settings", settings],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "debounceMs" in out.stdout and "does not exist" in out.stdout


async def test_the_model_load_is_reported_with_progress_and_status(tiny_model):
    # workerNice 0: at the default niceness a fill waits for every other process on a busy machine
    # (25 s under load here), and one past the fill deadline is cancelled, with no latency to report
    async with editor({"model": tiny_model, "workerMode": "private", "workerNice": 0}) as s:
        assert [st["state"] for st in s.statuses][0] == "loading"
        assert s.statuses[-1]["state"] == "ready" and tiny_model in s.statuses[-1]["message"]
        for _ in range(100):  # the end of the progress may trail the ready status by a message
            reports = [r for rs in s.client.progress_reports.values() for r in rs]
            if reports and isinstance(reports[-1], types.WorkDoneProgressEnd):
                break
            await asyncio.sleep(0.05)
        assert isinstance(reports[0], types.WorkDoneProgressBegin)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        assert any(isinstance(r, types.WorkDoneProgressReport) and r.percentage for r in reports)
        uri = "file:///project/a.py"
        s.open(uri, COMPLETES)
        await s.inline(uri, *COMPLETES_AT)  # random weights: whatever it shows, the fill ran
        for _ in range(600):  # the status after the fill carries its latency (on a loaded machine, later)
            if s.statuses[-1]["latency_ms"] is not None:
                break
            await asyncio.sleep(0.05)
        assert s.statuses[-1]["state"] == "ready" and s.statuses[-1]["latency_ms"] > 0


async def test_the_status_names_the_model_and_stats_give_the_shared_workers_log(fixed_answers, socket_dir):
    shared = {"workerMode": "shared", "workerSocket": os.path.join(socket_dir, "w.sock"), "debounceMs": 0}
    async with editor(shared, env=fixed_answers) as s:
        ready = await s.wait_ready()
        assert ready["model"].startswith("fixed answers from ") and "slow_reason" in ready
        log = (await s.stats())["worker"]["log"]
        assert log.endswith(".log") and os.path.isfile(log)  # the daemon writes there
    async with editor({"workerMode": "private", "debounceMs": 0}, env=fixed_answers) as s:
        await s.wait_ready()
        assert (await s.stats())["worker"]["log"] is None  # a private worker's messages: the server's stderr
