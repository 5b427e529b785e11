"""FIM evaluation of a checkpoint through the server's own path, on this machine's CPU.

For each benchmark problem the document is prefix + suffix and the cursor sits between them; then,
as `lsp/completion.py` does: the context window under the token budget (`lsp/context.py`, counted
with the checkpoint's tokenizer), the span decision (`lsp/span.decide_span`), one fill through
`diffill.model.engine.infill.Infiller` with the span's canvas length, and the trim (`lsp/trim.trim`,
including the characters of the suffix it replaces). Latency is the wall time of span + fill + trim.

- HumanEval-infilling single-line and multi-line: the program prefix + completion + suffix + test +
  `check(entry_point)` runs in a fresh `python -I` subprocess in a temporary folder with a timeout;
  pass@1 is the share that exits cleanly (greedy: one completion per problem).
- SantaCoder-FIM Python: exact match of the first non-empty line (stripped), as DreamOn/Qwen report.
- Block latency: fills with a 256-token canvas (the largest span) on multi-line prompts.

    .venv/bin/python bench/fim_eval.py                    # the embedded model, all tasks
    .venv/bin/python bench/fim_eval.py --model DIR --limit 50 --name fim_eval_mine

Writes bench/results/<name>.json (summary, then per-task details) and <name>.md.
"""
import argparse
import dataclasses
import gzip
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from record import percentile, write_results  # noqa: E402

EVALDATA = ROOT.parent / "shared" / "evaldata"

GUARD = """
import os, shutil, subprocess, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
for mod, names in ((os, ("system", "remove", "unlink", "rmdir", "removedirs", "kill", "killpg", "fork",
                         "rename", "renames", "truncate", "putenv", "chmod", "chown")),
                   (shutil, ("rmtree", "move", "chown")), (subprocess, ("Popen", "run", "call"))):
    for name in names:
        setattr(mod, name, None)
program = sys.stdin.read()
exec(compile(program, "<candidate>", "exec"), {"__name__": "__main__"})
"""


def passes(program: str, timeout: float) -> bool:
    """True when the program raises nothing within timeout seconds (fresh interpreter, temp folder)."""
    with tempfile.TemporaryDirectory(prefix="fimeval-") as tmp:
        try:
            r = subprocess.run([sys.executable, "-I", "-c", GUARD], input=program, text=True, cwd=tmp,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
    return r.returncode == 0


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def subsample(rows: list[dict], limit: int | None, key, seed: int = 0) -> list[dict]:
    """At most `limit` rows, spread over problems: round-robin over groups in a seeded order."""
    if limit is None or len(rows) <= limit:
        return rows
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    rng = random.Random(seed)
    for g in groups.values():
        rng.shuffle(g)
    order = sorted(groups)
    out = []
    while len(out) < limit:
        for k in order:
            if groups[k] and len(out) < limit:
                out.append(groups[k].pop())
    return out


class ServerPath:
    """The pipeline the language server runs (lsp/pipeline/complete.py), with the model in this process."""

    def __init__(self, model, context_tokens: int, max_steps: int | None):
        from diffill.lsp.cli.in_process import InProcessFill, windows_for
        from diffill.model.engine.infill import Infiller

        self.windows = windows_for(model)
        self.context_tokens = context_tokens
        self.fill = InProcessFill(Infiller(model))
        self.max_steps = max_steps

    def complete(self, prefix: str, suffix: str, canvas_length: int | None = None) -> dict:
        import asyncio

        from diffill.lsp.pipeline import complete as pipeline

        t0 = time.perf_counter()
        request = pipeline.Request(prefix + suffix, len(prefix), "python", self.context_tokens,
                                   max_steps=self.max_steps)
        plan = pipeline.plan(request, self.windows)
        if canvas_length:  # block latency: the largest canvas whatever the span says
            plan = dataclasses.replace(plan, canvas=canvas_length)
        outcome = asyncio.run(pipeline.finish(plan, self.fill))
        reply = outcome.reply
        return {"text": outcome.text, "replace": outcome.replace, "ms": (time.perf_counter() - t0) * 1000,
                "span": plan.span.kind, "canvas": plan.canvas, "steps": reply.steps if reply else 0,
                "raw": outcome.raw}


def _until(rows: list[dict], deadline: float | None):
    """The rows, until the deadline (time.monotonic()) passes."""
    for row in rows:
        if deadline is not None and time.monotonic() > deadline:
            return
        yield row


def humaneval_task(path: ServerPath, rows: list[dict], timeout: float, log, deadline: float | None = None) -> dict:
    passed, ms, samples = 0, [], []
    for i, row in enumerate(_until(rows, deadline)):
        c = path.complete(row["prompt"], row["suffix"])
        program = (row["prompt"] + c["text"] + row["suffix"][c["replace"]:] + "\n" + row["test"] + "\n"
                   + f"check({row['entry_point']})\n")
        ok = passes(program, timeout)
        passed += ok
        ms.append(c["ms"])
        samples.append({"task_id": row["task_id"], "passed": ok, "ms": round(c["ms"], 1), "span": c["span"],
                        "canvas": c["canvas"], "steps": c["steps"], "completion": c["text"]})
        if (i + 1) % 25 == 0:
            log(f"  {i + 1}/{len(rows)} pass@1 {passed / (i + 1):.3f} p50 {percentile(ms, 0.5)} ms")
    return {"problems": len(samples), "passed": passed, "pass@1": round(passed / max(1, len(samples)), 4),
            "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95), "samples": samples}


def first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def santacoder_task(path: ServerPath, rows: list[dict], log, deadline: float | None = None) -> dict:
    hits, ms, samples = 0, [], []
    for i, row in enumerate(_until(rows, deadline)):
        c = path.complete(row["prompt"], row["suffix"])
        ok = first_line(c["text"]) == row["canonical_solution"].strip()
        hits += ok
        ms.append(c["ms"])
        samples.append({"name": row["name"], "exact": ok, "ms": round(c["ms"], 1), "completion": c["text"]})
        if (i + 1) % 50 == 0:
            log(f"  {i + 1}/{len(rows)} exact {hits / (i + 1):.3f}")
    return {"problems": len(samples), "exact": hits, "exact_match": round(hits / max(1, len(samples)), 4),
            "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95), "samples": samples}


def block_latency(path: ServerPath, rows: list[dict], deadline: float | None = None) -> dict:
    ms, steps = [], []
    for row in _until(rows, deadline):
        c = path.complete(row["prompt"], row["suffix"], canvas_length=256)
        ms.append(c["ms"])
        steps.append(c["steps"])
    return {"fills": len(ms), "canvas": 256, "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95),
            "mean_steps": round(statistics.mean(steps), 1) if steps else None}


def markdown(summary: dict, results: dict) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"

    def ms(task):
        p50, p95 = task.get("p50_ms"), task.get("p95_ms")
        return "n/a" if p50 is None else f"{p50:.0f} / {p95:.0f} ms"

    rows = []
    for key, label, score, count in (("single_line", "HumanEval single-line pass@1", "pass@1", "passed"),
                                     ("multi_line", "HumanEval multi-line pass@1", "pass@1", "passed"),
                                     ("santacoder_fim_py", "SantaCoder-FIM Python exact match", "exact_match", "exact")):
        if key in results:
            t = results[key]
            shown = sum(1 for x in t["samples"] if x["completion"])
            rows.append(f"| {label} | {pct(t[score])} ({t[count]}/{t['problems']}) | {ms(t)} | {shown} of {t['problems']} |")
    if "block_latency" in results:
        b = results["block_latency"]
        rows.append(f"| 256-token block fills | | {ms(b)} ({b['mean_steps']} steps) | |")
    return (f"Model: `{summary['model']}`, {summary['params']:,} parameters, {summary['train_tokens'] or '?'} training "
            f"tokens; context {summary['context_tokens']} tokens (the checkpoint's), at most {summary['max_steps']} "
            f"denoising steps; greedy, one completion per problem. Each problem goes through the pipeline the server "
            f"runs (window, span, fill, trim); HumanEval programs run in a fresh `python -I` with a timeout.\n\n"
            "| task | score | p50 / p95 latency | completions shown |\n|---|---|---|---|\n" + "\n".join(rows)
            + f"\n\nWall time {summary['wall_s']} s.\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint directory (default: the embedded model)")
    ap.add_argument("--evaldata", type=Path, default=EVALDATA)
    ap.add_argument("--tasks", default="single,multi,santacoder,block")
    ap.add_argument("--limit", type=int, default=None, help="at most this many problems per task")
    ap.add_argument("--multi-limit", type=int, default=328, help="multi-line problems (2 per HumanEval task)")
    ap.add_argument("--block-fills", type=int, default=30)
    ap.add_argument("--context-tokens", type=int, default=None,
                    help="prefix + suffix budget (default: the checkpoint's diffill_context_tokens, else the server's)")
    ap.add_argument("--max-steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per HumanEval program")
    ap.add_argument("--name", default="fim_eval", help="results file name in bench/results (default: fim_eval)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default: bench/results)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds per task: a task stops taking problems when they are spent (and counts those it did)")
    args = ap.parse_args(argv)

    import torch
    from diffill.lsp.cli.in_process import context_tokens_of
    from diffill.model.engine.checkpoint import load_model
    from diffill.model.engine.default import default_model_path

    torch.set_num_threads(args.threads)
    path = Path(args.model) if args.model else default_model_path().path
    model = load_model(path)
    context = args.context_tokens or context_tokens_of(model)
    server = ServerPath(model, context, args.max_steps)
    info_file = Path(path) / "training_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    tasks = args.tasks.split(",")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    he = args.evaldata / "humaneval-infilling"
    results: dict = {}
    t_start = time.time()
    deadline = lambda: time.monotonic() + args.time_limit if args.time_limit else None  # noqa: E731
    server.complete("def f(x):\n    return ", "\n")                     # warm-up (first-call allocations)
    if "single" in tasks:
        rows = subsample(read_jsonl_gz(he / "HumanEval-SingleLineInfilling.jsonl.gz"), args.limit,
                         lambda r: r["task_id"].split("/")[2])
        log(f"single-line: {len(rows)} problems")
        results["single_line"] = humaneval_task(server, rows, args.timeout, log, deadline())
    if "multi" in tasks:
        limit = min(x for x in (args.limit, args.multi_limit) if x is not None) if (args.limit or args.multi_limit) else None
        rows = subsample(read_jsonl_gz(he / "HumanEval-MultiLineInfilling.jsonl.gz"), limit,
                         lambda r: r["task_id"].split("/")[2])
        log(f"multi-line: {len(rows)} problems")
        results["multi_line"] = humaneval_task(server, rows, args.timeout, log, deadline())
    if "santacoder" in tasks:
        rows = [r for r in read_jsonl_gz(args.evaldata / "santacoder-fim" / "santacoder-fim-task.jsonl.gz")
                if r["language"] == "py"]
        rows = subsample(rows, args.limit, lambda r: r["name"].split("-L")[0])
        log(f"santacoder-fim python: {len(rows)} problems")
        results["santacoder_fim_py"] = santacoder_task(server, rows, log, deadline())
    if "block" in tasks:
        rows = subsample(read_jsonl_gz(he / "HumanEval-MultiLineInfilling.jsonl.gz"), args.block_fills,
                         lambda r: r["task_id"].split("/")[2], seed=1)
        log(f"block latency: {len(rows)} fills with a 256-token canvas")
        results["block_latency"] = block_latency(server, rows, deadline())

    summary = {
        "model": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name,
        "params": model.num_parameters(),
        "train_tokens": info.get("tokens"),
        "context_tokens": context,
        "max_steps": args.max_steps or model.generation.max_denoising_steps,
        "training": {k: info.get(k) for k in ("size", "step", "steps", "tokens", "canvas_tokens") if k in info},
        "wall_s": round(time.time() - t_start),
        "limit": args.limit,
        "time_limit_s": args.time_limit,
    }
    write_results(args.name, {**summary, "tasks": results}, markdown(summary, results),
                  f"FIM evaluation of {summary['model']} through the server's pipeline (`bench/fim_eval.py`)", argv,
                  **({"out_dir": args.out_dir} if args.out_dir else {}))
    log(markdown(summary, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
