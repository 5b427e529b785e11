"""Request lifecycle through the real server: cancellation, bursts, a killed worker, typing-through."""
import asyncio
import os
import signal

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from server_harness import COMPLETION, editor, fixed_answers, rss_kb, shared_worker, tiny_model  # noqa: F401

# A cursor at the start of a function body: the span is a whole definition, the longest canvas.
BODY = "import math\n\n\ndef area(radius):\n    \n"
BODY_CURSOR = (4, 4)


def options(model, socket=None, **extra):
    """A shared worker when a socket is given (warm across tests), else a private child."""
    mode = {"workerMode": "shared", "workerSocket": socket, "workerIdleTimeout": 30} if socket else \
        {"workerMode": "private"}
    return {"model": model, "debounceMs": 0, "maxSteps": 4, "canvasCap": 16, **mode, **extra}


async def wait_for_state(s, state: str, after: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if any(st["state"] == state for st in s.statuses[after:]):
            return
        await asyncio.sleep(0.002)
    raise TimeoutError(f"no {state!r} status; got {s.statuses[after:]}")


async def test_a_cancelled_request_answers_request_cancelled_and_frees_the_worker_within_one_step(tiny_model, shared_worker, fixed_answers):
    async with editor(options(tiny_model, shared_worker, maxSteps=256, canvasCap=256), env=fixed_answers) as s:
        uri = "file:///project/area.py"
        s.open(uri, BODY)
        seen = len(s.statuses)
        request = s.inline(uri, *BODY_CURSOR)
        await wait_for_state(s, "busy", seen)
        s.raw_notify("$/cancelRequest", {"id": s.last_id})
        with pytest.raises(JsonRpcException) as error:
            await request
        assert error.value.code == types.LSPErrorCodes.RequestCancelled
        # the worker stops at its next step and serves the next request
        for _ in range(200):
            worker = (await s.stats())["worker"]
            if worker.get("last_steps_after_cancel") is not None:
                break
            await asyncio.sleep(0.05)
        assert worker["cancelled"] == 1 and worker["last_steps_after_cancel"] <= 1
        assert 0 < worker["wasted_steps"] < 256
        s.client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"maxSteps": 4, "canvasCap": 16}))
        assert (await s.inline(uri, *BODY_CURSOR)).items[0].insert_text == "return math.pi * radius ** 2"


async def test_a_burst_of_edits_completes_only_the_newest_and_stays_bounded(tiny_model, shared_worker, fixed_answers):
    async with editor(options(tiny_model, shared_worker, debounceMs=75), env=fixed_answers) as s:
        uri = "file:///project/burst.py"
        s.open(uri, "def total(values):\n    return \n")
        rss_before = rss_kb(s.client._server.pid)
        for round_ in range(3):
            requests = []
            for i in range(50):
                s.edit(uri, 1, 11 + 50 * round_ + i, "x")
                requests.append(s.inline(uri, 1, 12 + 50 * round_ + i))
            results = await asyncio.wait_for(asyncio.gather(*requests), 120)
            assert all(r is None for r in results[:-1])
            assert results[-1] is not None and [i.insert_text for i in results[-1].items] == [" + 1"]
            stats = await s.stats()
            assert stats["inflight"] == 0 and stats["worker"]["pending"] == 0
        assert stats["model_fills"] <= 3 * 2  # one per burst (two if the first was cancelled late)
        assert stats["superseded"] >= 3 * 49
        assert stats["cache_entries"] <= 6
        assert rss_kb(s.client._server.pid) - rss_before < 50_000  # the server's memory stays flat


async def test_a_worker_killed_mid_request_is_restarted_and_the_next_request_is_served(tiny_model, fixed_answers):
    async with editor(options(tiny_model, maxSteps=32, canvasCap=256), env=fixed_answers) as s:
        uri = "file:///project/area.py"
        s.open(uri, BODY)
        pid = (await s.stats())["worker"]["status"]["pid"]
        seen = len(s.statuses)
        request = s.inline(uri, *BODY_CURSOR)
        await wait_for_state(s, "busy", seen)
        os.kill(pid, signal.SIGKILL)
        first = await asyncio.wait_for(request, 120)  # retried once on a fresh worker: answered, no error
        assert first is None or len(first.items) == 1
        s.edit(uri, 4, 4, "r")
        second = await asyncio.wait_for(s.inline(uri, 4, 5), 120)
        assert second is not None and len(second.items) == 1  # "r" typed: the rest of the answer, or a new one
        stats = await s.stats()
        assert stats["worker"]["status"]["pid"] != pid
        assert stats["worker"]["retries"] + stats["worker"]["restarts"] >= 1


async def test_typing_through_a_shown_completion_is_answered_from_the_cache_in_under_5_ms(tiny_model, shared_worker, fixed_answers):
    async with editor(options(tiny_model, shared_worker), env=fixed_answers) as s:
        uri = "file:///project/t.py"
        s.open(uri, "def total(values):\n    return \n")
        shown = (await s.inline(uri, 1, 11)).items[0].insert_text
        assert shown == COMPLETION
        for k in (1, 2):
            s.edit(uri, 1, 11 + _utf16(shown[: k - 1]), shown[k - 1])
            col = 11 + _utf16(shown[:k])
            result = await s.inline(uri, 1, col)
            assert result.items[0].insert_text == shown[k:]
            assert result.items[0].range.start == types.Position(1, col)
            stats = await s.stats()
            assert stats["last_source"] == "cache" and stats["last_server_ms"] < 5.0
        assert stats["model_fills"] == 1
        # typing something else than the completion is a miss
        col = 11 + _utf16(shown[:2])
        s.edit(uri, 1, col, "\u2603")
        await s.inline(uri, 1, col + 1)
        assert (await s.stats())["last_source"] != "cache"



def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
