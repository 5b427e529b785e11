"""The model's raw fills on held-out holes, computed once and kept: the gates and the trim run after
the fill, so the junk benchmark and the confidence curve shape the same fills again whenever a filter
or the threshold changes, without running the model again.

    from fill_cache import load_fills, plan_for
    replies = load_fills("embedded", holes, log=print)   # id -> FillReply; missing fills are run

A fill is keyed by the hole's id and the model; bench/results/fills/<model>-<source>.jsonl holds
one JSON object per line (the raw text, the per-line confidence, steps, ms, and the span and canvas
the plan chose). Only the embedded model's fills are kept (a random-weight model's are recomputed).
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from diffill.lsp.pipeline import complete as pipeline
from diffill.lsp.pipeline.fill import FillReply

ROOT = Path(__file__).resolve().parent.parent
FILLS = ROOT / "bench" / "results" / "fills"
MODELS = ("embedded", "random")


def open_checkpoint(name: str, workdir: Path | None = None):
    """The embedded model, or a tiny random-weight FIM checkpoint built in `workdir`."""
    from diffill.model import build_random_checkpoint, load_model
    from diffill.model.engine.default import default_model_path

    if name == "embedded":
        path, random = default_model_path()
        if random:
            raise SystemExit("fill_cache: this build has no embedded model")
        return load_model(path, device="cpu", dtype="float32")
    if name == "random":
        workdir = Path(workdir or tempfile.mkdtemp(prefix="diffill-random-"))
        path = build_random_checkpoint(workdir / "tiny", fim=True, noise="mask", prompt_format="fim", canvas_length=32)
        return load_model(path, device="cpu", dtype="float32")
    raise ValueError(f"unknown model {name!r}")


def request_for(hole: dict, context_tokens: int, **kw) -> pipeline.Request:
    return pipeline.Request(hole["prefix"] + hole["suffix"], len(hole["prefix"]), hole["language"], context_tokens,
                            doc=hole["id"], **kw)


def plan_for(hole: dict, context_tokens: int, windows=None, **kw) -> pipeline.Plan:
    return pipeline.plan(request_for(hole, context_tokens, **kw), windows)


def _path(model: str, source: str) -> Path:
    return FILLS / f"{model}-{source}.jsonl"


def _read(path: Path) -> dict[str, dict]:
    out = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["id"]] = row
    return out


def reply_of(row: dict) -> FillReply:
    conf = row.get("line_confidence")
    return FillReply(row["text"], steps=row.get("steps", 0), ms=row.get("ms", 0.0),
                     line_confidence=tuple(conf) if conf else None)


def load_fills(model_name: str, holes: list[dict], source: str, log=print, threads: int = 1) -> tuple[dict, dict]:
    """(id -> FillReply, meta) for every hole; fills not kept yet are run now (and kept for the
    embedded model). meta: the context budget and how many fills were run."""
    import torch

    from diffill.lsp.cli.in_process import InProcessFill, context_tokens_of, windows_for
    from diffill.model.engine.infill import Infiller

    torch.set_num_threads(threads)
    path = _path(model_name, source)
    kept = _read(path) if model_name == "embedded" else {}
    missing = [h for h in holes if h["id"] not in kept]
    meta = {"model": model_name, "kept": len(holes) - len(missing), "run": len(missing)}
    model = open_checkpoint(model_name) if missing or model_name == "embedded" else None
    context = context_tokens_of(model) if model is not None else pipeline.DEFAULT_CONTEXT_TOKENS
    meta["context_tokens"] = context
    if missing:
        fill = InProcessFill(Infiller(model))
        windows = windows_for(model)
        started = time.time()
        path.parent.mkdir(parents=True, exist_ok=True)
        out = path.open("a", encoding="utf-8") if model_name == "embedded" else None
        try:
            for n, hole in enumerate(missing, 1):
                plan = plan_for(hole, context, windows)
                row = {"id": hole["id"], "span": plan.span.kind, "canvas": plan.canvas, "text": "", "steps": 0,
                       "ms": 0.0, "line_confidence": None}
                if plan.canvas > 0:
                    reply = asyncio.run(fill(plan.fill_request()))
                    row.update(text=reply.text, steps=reply.steps, ms=round(reply.ms, 1),
                               line_confidence=list(reply.line_confidence) if reply.line_confidence else None)
                kept[hole["id"]] = row
                if out is not None:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                if n % 20 == 0:
                    log(f"  fills {n}/{len(missing)} ({(time.time() - started) / n:.1f} s each)")
        finally:
            if out is not None:
                out.close()
    meta["windows"] = windows_for(model) if model is not None else None
    return {h["id"]: reply_of(kept[h["id"]]) for h in holes}, meta
