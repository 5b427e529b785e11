"""`diffill complete FILE:LINE:COL`: fill in code at a point of a file, in this process.

The server's pipeline (lsp/pipeline/complete.py) with the model in this process behind the fill.
`--explain` prints the raw fill, the span and what each trim filter cut.
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from diffill.lsp.cli.model_options import add_model_arguments
from diffill.lsp.cli.remote_options import add_remote_arguments, remote_settings, run_remote
from diffill.lsp.code.syntax import language_from_path
from diffill.lsp.pipeline import complete as pipeline

MAX_FILE_BYTES = 10 * 1024 * 1024


class InputError(Exception):
    """Bad input from the user: the message says what and what to do."""


def add_arguments(p):
    p.add_argument("target", metavar="FILE:LINE:COL", help="1-based line and column (in characters)")
    add_model_arguments(p)
    p.add_argument("--language", help="language id (default: from the file name)")
    p.add_argument("--prompt-format", choices=["fim", "chat", "clamped"],
                   help="how the hole is shown to the model (default: the checkpoint's: fim when its "
                        "tokenizer has FIM tokens, else chat)")
    p.add_argument("--context-tokens", type=int, default=None,
                   help="prefix + suffix tokens for the model (default: the checkpoint's own)")
    p.add_argument("--json", action="store_true", help='print {"text", "steps", "ms"}')
    p.add_argument("--explain", action="store_true",
                   help="also print (to stderr) the span, the raw fill and what each trim filter cut")
    add_remote_arguments(p)


def parse_target(target: str) -> tuple[Path, int, int]:
    path, sep1, rest = target.rpartition(":")
    head, sep2, line = path.rpartition(":")
    if not (sep1 and sep2 and head):
        raise InputError(f"expected FILE:LINE:COL, got {target!r}")
    try:
        ln, col = int(line), int(rest)
    except ValueError:
        raise InputError(f"LINE and COL must be numbers in {target!r}") from None
    if ln < 1 or col < 1:
        raise InputError("LINE and COL are 1-based")
    return Path(head), ln, col


def read_source(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path} is {size / 1e6:.1f} MB; files over {MAX_FILE_BYTES // 2**20} MB are not completed")
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise InputError(f"{path} looks binary (it contains NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def offset_at(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    if line > len(lines):
        raise InputError(f"line {line} is past the end of the file ({len(lines)} lines)")
    if col > len(lines[line - 1]) + 1:
        raise InputError(f"column {col} is past the end of line {line} ({len(lines[line - 1])} characters)")
    offset = sum(len(s) + 1 for s in lines[: line - 1]) + col - 1
    return offset


def complete_in_process(model, text: str, offset: int, language: str, *, infiller=None, steps=None, seed=0,
                        context_tokens=None, doc: str = "") -> pipeline.Outcome:
    """The pipeline at one cursor with `model` in this process (`infiller` to reuse one)."""
    from diffill.lsp.cli.in_process import InProcessFill, context_tokens_of, windows_for
    from diffill.model.engine.infill import Infiller

    request = pipeline.Request(text, offset, language, context_tokens or context_tokens_of(model), doc=doc,
                               max_steps=steps, seed=seed)
    fill = InProcessFill(infiller or Infiller(model))
    return asyncio.run(pipeline.complete(request, fill, windows_for(model)))


def explain(outcome: pipeline.Outcome) -> str:
    """What happened at the cursor, for a person: the span, the raw fill, each filter's cut."""
    plan = outcome.plan
    lines = [f"span: {plan.span.kind} (canvas {plan.canvas} tokens, at most {plan.span.max_lines} lines)",
             f"model window: {plan.window.prefix_tokens} prefix + {plan.window.suffix_tokens} suffix tokens"]
    if outcome.reply is None:
        lines.append("fill: none (the span wants nothing here)")
    else:
        lines.append(f"fill: {outcome.reply.steps} steps, {outcome.reply.ms:.0f} ms; raw text {outcome.raw!r}")
    for cut in (outcome.trimmed.trace if outcome.trimmed is not None else ()):
        lines.append(f"  {cut}")
    lines.append(f"shown: {outcome.text!r}" + (f" (replacing {outcome.replace} characters)" if outcome.replace else ""))
    return "\n".join(lines)


def run(args) -> int:
    try:
        path, line, col = parse_target(args.target)
        text = read_source(path)
        offset = offset_at(text, line, col)
    except InputError as exc:
        print(f"diffill complete: {exc}", file=sys.stderr)
        return 2
    try:
        remote, problems = remote_settings(args)
    except (OSError, ValueError) as exc:
        print(f"diffill complete: cannot read --settings: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"diffill complete: {problem}", file=sys.stderr)
    if remote is not None:  # a serving engine behind the same pipeline; no model, no torch here
        return run_remote(remote, text, offset, args.language or language_from_path(str(path)), args, str(path), explain)
    from diffill.lsp.cli.model_options import open_model
    from diffill.model.engine.infill import Infiller

    model, note = open_model(args.model, args.device, args.dtype)
    if note:
        print(note, file=sys.stderr)
    try:
        infiller = Infiller(model, prompt_format=args.prompt_format)
    except ValueError as exc:
        print(f"diffill complete: {exc}", file=sys.stderr)
        return 2
    language = args.language or language_from_path(str(path))
    outcome = complete_in_process(model, text, offset, language, infiller=infiller, steps=args.steps,
                                  seed=args.seed, context_tokens=args.context_tokens, doc=str(path))
    if args.explain:
        print(explain(outcome), file=sys.stderr)
    reply = outcome.reply
    if args.json:
        print(json.dumps({"text": outcome.text, "replace": outcome.replace, "steps": reply.steps if reply else 0,
                          "ms": round(reply.ms, 1) if reply else 0.0}))
    else:
        print(outcome.text)
    return 0
