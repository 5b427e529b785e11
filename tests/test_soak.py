"""Soak: tens of thousands of document notifications, and the server's memory stays flat."""
import pytest

from server_harness import NO_WORKER, RawServer, fixed_answers, rss_kb  # noqa: F401

NOTIFICATIONS = 40_000



async def _burst(server: RawServer, uri: str, rounds: int) -> None:
    text = "def f(x):\n    return x\n" * 5
    for i in range(rounds):
        await server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python",
                                                                      "version": 1, "text": text}})
        await server.notify("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"range": {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 5}},
                                "text": "g"}]})
        await server.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3},
                                                       "contentChanges": [{"text": text + f"# {i}\n"}]})
        await server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


async def _stats(server: RawServer, id_: int) -> dict:
    await server.request(id_, "diffill/stats", None)
    return (await server.response(id_, timeout=300))["result"]


@pytest.mark.slow
async def test_tens_of_thousands_of_notifications_keep_the_server_memory_flat(fixed_answers):
    server = await RawServer.start(env=fixed_answers)
    try:
        await server.initialize(NO_WORKER)
        await _burst(server, "file:///soak/warm.py", 500)  # warm up: caches, arenas
        await _stats(server, 1)
        before = rss_kb(server.proc.pid)
        await _burst(server, "file:///soak/a.py", NOTIFICATIONS // 4)
        stats = await _stats(server, 2)
        grown = rss_kb(server.proc.pid) - before
        assert stats["documents"] == 0 and stats["lsp_futures"] <= 2
        # before the fix every notification kept ~2 KB: 40,000 of them ~80 MB
        assert grown < 10_000, f"the server grew by {grown} kB over {NOTIFICATIONS} notifications"
    finally:
        await server.close()
