"""The remote backend's own overhead, over loopback, against the vLLM counterpart with a fixed latency.

The real `diffill serve` (stdio, `"backend": "remote"`) talks to tests/vllm_counterpart.py running
in its own process, which takes a fixed time per canvas (default 150 ms, about vLLM's published
146 ms per 256-token canvas on one H100 in FP8). Both processes read the same monotonic clock, so:

- before: from the moment the editor sends the inline-completion request to the moment the
  counterpart has read the whole HTTP request (LSP framing and parsing, window, span, prompt,
  httpx, loopback);
- after: from the counterpart's last byte to the moment the editor has the LSP answer (reading the
  stream, trim, the LSP response);
  both measured from outside the server, so they include this client's own share; the server's own
  split (fill entry to request body sent, last byte to fill return) is reported beside them.
  Goal: p50 <= 5 ms each.
- a burst: 50 keystrokes at 10 characters/s with the default debounce, an inline-completion
  request after each; how many HTTP requests reach the counterpart, how many it saw aborted (the
  connection closed mid-denoise) and how many completed. Goal: at most 2 completed. Run twice:
  with answers that predict what is typed next (the typing-through cache answers the keystrokes
  in between) and with answers that never do.

    python bench/remote_overhead.py                 # writes bench/results/remote_overhead.json and .md
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lsp_latency import plain
from record import MIN_SAMPLES, percentile, write_results

ROOT = Path(__file__).resolve().parent.parent
COUNTERPART = ROOT / "tests" / "vllm_counterpart.py"
BURST_LINE = "    return sum(v for v in values if v is not None) + offset"


class CounterpartProcess:
    def __init__(self, latency_ms: float, **flags):
        cmd = [sys.executable, str(COUNTERPART), "--port", "0", "--latency-ms", str(latency_ms)]
        for k, v in flags.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.url = line.strip().rsplit(" ", 1)[-1]

    def records(self) -> list[dict]:
        root = self.url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(root + "/_counterpart/records", timeout=10) as resp:
            return [r for r in json.loads(resp.read()) if r["path"].endswith("/completions")]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def start_server(options: dict) -> LanguageClient:
    client = LanguageClient("diffill-bench", "1")
    ready = asyncio.Event()

    @client.feature("diffill/status")
    def on_status(params):
        if plain(params).get("state") in ("ready", "error"):
            ready.set()

    await client.start_io(sys.executable, "-m", "diffill.lsp.cli", "serve")
    caps = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()))
    await client.initialize_async(types.InitializeParams(capabilities=caps, initialization_options=options,
                                                         process_id=os.getpid()))
    client.initialized(types.InitializedParams())
    await asyncio.wait_for(ready.wait(), 60)
    return client


async def stop_server(client: LanguageClient) -> None:
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


def inline(client: LanguageClient, uri: str, line: int, col: int):
    return client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line, col)))


async def overhead(args) -> dict:
    cp = CounterpartProcess(args.latency_ms, answer="sum(values)")
    try:
        options = {"backend": "remote", "remote": {"url": cp.url}, "debounceMs": 0, "adaptiveDebounce": False}
        client = await start_server(options)
        before, after, inner_before, inner_after, total = [], [], [], [], []
        try:
            for i in range(args.samples + args.warmup):
                uri = f"file:///bench/overhead_{i}.py"
                text = f"def total_{i}(values):\n    return \n"
                client.text_document_did_open(types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
                await asyncio.sleep(0.02)  # the open is handled before the request is timed
                sent = time.monotonic()
                result = await inline(client, uri, 1, 11)
                got = time.monotonic()
                rec = cp.records()[-1]
                stats = plain(await client.protocol.send_request_async("diffill/stats", None))["remote"]
                if i < args.warmup:
                    continue
                assert result and result.items[0].insert_text == "sum(values)", result
                before.append((rec["arrived"] - sent) * 1000.0)
                after.append((got - rec["done"]) * 1000.0)
                inner_before.append(stats["last_pre_ms"])
                inner_after.append(stats["last_post_ms"])
                total.append((got - sent) * 1000.0)
        finally:
            await stop_server(client)
    finally:
        cp.stop()
    return {"samples": len(before), "latency_ms": args.latency_ms,
            "before_p50_ms": percentile(before, 0.5, 2), "before_p95_ms": percentile(before, 0.95, 2),
            "after_p50_ms": percentile(after, 0.5, 2), "after_p95_ms": percentile(after, 0.95, 2),
            "server_before_p50_ms": percentile(inner_before, 0.5, 2),
            "server_before_p95_ms": percentile(inner_before, 0.95, 2),
            "server_after_p50_ms": percentile(inner_after, 0.5, 2),
            "server_after_p95_ms": percentile(inner_after, 0.95, 2),
            "total_p50_ms": percentile(total, 0.5, 1), "total_p95_ms": percentile(total, 0.95, 1),
            "samples_ms": {"before": [round(x, 3) for x in before], "after": [round(x, 3) for x in after]}}


async def burst(args, predicts: bool) -> dict:
    flags = {"complete_line": BURST_LINE} if predicts else {"answer": "None  # a guess the typing never matches"}
    cp = CounterpartProcess(args.latency_ms, **flags)
    try:
        client = await start_server({"backend": "remote", "remote": {"url": cp.url}})  # default debounce
        try:
            uri = "file:///bench/burst.py"
            text = "def total(values, offset):\n\n"
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
            typed = BURST_LINE[: args.keystrokes]
            pending, shown = [], 0
            t0 = time.monotonic()
            for n, ch in enumerate(typed):
                client.text_document_did_change(types.DidChangeTextDocumentParams(
                    types.VersionedTextDocumentIdentifier(uri=uri, version=n + 2),
                    [types.TextDocumentContentChangePartial(
                        range=types.Range(types.Position(1, n), types.Position(1, n)), text=ch)]))
                pending.append(inline(client, uri, 1, n + 1))
                await asyncio.sleep(1.0 / args.cps)
            results = await asyncio.gather(*pending)
            typing_s = time.monotonic() - t0
            await asyncio.sleep(0.5 + args.latency_ms / 1000.0)
            stats = plain(await client.protocol.send_request_async("diffill/stats", None))
            shown = sum(1 for r in results if r and r.items and r.items[0].insert_text)
        finally:
            await stop_server(client)
        records = cp.records()
    finally:
        cp.stop()
    return {"keystrokes": len(typed), "cps": args.cps, "typing_s": round(typing_s, 2),
            "answers_predict_typing": predicts,
            "http_requests": len(records), "aborted": sum(1 for r in records if r["disconnected"]),
            "completed": sum(1 for r in records if r["done"] is not None and not r["disconnected"]),
            "lsp_requests": stats["requests"], "shown": shown, "cache_hits": stats["cache_hits"],
            "shared_fill_hits": stats["shared"], "superseded": stats["superseded"]}


def markdown(r: dict) -> str:
    o = r["overhead"]

    def ms(v):
        return "n/a" if v is None else f"{v:.2f}"

    few = "" if o["samples"] >= MIN_SAMPLES else f"\nOnly {o['samples']} samples: no percentiles.\n"
    rows = "\n".join(
        f"| {'yes' if b['answers_predict_typing'] else 'no'} | {b['keystrokes']} in {b['typing_s']} s | "
        f"{b['http_requests']} | {b['aborted']} | {b['completed']} | {b['cache_hits']} + {b['shared_fill_hits']} | "
        f"{b['shown']} |" for b in r["bursts"])
    return f"""The real `diffill serve` over stdio with `"backend": "remote"`, against tests/vllm_counterpart.py in its own
process answering every canvas after {o['latency_ms']:g} ms; loopback HTTP, streamed (one SSE chunk per canvas).
Overhead: debounce 0, a fresh document per sample ({o['samples']} samples after warm-up).

| time | p50 ms | p95 ms | goal |
|---|---|---|---|
| editor sends the request -> the counterpart has read the HTTP request | {ms(o['before_p50_ms'])} | {ms(o['before_p95_ms'])} | p50 <= 5 |
| the counterpart's last byte -> the editor has the LSP answer | {ms(o['after_p50_ms'])} | {ms(o['after_p95_ms'])} | p50 <= 5 |
| inside the server: fill entry -> request body sent | {ms(o['server_before_p50_ms'])} | {ms(o['server_before_p95_ms'])} | |
| inside the server: last byte -> fill returns (before the trim) | {ms(o['server_after_p50_ms'])} | {ms(o['server_after_p95_ms'])} | |
| whole answer (includes the {o['latency_ms']:g} ms of the counterpart) | {ms(o['total_p50_ms'])} | {ms(o['total_p95_ms'])} | |
{few}
The outside figures include this client's share (writing and reading LSP messages over the pipe); the
two clocks are the same (CLOCK_MONOTONIC, two processes on one machine).

Bursts: {r['bursts'][0]['keystrokes']} keystrokes at {r['bursts'][0]['cps']:g} characters/s with the default
debounce (75 ms, adaptive), an inline-completion request after each, as an editor sends them.

| answers predict the typing | keystrokes | HTTP requests | aborted | completed (goal <= 2) | cache + shared-fill hits | answers shown |
|---|---|---|---|---|---|---|
{rows}
"""


async def run(args) -> dict:
    return {"overhead": await overhead(args),
            "bursts": [await burst(args, True), await burst(args, False)]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency-ms", type=float, default=150.0, help="the counterpart's time per canvas")
    p.add_argument("--samples", type=int, default=60, help=f"overhead samples (percentiles need {MIN_SAMPLES})")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--keystrokes", type=int, default=50)
    p.add_argument("--cps", type=float, default=10.0)
    p.add_argument("--name", default="remote_overhead")
    args = p.parse_args()
    result = asyncio.run(run(args))
    text = markdown(result)
    write_results(args.name, result, text, "Remote backend overhead (`bench/remote_overhead.py`)")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
