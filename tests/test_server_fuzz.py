"""Fuzzed message sequences against the real server: it never dies and answers afterwards."""
import asyncio

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pygls.exceptions import JsonRpcException

from server_harness import editor, tiny_model  # noqa: F401

URIS = ["file:///f/a.py", "file:///f/b.rs", "file:///f/%F0%9F%98%80.js", "untitled:Untitled-1"]
METHODS = ["textDocument/inlineCompletion", "textDocument/completion", "textDocument/didOpen",
           "textDocument/didChange", "textDocument/didClose", "workspace/didChangeConfiguration",
           "$/cancelRequest", "diffill/stats", "textDocument/hover", "initialize", "shutdownNot"]

texts = st.text(alphabet=st.sampled_from(list("ab(){}:\n\r\t =") + ["😀", "漢", "\u0301", "\x00", "\ufeff"]),
                max_size=120)
ints = st.one_of(st.integers(-3, 40), st.sampled_from([2**31 - 1, 2**31, -(2**31)]))
json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 10) | st.text(max_size=8)
                           | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3),
                           max_leaves=8)
position = st.fixed_dictionaries({"line": ints, "character": ints})


def change_event():
    partial = st.fixed_dictionaries({"range": st.fixed_dictionaries({"start": position, "end": position}),
                                     "text": texts})
    return st.one_of(partial, st.fixed_dictionaries({"text": texts}))


messages = st.one_of(
    st.builds(lambda uri, lang, text, v: ("notify", "textDocument/didOpen",
                                         {"textDocument": {"uri": uri, "languageId": lang, "version": v,
                                                           "text": text}}),
              st.sampled_from(URIS), st.sampled_from(["python", "rust", "javascript", "plaintext", ""]), texts,
              ints),
    st.builds(lambda uri, v, changes: ("notify", "textDocument/didChange",
                                       {"textDocument": {"uri": uri, "version": v}, "contentChanges": changes}),
              st.sampled_from(URIS), ints, st.lists(change_event(), max_size=3)),
    st.builds(lambda uri, pos: ("request", "textDocument/inlineCompletion",
                                {"textDocument": {"uri": uri}, "position": pos, "context": {"triggerKind": 2}}),
              st.sampled_from(URIS), position),
    st.builds(lambda uri: ("notify", "textDocument/didClose", {"textDocument": {"uri": uri}}), st.sampled_from(URIS)),
    st.builds(lambda i: ("notify", "$/cancelRequest", {"id": i}), st.integers(0, 5) | st.text(max_size=4)),
    st.builds(lambda v: ("notify", "workspace/didChangeConfiguration", {"settings": {"diffill": v}}),
              st.fixed_dictionaries({}, optional={
                  "maxSteps": st.integers(-2, 6) | json_values, "canvasCap": st.integers(-2, 16) | json_values,
                  "debounceMs": st.integers(-5, 30) | json_values, "contextTokens": st.integers(-5, 3000),
                  "prefixShare": st.floats(-1, 2) | json_values, "languages": json_values, "colour": json_values})),
    st.builds(lambda kind, method, params: (kind, method, params), st.sampled_from(["request", "notify"]),
              st.sampled_from(METHODS), json_values),
)

BASELINE = {"maxSteps": 2, "canvasCap": 8, "debounceMs": 0, "contextTokens": 512, "languages": None}


@pytest.fixture
async def fuzz_editor(tiny_model):
    """One server for all the examples of a test (hypothesis runs them on the test's event loop)."""
    async with editor({"model": tiny_model, "workerMode": "private", **BASELINE}) as s:
        yield s


async def _play(s, sequence) -> None:
    pending = []
    for kind, method, params in sequence:
        if kind == "request":
            pending.append(asyncio.ensure_future(s.raw_request(method, params, timeout=60)))
        else:
            s.raw_notify(method, params)
    for fut in pending:
        try:
            await fut
        except JsonRpcException:
            pass  # an LSP error is a fine answer to a bad request
    s.raw_notify("workspace/didChangeConfiguration", {"settings": {"diffill": BASELINE}})


async def _check_alive(s) -> None:
    assert s.client._server.returncode is None, "the server died"
    stats = await s.stats()
    assert stats["requests"] >= 0
    uri = "file:///f/check.py"
    s.open(uri, "def f(x):\n    return ")
    await asyncio.wait_for(s.inline(uri, 1, 11), 60)  # answers (items or none), no error


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(sequence=st.lists(messages, min_size=1, max_size=15))
async def test_fuzzed_message_sequences_never_kill_the_server(fuzz_editor, sequence):
    await _play(fuzz_editor, sequence)
    await _check_alive(fuzz_editor)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(sequence=st.lists(messages, min_size=1, max_size=40))
async def test_long_fuzzed_message_sequences_never_kill_the_server(fuzz_editor, sequence):
    await _play(fuzz_editor, sequence)
    await _check_alive(fuzz_editor)
