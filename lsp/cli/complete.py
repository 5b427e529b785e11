"""`diffill complete FILE:LINE:COL`: fill in code at a point of a file, in this process.

The same path as the server: the span decision, the model's fill through `Infiller`, and the trim.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from diffill.lsp.code.span import decide_span
from diffill.lsp.code.syntax import language_from_path
from diffill.lsp.code.trim import trim
from diffill.lsp.cli.model_options import add_model_arguments

MAX_FILE_BYTES = 10 * 1024 * 1024
PREFIX_CHARS, SUFFIX_CHARS = 12_000, 3_000  # context windows sent to the model


class InputError(Exception):
    """Bad input from the user: the message says what and what to do."""


def add_arguments(p):
    p.add_argument("target", metavar="FILE:LINE:COL", help="1-based line and column (in characters)")
    add_model_arguments(p)
    p.add_argument("--language", help="language id (default: from the file name)")
    p.add_argument("--prompt-format", choices=["fim", "chat", "clamped"],
                   help="how the hole is shown to the model (default: the checkpoint's: fim when its "
                        "tokenizer has FIM tokens, else chat)")
    p.add_argument("--json", action="store_true", help='print {"text", "steps", "ms"}')


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


def split_at(text: str, line: int, col: int) -> tuple[str, str]:
    lines = text.split("\n")
    if line > len(lines):
        raise InputError(f"line {line} is past the end of the file ({len(lines)} lines)")
    if col > len(lines[line - 1]) + 1:
        raise InputError(f"column {col} is past the end of line {line} ({len(lines[line - 1])} characters)")
    offset = sum(len(s) + 1 for s in lines[: line - 1]) + col - 1
    return text[:offset], text[offset:]


def complete_text(infiller, language: str, prefix: str, suffix: str, steps=None, seed=0, doc_key=None):
    """(trimmed text, FillResult or None, span): the whole completion path for one cursor."""
    span = decide_span(language, prefix, suffix)
    if span.canvas_length == 0:
        return "", None, span
    res = infiller.fill(prefix[-PREFIX_CHARS:], suffix[:SUFFIX_CHARS], canvas_length=span.canvas_length,
                        max_steps=steps, seed=seed, doc_key=doc_key, language=language,
                        max_lines=span.max_lines)
    return trim(language, prefix, suffix, res.text, span).text, res, span


def run(args) -> int:
    try:
        path, line, col = parse_target(args.target)
        text = read_source(path)
        prefix, suffix = split_at(text, line, col)
    except InputError as exc:
        print(f"diffill complete: {exc}", file=sys.stderr)
        return 2
    return print_completion(args, path, prefix, suffix)


def print_completion(args, path: Path, prefix: str, suffix: str) -> int:
    from diffill.lsp.cli.model_options import open_model
    from diffill.model.engine.infill import Infiller

    language = args.language or language_from_path(str(path))
    model, note = open_model(args.model, args.device, args.dtype)
    if note:
        print(note, file=sys.stderr)
    try:
        infiller = Infiller(model, prompt_format=args.prompt_format)
    except ValueError as exc:
        print(f"diffill complete: {exc}", file=sys.stderr)
        return 2
    text, res, span = complete_text(infiller, language, prefix, suffix, args.steps, args.seed)
    steps, ms = (res.steps, round(res.ms, 1)) if res else (0, 0.0)
    if args.json:
        print(json.dumps({"text": text, "steps": steps, "ms": ms}))
    else:
        print(text)
    return 0
