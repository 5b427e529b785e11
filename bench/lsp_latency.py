"""End-to-end latency of the language server while someone types, with the pauses people make.

Opens a module of the Python standard library (nobody here wrote it) with function bodies removed,
then types them back character by character at 10 characters/s, pausing after words and longer at
line ends, and asks for an inline completion after every keystroke the way an editor does: the
edit, then the request, without waiting for the previous answer. The server and its worker are the
real processes (`diffill serve` over stdio). It types on (function after function) until at least
--min-shown completions were shown after a pause, or --max-chars are typed.

Reported: latency from the last keystroke before a pause to the answer, for the answers that
showed a completion and for every answer after a pause; the share of requests answered from the
typing-through cache (or a fill in flight); the denoising steps spent on cancelled fills.
Percentiles only from 30 samples or more (bench/record.py).

    python bench/lsp_latency.py                       # the default model; writes bench/results/lsp_latency.*
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import re
import sys
import time

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from record import MIN_SAMPLES, percentile, write_results

WORD_PAUSE_S, LINE_PAUSE_S = 0.6, 1.5  # after a space or punctuation, and at a line end


def bodies(module: str) -> list[tuple[int, int]]:
    """(start, end) of each top-level function body (after its docstring) in the module's source."""
    source = inspect.getsource(__import__(module))
    out = []
    for m in re.finditer(r"^def (\w+)\(.*?\):\n(?:\s+\"\"\"[\s\S]*?\"\"\"\n)?", source, re.M):
        end = re.search(r"^\S", source[m.end():], re.M)
        body_end = m.end() + (end.start() if end else len(source) - m.end())
        body = source[m.end():body_end].rstrip("\n")
        if len(body) >= 80:
            out.append((m.end(), m.end() + len(body)))
    return out


def pause_after(ch: str, nxt: str) -> float:
    """How long a person stops after typing `ch` (the next character being `nxt`)."""
    if ch == "\n" and nxt != "\n":
        return LINE_PAUSE_S
    if ch in " (.,:" and nxt not in " \n":
        return WORD_PAUSE_S
    return 0.0


class Typist:
    def __init__(self, client: LanguageClient, uri: str, before: str):
        self.client = client
        self.uri = uri
        self.version = 1
        self.line = before.count("\n")
        self.col = len(before) - (before.rfind("\n") + 1)  # utf-16 == code points for this ascii text

    def type_char(self, ch: str) -> None:
        self.version += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            [types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(self.line, self.col), types.Position(self.line, self.col)),
                text=ch)]))
        if ch == "\n":
            self.line, self.col = self.line + 1, 0
        else:
            self.col += len(ch.encode("utf-16-le")) // 2

    def request(self):
        return self.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION,
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                text_document=types.TextDocumentIdentifier(uri=self.uri),
                position=types.Position(self.line, self.col)))


def describe_model(status: dict) -> str:
    """The model by name (no paths of this machine), its device, and whether its weights are random."""
    message = str(status.get("message") or "")
    name = os.path.basename(str(status.get("model") or "").rstrip("/")) or "?"
    device = re.search(r" on (\S+)", message)
    text = f"{name} on {device.group(1) if device else '?'}"
    if "random weights" in message:
        text += " (random weights: no trained model in this build, the completions are noise)"
    return text


def plain(obj):
    if hasattr(obj, "_asdict"):
        return plain(obj._asdict())
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


async def run(args) -> dict:
    source = inspect.getsource(__import__(args.module))
    holes = bodies(args.module)
    options = {"workerMode": "private", "preload": True}
    if args.model:
        options["model"] = args.model
    options.update(json.loads(args.settings or "{}"))
    client = LanguageClient("diffill-bench", "1")
    statuses: list[dict] = []

    @client.feature("diffill/status")
    def on_status(params):
        statuses.append(plain(params))

    await client.start_io(sys.executable, "-m", "diffill.lsp.cli", "serve")
    caps = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()))
    await client.initialize_async(types.InitializeParams(capabilities=caps, initialization_options=options,
                                                         process_id=os.getpid()))
    client.initialized(types.InitializedParams())
    load_started = time.perf_counter()
    while not any(s.get("state") in ("ready", "error") for s in statuses):
        await asyncio.sleep(0.05)
    load_s = time.perf_counter() - load_started
    ready = [s for s in statuses if s.get("state") in ("ready", "error")][-1]
    if ready["state"] == "error":
        raise SystemExit(f"the worker failed: {ready['message']}")

    every: list[float] = []            # every answer: ms from its own keystroke
    after_pause: list[float] = []      # answers to the last keystroke before a pause
    shown_after_pause: list[float] = []
    typed = 0
    pending = []

    async def timed(fut, sent, paused):
        result = await fut
        ms = (time.perf_counter() - sent) * 1000.0
        every.append(ms)
        if paused:
            after_pause.append(ms)
            if result and result.items and result.items[0].insert_text:
                shown_after_pause.append(ms)

    for n, (start, end) in enumerate(holes):
        if len(shown_after_pause) >= args.min_shown or typed >= args.max_chars:
            break
        uri = f"file:///bench/{args.module}_{n}.py"  # each body typed into a fresh copy of the module
        before, hole, after = source[:start], source[start:end], source[end:]
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=before + after)))
        typist = Typist(client, uri, before)
        for i, ch in enumerate(hole):
            typist.type_char(ch)
            typed += 1
            pause = pause_after(ch, hole[i + 1] if i + 1 < len(hole) else "\n")
            pending.append(asyncio.ensure_future(timed(typist.request(), time.perf_counter(), pause > 0)))
            await asyncio.sleep(1.0 / args.cps + pause)
        await asyncio.gather(*pending)
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
    await asyncio.gather(*pending)
    stats = plain(await client.protocol.send_request_async("diffill/stats", None))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    worker = stats["worker"]
    status = worker["status"]
    return {
        "model": describe_model(status),
        "typed": f"{typed} characters of {args.module}.py at {args.cps:g} characters/s, pausing "
                 f"{WORD_PAUSE_S:g} s after words and {LINE_PAUSE_S:g} s at line ends",
        "shown_after_pause": len(shown_after_pause),
        "shown_p50_ms": percentile(shown_after_pause, 0.50),
        "shown_p95_ms": percentile(shown_after_pause, 0.95),
        "pauses": len(after_pause),
        "after_pause_p50_ms": percentile(after_pause, 0.50),
        "after_pause_p95_ms": percentile(after_pause, 0.95),
        "all_answers_p50_ms": percentile(every, 0.50),
        "all_answers_p95_ms": percentile(every, 0.95),
        "requests": stats["requests"],
        "cache_hits": stats["cache_hits"],
        "shared_fill_hits": stats["shared"],
        "cache_hit_rate": round((stats["cache_hits"] + stats["shared"]) / max(1, stats["requests"]), 3),
        "superseded": stats["superseded"],
        "model_fills": stats["model_fills"],
        "cancelled_fills": worker["cancelled"],
        "wasted_steps": worker["wasted_steps"],
        "total_steps": (status.get("stats") or {}).get("steps"),
        "worker_load_s": round(load_s, 1),
        "settings": options,
        "samples_ms": {"shown_after_pause": [round(x, 1) for x in shown_after_pause],
                       "after_pause": [round(x, 1) for x in after_pause]},
    }


def markdown(r: dict) -> str:
    def ms(v):
        return "n/a" if v is None else f"{v:.0f}"
    short = "" if r["shown_after_pause"] >= MIN_SAMPLES else (
        f"\nOnly {r['shown_after_pause']} completions were shown after a pause (fewer than {MIN_SAMPLES}): "
        "no percentile is given for them.\n")
    return f"""Model: {r['model']}. Typed: {r['typed']}. Server and worker: the real `diffill serve` over stdio
with a private worker, settings {json.dumps(r['settings'])}.

| answers | samples | p50 ms | p95 ms |
|---|---|---|---|
| shown after a pause (from the last keystroke) | {r['shown_after_pause']} | {ms(r['shown_p50_ms'])} | {ms(r['shown_p95_ms'])} |
| every answer after a pause | {r['pauses']} | {ms(r['after_pause_p50_ms'])} | {ms(r['after_pause_p95_ms'])} |
| every answer (from its own keystroke) | {r['requests']} | {ms(r['all_answers_p50_ms'])} | {ms(r['all_answers_p95_ms'])} |
{short}
Requests {r['requests']}: {r['cache_hits']} from the typing-through cache, {r['shared_fill_hits']} from a fill in
flight, {r['superseded']} superseded; {r['model_fills']} fills, {r['cancelled_fills']} cancelled
({r['wasted_steps']} wasted of {r['total_steps']} denoising steps). Worker load: {r['worker_load_s']} s.
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint folder or hub id (default: the server's default model)")
    p.add_argument("--module", default="textwrap", help="stdlib module to type from (default: textwrap)")
    p.add_argument("--min-shown", type=int, default=MIN_SAMPLES,
                   help=f"type until this many completions were shown after a pause (default: {MIN_SAMPLES})")
    p.add_argument("--max-chars", type=int, default=4000, help="stop typing after this many characters")
    p.add_argument("--cps", type=float, default=10.0, help="typing speed, characters per second (default: 10)")
    p.add_argument("--settings", help="extra server settings as JSON")
    p.add_argument("--name", default="lsp_latency", help="results file name in bench/results (default: lsp_latency)")
    args = p.parse_args()
    result = asyncio.run(run(args))
    write_results(args.name, result, markdown(result), "Language server latency while typing (`bench/lsp_latency.py`)")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
