"""End-to-end fills through a real `diffill worker` at DiffusionGemma's real shape, built on the device.

    python bench/gpu_fill.py --out OUTDIR                 # on a CUDA machine: random:real, each experts form
    python bench/gpu_fill.py --preset tiny --fast-path on --out OUTDIR   # anywhere: the same path, shrunk

For each run (bf16 on the fast path; bf16 on the reference path, for the ratio; fp8 experts; int4
experts) a worker is started as the editor starts a private one (`diffill worker` over its stdin and
stdout, the wire protocol of lsp/wire/messages.py) with `--model random:PRESET` (random weights of the
real layout built on the device: no 50 GB file), and it is asked, after its self-test:
- `--fills` fills (30 by default, enough for percentiles) on one document whose prefix grows a line
  per fill (the prefix KV cache is reused, the kept decoder step is bound to each new cache), canvas
  lengths alternating 64 and 256;
It records the load time, the worker's status (the memory plan, "ready (degraded: ...)" or not), the
self-test's verdict per fast part, fill ms p50/p95, steps, reused tokens, and for the fast path the
p50 ratio to the reference path. Random weights: the text is noise; this measures the path, not
quality. Writes gpu_fill.json and gpu_fill.md through bench/record.py; each run is bounded by
--run-timeout seconds, and a run that fails is recorded with its reason, not raised.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import percentile, write_results  # noqa: E402

from diffill.lsp.wire import messages  # noqa: E402

PREFIX = "import math\n\n\ndef area(radius):\n    \"\"\"The area of a circle.\"\"\"\n"
SUFFIX = "\n\nprint(area(2.0))\n"


class Worker:
    """A private worker over pipes: length-prefixed JSON both ways, read on a thread."""

    def __init__(self, args: list[str], timeout: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "diffill.lsp.cli", "worker", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.deadline = time.monotonic() + timeout
        self.messages: list[dict] = []
        self.cond = threading.Condition()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.ids = iter(range(1, 1 << 30))

    def _read(self):
        while (message := messages.read_message_blocking(self.proc.stdout)) is not None:
            with self.cond:
                self.messages.append(message)
                self.cond.notify_all()
        with self.cond:
            self.messages.append({"op": "eof"})
            self.cond.notify_all()

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def send(self, message: dict) -> None:
        self.proc.stdin.write(messages.encode(message))
        self.proc.stdin.flush()

    def wait(self, predicate) -> dict:
        with self.cond:
            while True:
                for i, m in enumerate(self.messages):
                    if predicate(m):
                        return self.messages.pop(i)
                    if m.get("op") == "eof":
                        raise RuntimeError("the worker exited: " + " | ".join(self.stderr[-5:]))
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the run's time ran out")
                self.cond.wait(min(left, 1.0))

    def ready(self) -> dict:
        self.send({"op": "hello", "client": "gpu_fill"})
        while True:
            status = self.wait(lambda m: m.get("op") == "status")
            if status["state"] in ("ready", "error"):
                return status
            self.send({"op": "status"})
            time.sleep(0.2)

    def fill(self, prefix: str, suffix: str, canvas: int, steps: int | None) -> dict:
        i = next(self.ids)
        self.send({"op": "fill", "id": i, "doc": "bench.py", "prefix": prefix, "suffix": suffix,
                   "canvas_length": canvas, "max_steps": steps, "language": "python", "seed": i})
        return self.wait(lambda m: m.get("id") == i and m.get("op") in ("result", "error"))

    def close(self) -> None:
        try:
            self.send({"op": "shutdown"})
            self.proc.wait(20)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def run_one(name: str, worker_args: list[str], fills: int, steps: int | None, timeout: float) -> dict:
    row: dict = {"run": name, "worker_args": worker_args}
    started = time.monotonic()
    w = Worker(worker_args, timeout)
    try:
        status = w.ready()
        row["load_s"] = round(time.monotonic() - started, 1)
        row["state"], row["message"] = status["state"], status["message"]
        row["fast_path"] = status.get("fast_path")
        row["degraded"] = "degraded:" in status["message"]
        if status["state"] != "ready":
            return row
        ms, got_steps, reused, texts = [], [], [], []
        for n in range(fills):
            prefix = PREFIX + "".join(f"    # note {k}\n" for k in range(n)) + "    return "
            r = w.fill(prefix, SUFFIX, 64 if n % 2 else 256, steps)
            if r["op"] == "error":
                row["error"] = r["message"]
                break
            ms.append(r["ms"])
            got_steps.append(r["steps"])
            reused.append(r["reused_tokens"])
            texts.append(r["text"])
        row["fills"] = len(ms)
        if len(ms) >= 30:
            row["fill_ms_p50"] = round(percentile(ms, 0.5), 1)
            row["fill_ms_p95"] = round(percentile(ms, 0.95), 1)
        row["fill_ms"] = ms
        row["steps_mean"] = round(sum(got_steps) / max(1, len(got_steps)), 1)
        row["reused_tokens_mean"] = round(sum(reused) / max(1, len(reused)), 1)
        row["printable"] = all(c.isprintable() or c in "\n\t" for t in texts for c in t)
    except Exception as exc:  # recorded, not raised: the next run still runs
        row["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        w.close()
        row["stderr_tail"] = w.stderr[-12:]
        row["wall_s"] = round(time.monotonic() - started, 1)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="real", choices=["real", "tiny"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fast-path", default="auto", choices=["auto", "on"])
    ap.add_argument("--forms", default="bf16,fp8,int4")
    ap.add_argument("--fills", type=int, default=30)
    ap.add_argument("--steps", type=int, default=16, help="denoising steps per canvas (default 16)")
    ap.add_argument("--run-timeout", type=float, default=60.0, help="seconds per run, the load included")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import torch  # noqa: F401  (imported here only so that the results name the GPU)
    base = ["--model", f"random:{args.preset}", "--device", args.device, "--nice", "0"]
    runs = []
    for form in args.forms.split(","):
        experts = "none" if form == "bf16" else form
        runs.append((form, base + ["--experts", experts, "--fast-path", args.fast_path]))
        if form == "bf16":
            runs.append(("bf16 reference", base + ["--experts", "none", "--fast-path", "off"]))
    rows = []
    for name, worker_args in runs:
        fills = args.fills if name != "bf16 reference" else max(30, args.fills // 2)
        row = run_one(name, worker_args, fills, args.steps, args.run_timeout)
        print(f"gpu_fill: {name}: {row.get('state')} {row.get('fill_ms_p50')} ms p50 "
              f"{row.get('error', '')}", file=sys.stderr, flush=True)
        rows.append(row)
    by = {r["run"]: r for r in rows}
    fast, ref = by.get("bf16", {}), by.get("bf16 reference", {})
    ratio = None
    if fast.get("fill_ms_p50") and ref.get("fill_ms_p50"):
        ratio = round(ref["fill_ms_p50"] / fast["fill_ms_p50"], 2)
    result = {"preset": args.preset, "steps": args.steps, "runs": rows, "fast_over_reference_p50": ratio}
    lines = [f"Preset `{args.preset}`, {args.steps} steps per canvas, canvases of 64 and 256 alternating.", "",
             "| run | state | load s | fills | p50 ms | p95 ms | steps | reused tokens | degraded |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r.get('state', r.get('error', ''))} | {r.get('load_s', '')} | "
                     f"{r.get('fills', 0)} | {r.get('fill_ms_p50', '')} | {r.get('fill_ms_p95', '')} | "
                     f"{r.get('steps_mean', '')} | {r.get('reused_tokens_mean', '')} | {r.get('degraded', '')} |")
    lines += ["", f"Fast path over the reference path, p50: {ratio}x" if ratio else "", ""]
    for r in rows:
        if r.get("fast_path"):
            lines.append(f"- {r['run']}: " + "; ".join(f"{k}: {v}" for k, v in r["fast_path"].items()))
    write_results("gpu_fill", result, "\n".join(lines) + "\n",
                  "End-to-end fills through the worker at the model's shape (random weights)", out_dir=args.out)
    return 0 if all(r.get("state") == "ready" and not r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
