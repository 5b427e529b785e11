"""End-to-end latency of the language server while someone types.

Opens a module of the Python standard library (nobody here wrote it) with one function's body
removed, then types that body back character by character at a fixed speed (10 characters/s by
default), asking for an inline completion after every keystroke the way an editor does: the
edit, then the request, without waiting for the previous answer. The server and its worker are
the real processes (`diffill serve` over stdio).

Reported: p50/p95 latency from request to answer for the answers that carried a completion, the
share of requests answered from the typing-through cache (or a fill already in flight), and the
denoising steps the worker spent on fills that were cancelled.

    python bench/lsp_latency.py                       # the default model, 600 characters
    python bench/lsp_latency.py --model PATH --chars 300 --out bench/results/lsp_latency.json
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import inspect
import json
import os
import platform
import re
import statistics
import sys
import time

from lsprotocol import types
from pygls.lsp.client import LanguageClient


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = re.findall(r"model name\s*:\s*(.+)", f.read())
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def pick_hole(module: str, function: str | None, chars: int) -> tuple[str, str, str]:
    """(text before the hole, the hole, text after) for a function of a stdlib module."""
    mod = __import__(module)
    source = inspect.getsource(mod)
    funcs = [m for m in re.finditer(r"^def (\w+)\(.*?\):\n(?:\s+\"\"\"[\s\S]*?\"\"\"\n)?", source, re.M)]
    if function:
        funcs = [m for m in funcs if m.group(1) == function]
    # the first function whose body is long enough
    for m in funcs:
        end = re.search(r"^\S", source[m.end():], re.M)
        body_end = m.end() + (end.start() if end else len(source) - m.end())
        body = source[m.end():body_end].rstrip("\n") + "\n"
        if len(body) >= min(chars, 200):
            hole = body[:chars]
            return source[: m.end()], hole, source[m.end() + len(hole):]
    raise SystemExit(f"no function with a body of {chars} characters in {module}")


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
    before, hole, after = pick_hole(args.module, args.function, args.chars)
    load_at_start = [round(x, 2) for x in os.getloadavg()]  # other work on the machine skews the figures
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

    uri = "file:///bench/" + args.module + ".py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id="python", version=1, text=before + after)))
    typist = Typist(client, uri, before)
    interval = 1.0 / args.cps
    answers: list[tuple[float, bool]] = []  # (latency ms, carried a completion)
    pending = []

    async def timed(fut, sent):
        result = await fut
        answers.append(((time.perf_counter() - sent) * 1000.0, bool(result and result.items)))

    start = time.perf_counter()
    for i, ch in enumerate(hole):
        target = start + i * interval
        await asyncio.sleep(max(0.0, target - time.perf_counter()))
        typist.type_char(ch)
        pending.append(asyncio.ensure_future(timed(typist.request(), time.perf_counter())))
    await asyncio.gather(*pending)
    stats = plain(await client.protocol.send_request_async("diffill/stats", None))
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()

    shown = sorted(ms for ms, ok in answers if ok)
    every = sorted(ms for ms, _ in answers)
    worker = stats["worker"]
    status = worker["status"]

    def pct(values, q):
        return round(values[min(len(values) - 1, int(q * len(values)))], 1) if values else None

    return {
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "date": datetime.date.today().isoformat(),
        "command": "python bench/lsp_latency.py " + " ".join(sys.argv[1:]),
        "model": describe_model(status),
        "typed": f"{len(hole)} characters of {args.module}.py at {args.cps:g} characters/s",
        "p50_ms": pct(shown, 0.50),
        "p95_ms": pct(shown, 0.95),
        "cache_hit_rate": round((stats["cache_hits"] + stats["shared"]) / max(1, stats["requests"]), 3),
        "wasted_steps": worker["wasted_steps"],
        "requests": stats["requests"],
        "answered_with_completion": len(shown),
        "cache_hits": stats["cache_hits"],
        "shared_fill_hits": stats["shared"],
        "superseded": stats["superseded"],
        "model_fills": stats["model_fills"],
        "cancelled_fills": worker["cancelled"],
        "total_steps": (status.get("stats") or {}).get("steps"),
        "all_answers_p50_ms": pct(every, 0.50),
        "all_answers_p95_ms": pct(every, 0.95),
        "last_fill_ms": stats["last_fill_ms"],
        "worker_load_s": round(load_s, 1),
        "settings": options,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint folder or hub id (default: the server's default model)")
    p.add_argument("--module", default="textwrap", help="stdlib module to type from (default: textwrap)")
    p.add_argument("--function", help="the function whose body is typed (default: the first long enough)")
    p.add_argument("--chars", type=int, default=600, help="characters to type (default: 600)")
    p.add_argument("--cps", type=float, default=10.0, help="typing speed, characters per second (default: 10)")
    p.add_argument("--settings", help="extra server settings as JSON")
    p.add_argument("--out", help="write the results here (JSON)")
    p.add_argument("--variant", metavar="NAME",
                   help="with --out: add this run to the file's `variants` instead of replacing the main result")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.out:
        if args.variant:
            with open(args.out) as f:
                doc = json.load(f)
            doc.setdefault("variants", {})[args.variant] = result
        else:
            doc = result
        with open(args.out, "w") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
