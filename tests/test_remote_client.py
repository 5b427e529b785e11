"""The remote fill against the vLLM counterpart (tests/vllm_counterpart.py), in this process."""
import asyncio
import dataclasses
import time

import pytest

from diffill.lsp.pipeline.fill import FillRequest
from diffill.lsp.server.remote.client import RemoteError, RemoteFill
from diffill.lsp.server.remote.config import RemoteSettings
from diffill.lsp.wire import prompt_format
from vllm_counterpart import TOKEN_CHARS, Behaviour, Counterpart, Proxy, make_certificates

PREFIX = "def total(values):\n    return "
ANSWERS = {"    return ": "sum(values)"}
SECRET = "sk-test-9f8e7d6c5b4a39281706"


def req(prefix=PREFIX, suffix="\n", canvas=32, doc="file:///a.py", **kw) -> FillRequest:
    return FillRequest(doc, prefix, suffix, canvas, "python", **kw)


@pytest.fixture
def cp():
    with Counterpart(Behaviour(answers=dict(ANSWERS))) as server:
        yield server


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(str(tmp_path_factory.mktemp("tls")))


def remote(url, statuses=None, env=None, **kw) -> RemoteFill:
    return RemoteFill(RemoteSettings(url=url, **kw), (statuses if statuses is not None else []).append, env or {})


async def test_a_fill_is_one_post_with_the_rendered_prompt_and_never_a_suffix(cp):
    f = remote(cp.url)
    try:
        reply = await f.fill(req(max_steps=12))
    finally:
        await f.close()
    assert reply.text == "sum(values)"
    [post] = cp.app.completions()
    body = post.body
    assert "suffix" not in body
    assert body["model"] == "google/diffusiongemma-26B-A4B-it"  # null model: the first /models lists
    assert body["prompt"] == prompt_format.chat_text(PREFIX, "\n", "python")
    assert body["max_tokens"] == 32 and body["stop"] == ["\n```", "```"] and body["stream"] is True
    assert body["vllm_xargs"] == {"diffusion_canvas_length": 32, "diffusion_max_steps": 12}
    assert "prompt_logprobs" not in body


async def test_answers_longer_than_a_canvas_arrive_one_canvas_per_chunk_and_plain_json_works(cp):
    long = "x = 1\n" * 40  # 240 characters: 60 counterpart tokens, 4 canvases of 16
    cp.behaviour.answers = {"    return ": long}
    f = remote(cp.url)
    g = remote(cp.url, stream=False)
    try:
        streamed = await f.fill(req(canvas=16, suffix=""))
        plain = await g.fill(req(canvas=16, suffix=""))
    finally:
        await f.close()
        await g.close()
    assert streamed.text == long[: 16 * TOKEN_CHARS]  # max_tokens is the canvas: one canvas
    assert plain.text == streamed.text
    cp.behaviour.canvas = 8
    f = remote(cp.url, vllm_extensions=False)
    try:
        multi = await f.fill(req(canvas=32, suffix=""))
    finally:
        await f.close()
    assert multi.text == long[: 32 * TOKEN_CHARS]  # 4 chunks of 8 tokens, joined


async def test_a_server_that_rejects_the_extensions_gets_one_retry_without_and_never_again(cp):
    cp.behaviour.known_xargs = frozenset()  # an older vLLM: 400 on any vllm_xargs
    f = remote(cp.url)
    try:
        first = await f.fill(req())
        second = await f.fill(req(doc="file:///b.py"))
    finally:
        await f.close()
    assert first.text == second.text == "sum(values)"
    posts = cp.app.completions()
    assert [("vllm_xargs" in p.body, p.status) for p in posts] == [(True, 400), (False, 200), (False, 200)]
    assert f.stats["extensions"] is False


async def test_a_server_that_takes_the_extensions_keeps_getting_them(cp):
    f = remote(cp.url)
    try:
        await f.fill(req())
        await f.fill(req(canvas=16))
    finally:
        await f.close()
    assert [p.body["vllm_xargs"]["diffusion_canvas_length"] for p in cp.app.completions()] == [32, 16]


async def test_429_and_503_are_retried_with_backoff_honouring_retry_after(cp):
    cp.behaviour.script = [(429, {"retry-after": "0.2"}, "rate limited"), (503, {}, "overloaded")]
    f = remote(cp.url)
    try:
        await f.start()
        t0 = time.monotonic()
        reply = await f.fill(req())
        waited = time.monotonic() - t0
    finally:
        await f.close()
    assert reply.text == "sum(values)"
    assert [p.status for p in cp.app.completions()] == [429, 503, 200]
    assert waited >= 0.1 and f.stats["retries"] == 2


async def test_a_busy_server_past_the_retries_is_no_completion_and_a_quiet_status(cp):
    cp.behaviour.script = [(503, {}, "overloaded")] * 3
    statuses = []
    f = remote(cp.url, statuses, retries=1)
    try:
        await f.start()
        with pytest.raises(RemoteError) as err:
            await f.fill(req())
    finally:
        await f.close()
    assert err.value.kind == "busy"
    assert statuses[-1]["state"] == "ready" and "no completion" in statuses[-1]["message"]
    assert not any(s["state"] == "error" for s in statuses)


async def test_a_refused_key_is_one_message_naming_the_variable_and_requests_stop_for_a_while(cp):
    cp.behaviour.api_key = SECRET
    statuses = []
    f = remote(cp.url, statuses, env={"TEAM_KEY": "wrong-key-1234"}, api_key_env="TEAM_KEY")
    try:
        with pytest.raises(RemoteError) as err:
            await f.fill(req())
        n = len(cp.records)
        with pytest.raises(RemoteError):
            await f.fill(req())
    finally:
        await f.close()
    assert err.value.kind == "auth" and "TEAM_KEY" in str(err.value) and "wrong-key" not in str(err.value)
    assert [s["state"] for s in statuses].count("error") == 1 and "TEAM_KEY" in statuses[-1]["message"]
    assert len(cp.records) == n, "the breaker holds requests after a refused key"
    g = remote(cp.url, env={"TEAM_KEY": SECRET}, api_key_env="TEAM_KEY")
    try:
        assert (await g.fill(req())).text == "sum(values)"
    finally:
        await g.close()
    assert cp.records[-1].headers["authorization"] == f"Bearer {SECRET}"


async def test_the_circuit_breaker_opens_after_failures_and_a_probe_closes_it(cp):
    f = remote(cp.url, retries=0)
    try:
        await f.start()
        f.breaker.base = f.breaker.cooldown = 0.3
        cp.behaviour.script = [(500, {}, "engine core died")] * 3
        for _ in range(3):
            with pytest.raises(RemoteError):
                await f.fill(req())
        sent = len(cp.app.completions())
        with pytest.raises(RemoteError) as err:
            await f.fill(req())
        assert err.value.kind == "paused" and len(cp.app.completions()) == sent  # failed fast, no request
        await asyncio.sleep(0.35)
        assert (await f.fill(req())).text == "sum(values)"  # the half-open probe
        assert f.breaker.state == "closed"
    finally:
        await f.close()


async def test_a_slow_first_byte_past_the_deadline_is_a_timeout_without_an_error_status(cp):
    cp.behaviour.first_byte_ms = 2000
    statuses = []
    f = remote(cp.url, statuses, timeout_ms=400)
    try:
        await f.start()
        t0 = time.monotonic()
        with pytest.raises(RemoteError) as err:
            await f.fill(req())
        took = time.monotonic() - t0
        await asyncio.sleep(0.1)
    finally:
        await f.close()
    assert err.value.kind == "timeout" and took < 1.5
    assert statuses[-1]["state"] == "ready" and "did not answer within 0.4 s" in statuses[-1]["message"]
    assert cp.app.completions()[0].disconnected, "the request is aborted at the deadline"


async def test_a_stalled_stream_keeps_what_arrived(cp):
    cp.behaviour.canvas = 4
    cp.behaviour.stall_after_first_chunk = True
    cp.behaviour.answers = {"    return ": "sum(values) + total(values)"}
    f = remote(cp.url, timeout_ms=500, vllm_extensions=False)
    try:
        reply = await f.fill(req())
    finally:
        await f.close()
    assert reply.text == "sum(values) + total(values)"[: 4 * TOKEN_CHARS] and f.stats["partial"] == 1


async def test_a_chunk_with_a_finish_reason_ends_the_fill_even_if_the_stream_then_stalls(cp):
    cp.behaviour.stall_after_first_chunk = True
    cp.behaviour.stall_first_chunk_finishes = True
    f = remote(cp.url, timeout_ms=3000)
    try:
        await f.start()
        t0 = time.monotonic()
        reply = await f.fill(req())
        took = time.monotonic() - t0
    finally:
        await f.close()
    assert reply.text == "sum(values)" and took < 1.0


async def test_a_newer_fill_for_the_same_document_aborts_the_older_by_closing_its_connection(cp):
    cp.behaviour.latency_ms = 1500
    f = remote(cp.url)
    try:
        await f.start()
        older = asyncio.ensure_future(f.fill(req(prefix="x = ")))
        await asyncio.sleep(0.2)
        newer_task = asyncio.ensure_future(f.fill(req()))
        with pytest.raises(asyncio.CancelledError):
            await older
        cp.behaviour.latency_ms = 0
        for _ in range(500):
            if cp.app.completions()[0].disconnected:
                break
            await asyncio.sleep(0.02)
        assert cp.app.completions()[0].disconnected
        assert (await newer_task).text == "sum(values)"
    finally:
        await f.close()
    assert f.stats["aborted"] == 1 and f.stats["superseded"] == 1


async def test_at_most_max_inflight_requests_are_in_flight(cp):
    cp.behaviour.latency_ms = 200
    f = remote(cp.url, max_inflight=2)
    try:
        await f.start()
        replies = await asyncio.gather(*(f.fill(req(doc=f"file:///{i}.py")) for i in range(5)))
    finally:
        await f.close()
    assert all(r.text == "sum(values)" for r in replies)
    spans = [(r.arrived, r.done) for r in cp.app.completions()]
    most = max(sum(1 for a, d in spans if a <= t < d) for t, _ in spans)
    assert most <= 2
    assert max(r.queue_ms for r in replies) > 100  # the later ones waited for a slot


async def test_the_chat_endpoint_sends_messages_and_gets_the_middle_out_of_a_fenced_answer(cp):
    cp.behaviour.chat_only = True
    f = remote(cp.url, endpoint="chat")
    try:
        reply = await f.fill(req())
    finally:
        await f.close()
    assert reply.text == "sum(values)"
    [post] = cp.app.completions()
    assert post.path == "/v1/chat/completions" and post.body["messages"][0]["role"] == "user"
    assert "prompt" not in post.body and "suffix" not in post.body
    assert prompt_format.CURSOR in post.body["messages"][0]["content"]


async def test_completions_on_a_chat_only_server_say_which_endpoint_to_use(cp):
    cp.behaviour.chat_only = True
    statuses = []
    f = remote(cp.url, statuses)
    try:
        with pytest.raises(RemoteError):
            await f.fill(req())
    finally:
        await f.close()
    assert statuses[-1]["state"] == "error" and 'remote.endpoint to "chat"' in statuses[-1]["message"]


async def test_a_configured_model_the_server_does_not_serve_is_an_error(cp):
    statuses = []
    f = remote(cp.url, statuses, model="google/gemma-2b")
    try:
        with pytest.raises(RemoteError):
            await f.start()
    finally:
        await f.close()
    assert "does not serve the model google/gemma-2b" in statuses[-1]["message"]


async def test_token_counts_use_the_tokenizer_when_there_is_one_and_say_when_they_are_estimated(cp, tmp_path):
    from diffill.model.engine.tokenizer import TURN_CLOSE, TURN_OPEN, byte_level_tokenizer
    byte_level_tokenizer([TURN_OPEN, TURN_CLOSE]).save(str(tmp_path / "tokenizer.json"))
    exact = remote(cp.url, tokenizer=str(tmp_path))
    measured = remote(cp.url)
    try:
        await exact.start()
        await measured.start()
        cp.behaviour.tokenize = False
        guessed = remote(cp.url)
        await guessed.start()
        await guessed.close()
    finally:
        await exact.close()
        await measured.close()
    assert exact.counter.count("hello world") == 11 and "model's tokenizer" in exact.status["message"]
    assert "measured with the server's /tokenize" in measured.status["message"]
    assert abs(measured.counter.chars_per_token - 0.9 * TOKEN_CHARS) < 0.2
    assert "no tokenizer found" in guessed.status["message"]


async def test_the_clamped_format_pins_the_suffixs_first_tokens_in_a_seeded_canvas(cp, tmp_path):
    from diffill.model.engine.tokenizer import TURN_CLOSE, TURN_OPEN, byte_level_tokenizer
    byte_level_tokenizer([TURN_OPEN, TURN_CLOSE]).save(str(tmp_path / "tokenizer.json"))
    cp.behaviour.answer = lambda body: "sum(values)\nprint(1)"
    f = remote(cp.url, tokenizer=str(tmp_path), prompt_format="clamped")
    try:
        reply = await f.fill(req(suffix="\nprint(1)\n", canvas=16))
    finally:
        await f.close()
    [post] = cp.app.completions()
    x = post.body["vllm_xargs"]
    assert post.body["prompt"] == PREFIX
    assert len(x["diffusion_seed_canvas"]) == 16 and x["diffusion_pinned"] == list(range(12, 16))
    assert reply.text == "sum(values)"  # cut before the pinned text "\npri"


async def test_https_with_a_ca_bundle_and_without_one_a_clear_certificate_message(certs):
    with Counterpart(Behaviour(answers=dict(ANSWERS)), tls=(certs["cert"], certs["key"])) as server:
        good = remote(server.url_for("localhost"), ca_bundle=certs["ca"])
        statuses = []
        bad = remote(server.url_for("localhost"), statuses)
        loud = remote(server.url_for("localhost"), insecure_skip_tls_verify=True)
        try:
            assert (await good.fill(req())).text == "sum(values)"
            with pytest.raises(RemoteError):
                await bad.start()
            assert (await loud.fill(req())).text == "sum(values)"
        finally:
            for f in (good, bad, loud):
                await f.close()
    assert "not trusted" in statuses[-1]["message"] and "remote.caBundle" in statuses[-1]["message"]
    assert "TLS VERIFICATION IS OFF" in loud.status["message"]


async def test_https_through_a_proxy_is_a_tunnel_and_loopback_is_never_proxied(certs):
    proxy = Proxy()
    try:
        with Counterpart(Behaviour(answers=dict(ANSWERS), api_key=SECRET), tls=(certs["cert"], certs["key"])) as server:
            env = {"HTTPS_PROXY": proxy.url, "DIFFILL_API_KEY": SECRET}
            far = remote(server.url_for("counterpart.test"), env=env, ca_bundle=certs["ca"])
            near = remote(server.url_for("127.0.0.1"), env=env, ca_bundle=certs["ca"])
            bypass = remote(server.url_for("counterpart.test"), env={**env, "NO_PROXY": "counterpart.test"},
                            ca_bundle=certs["ca"], connect_timeout_ms=500)
            try:
                assert (await far.fill(req())).text == "sum(values)"
                tunnelled = len(proxy.requests)
                assert (await near.fill(req())).text == "sum(values)"
                assert len(proxy.requests) == tunnelled, "loopback went through the proxy"
                with pytest.raises(RemoteError):
                    await bypass.start()  # direct: counterpart.test does not resolve here
            finally:
                for f in (far, near, bypass):
                    await f.close()
    finally:
        proxy.stop()
    assert tunnelled >= 1 and all(r["method"] == "CONNECT" for r in proxy.requests)
    assert proxy.requests[0]["target"] == f"counterpart.test:{server.port}"
    assert all("authorization" not in r["headers"] for r in proxy.requests)


async def test_plain_http_through_a_proxy_when_explicitly_allowed(cp):
    proxy = Proxy()
    try:
        f = remote(cp.url_for("counterpart.test"), env={"HTTP_PROXY": proxy.url}, allow_insecure_http=True)
        try:
            assert (await f.fill(req())).text == "sum(values)"
        finally:
            await f.close()
    finally:
        proxy.stop()
    assert proxy.requests and proxy.requests[0]["target"].startswith(f"http://counterpart.test:{cp.port}/v1/")


async def test_a_redirect_is_not_followed_so_the_key_goes_nowhere_else(cp):
    with Counterpart(Behaviour(answers=dict(ANSWERS))) as elsewhere:
        cp.behaviour.redirect_to = elsewhere.url + "/completions"
        statuses = []
        f = remote(cp.url, statuses, env={"DIFFILL_API_KEY": SECRET})
        try:
            with pytest.raises(RemoteError) as err:
                await f.fill(req())
        finally:
            await f.close()
        assert elsewhere.records == []
    assert err.value.kind == "redirect" and "not followed" in statuses[-1]["message"]


async def test_an_http_url_to_another_host_is_refused_before_any_request(cp):
    statuses = []
    f = remote(cp.url_for("gpu1.example"), statuses)
    with pytest.raises(RemoteError) as err:
        await f.fill(req())
    await f.close()
    assert err.value.kind == "config" and "allowInsecureHttp" in statuses[-1]["message"]
    assert cp.records == []


async def test_the_first_chunk_being_the_whole_answer_needs_no_per_token_stream(cp):
    cp.behaviour.latency_ms = 100
    f = remote(cp.url)
    try:
        await f.start()
        await f.fill(req())
    finally:
        await f.close()
    [post] = cp.app.completions()
    assert post.done - post.first_byte >= 0.09  # the whole canvas came after one denoise
    assert dataclasses.asdict(f.cfg)["stream"] is True


async def test_consecutive_fills_reuse_one_keep_alive_connection(cp):
    cp.behaviour.canvas = 4  # answers of several chunks, read to the end of the body
    f = remote(cp.url, vllm_extensions=False)
    try:
        for i in range(4):
            await f.fill(req(doc=f"file:///{i}.py"))
    finally:
        await f.close()
    assert cp.app.connections == 1


@pytest.mark.parametrize("how, said", [("drop_requests", "closed the connection"),
                                       ("reset_requests", "reset the connection")])
async def test_a_connection_closed_or_reset_before_the_answer_is_tried_once_more_on_a_fresh_one(cp, how, said):
    f = remote(cp.url)
    try:
        await f.start()
        setattr(cp.behaviour, how, 1)
        assert (await f.fill(req())).text == "sum(values)"
        setattr(cp.behaviour, how, 2)
        with pytest.raises(RemoteError) as err:
            await f.fill(req())
    finally:
        await f.close()
    assert err.value.kind == "stale" and said in str(err.value)
    assert f.stats["requests"] == 4 and f.stats["failed"] == 1


async def test_the_counterpart_rejects_suffix_and_unknown_extensions_as_vllm_does(cp):
    import httpx
    async with httpx.AsyncClient() as client:
        body = {"model": cp.behaviour.model, "prompt": "x = ", "max_tokens": 4}
        r = await client.post(cp.url + "/completions", json={**body, "suffix": "\n"})
        assert r.status_code == 400 and r.json()["error"]["message"] == "suffix is not currently supported"
        r = await client.post(cp.url + "/completions", json={**body, "vllm_xargs": {"colour": 1}})
        assert r.status_code == 400
        cp.behaviour.strict_xargs = False
        r = await client.post(cp.url + "/completions", json={**body, "vllm_xargs": {"colour": 1}})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "pass"
        models = (await client.get(cp.url + "/models")).json()["data"]
        assert models[0]["id"] == cp.behaviour.model and models[0]["max_model_len"] == 32768
        assert (await client.get(cp.url.rsplit("/v1", 1)[0] + "/health")).status_code == 200
