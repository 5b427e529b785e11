"""The LSP transport and lifecycle of the real server: framing mistakes cost one message at most,
a huge Content-Length is refused, requests outside initialize..shutdown get the errors LSP names,
`exit` gives the exit status LSP names, and notifications leave nothing behind."""
import asyncio
import json
import random

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from diffill.lsp.server import framing
from server_harness import NO_WORKER, RawServer, fixed_answers  # noqa: F401

STATS = "diffill/stats"


@pytest.fixture
async def server(fixed_answers):
    s = await RawServer.start(env=fixed_answers)
    await s.initialize(NO_WORKER)
    yield s
    await s.close()


# ---- framing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["content-length: {n}\r\n\r\n", "Content-Length:{n}\r\n\r\n",
                                    "CONTENT-LENGTH :  {n}\n\n", "Content-Type: application/vscode-jsonrpc; "
                                    "charset=utf-8\r\ncontent-length:{n}\r\n\r\n"])
async def test_header_names_in_any_case_with_or_without_spaces_are_read(server, header):
    await server.request(1, STATS, None, header=header)
    assert "result" in await server.response(1, timeout=10)
    await server.request(2, STATS, None)  # and the next, well-framed one too
    assert "result" in await server.response(2, timeout=10)


@pytest.mark.parametrize("delta", [-10, -1, 1, 10])
async def test_a_wrong_content_length_costs_at_most_that_message(server, delta):
    broken = server.frame({"jsonrpc": "2.0", "id": 1, "method": STATS, "params": None}, delta=delta)
    good = server.frame({"jsonrpc": "2.0", "id": 2, "method": STATS, "params": None})
    await server.send_raw(broken + good)
    assert "result" in await server.response(2, timeout=10)
    if delta > 0:  # too long: the message is whole and is answered as well
        assert "result" in await server.response(1, timeout=10)
    else:  # too short: it is dropped, with a parse error instead of silence
        error = await server.until(lambda m: m.get("id") is None and "error" in m, timeout=10)
        assert error["error"]["code"] == -32700
    await server.request(3, STATS, None)
    assert "result" in await server.response(3, timeout=10)


async def test_a_too_long_content_length_on_the_last_message_does_not_hang(server):
    await server.request(1, STATS, None, delta=10)  # nothing follows: the server must not wait for 10 bytes
    assert "result" in await server.response(1, timeout=10)


async def test_a_huge_content_length_is_refused_and_the_server_keeps_serving(server):
    await server.send_raw(b"Content-Length: 99999999999999\r\n\r\n" + json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": STATS}).encode())
    await server.send_raw(b"Content-Length: " + b"9" * 400 + b"\r\n\r\n{}")
    await server.request(2, STATS, None)
    assert "result" in await server.response(2, timeout=10)
    assert server.proc.returncode is None
    await server.close()
    assert "exceeds the" in await server.stderr_text()


# The reader on its own, against every kind of framing mistake at once (no server, milliseconds).

def _frame(body: bytes, style: int, delta: int) -> bytes:
    headers = ["Content-Length: {n}\r\n\r\n", "content-length:{n}\r\n\r\n", "CONTENT-LENGTH  :{n}\n\n",
               "Content-Type: x\r\nContent-Length: {n}\r\n\r\n", "\r\nContent-Length: {n}\r\n\r\n"]
    return headers[style].format(n=len(body) + delta).encode() + body


@hsettings(max_examples=200, deadline=None)
@given(plan=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0, 0, 0, -10, -3, -1, 1, 3, 10]),
                               st.text(max_size=30)), min_size=1, max_size=12),
       chunk=st.integers(1, 64), seed=st.integers(0, 1000))
def test_the_reader_recovers_every_message_whose_own_length_is_right(plan, chunk, seed):
    stream, expected = b"", []
    for i, (style, delta, text) in enumerate(plan):
        body = json.dumps({"jsonrpc": "2.0", "id": i, "method": "m", "params": {"t": text}}).encode()
        stream += _frame(body, style, delta)
        if delta >= 0:  # right, or too long (then the whole message is still there)
            expected.append(i)
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(stream):
        n = rng.randint(1, chunk)
        pieces.append(stream[at:at + n])
        at += n

    async def main():
        it = iter(pieces)

        async def read_chunk():
            return next(it, b"")

        problems = []
        reader = framing.MessageReader(read_chunk, stall_s=0.05, on_problem=problems.append)
        got = []
        while (body := await reader.next_body()) is not None:
            try:
                got.append(json.loads(body)["id"])
            except ValueError:
                salvaged = reader.salvage(body)
                if salvaged is not None:
                    got.append(json.loads(salvaged)["id"])
                else:
                    reader.unreadable(body, ValueError("not JSON"))
        return got, problems

    got, problems = asyncio.run(main())
    assert got == expected
    if len(expected) < len(plan):
        assert problems  # a dropped message is always reported


def test_the_reader_never_buffers_a_refused_length_or_an_endless_line():
    async def main():
        sent = [b"Content-Length: 99999999999999\r\n\r\n", b"x" * (1 << 20), b"y" * (1 << 20),
                b"Content-Length: 2\r\n\r\n{}"]
        it = iter(sent)

        async def read_chunk():
            return next(it, b"")

        reader = framing.MessageReader(read_chunk, on_problem=lambda p: None)
        body = await reader.next_body()
        return body, len(reader._buf)

    body, left = asyncio.run(main())
    assert body == b"{}" and left == 0


# ---- the lifecycle -----------------------------------------------------------------------------

async def test_requests_before_initialize_get_server_not_initialized(fixed_answers):
    s = await RawServer.start(env=fixed_answers)
    try:
        await s.request(1, STATS, None)
        assert (await s.response(1, timeout=20))["error"]["code"] == -32002
        await s.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///a.py", "languageId": "python",
                                                                 "version": 1, "text": "x"}})
        await s.initialize(NO_WORKER, id_=2)
        await s.request(3, STATS, None)
        assert (await s.response(3))["result"]["documents"] == 0  # the early notification was dropped
        await s.request(4, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        assert (await s.response(4))["error"]["code"] == -32600  # initialize only once
    finally:
        await s.close()


async def test_after_shutdown_requests_get_invalid_request_and_exit_gives_0(fixed_answers):
    s = await RawServer.start(env=fixed_answers)
    await s.initialize(NO_WORKER)
    await s.request(1, "shutdown", None)
    assert (await s.response(1))["result"] is None
    await s.request(2, STATS, None)
    reply = await s.response(2, timeout=10)
    assert reply["error"]["code"] == -32600
    await s.notify("exit", None)
    assert await asyncio.wait_for(s.proc.wait(), 20) == 0


async def test_exit_without_shutdown_gives_1(fixed_answers):
    s = await RawServer.start(env=fixed_answers)
    await s.initialize(NO_WORKER)
    await s.notify("exit", None)
    assert await asyncio.wait_for(s.proc.wait(), 20) == 1


# ---- notifications leave nothing behind --------------------------------------------------------

async def test_document_notifications_keep_no_future_behind(server):
    uri = "file:///soak/a.py"
    for i in range(1000):
        await server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python",
                                                                      "version": 1, "text": "x = 1\n"}})
        await server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                                       "contentChanges": [{"text": f"x = {i}\n"}]})
        await server.notify("workspace/didChangeConfiguration", {"settings": {"diffill": {"debounceMs": 0}}})
        await server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    await server.request(1, STATS, None)
    stats = (await server.response(1, timeout=60))["result"]
    assert stats["documents"] == 0
    assert stats["lsp_futures"] <= 2  # before: one Future per notification, kept forever
