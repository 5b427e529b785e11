"""Token counts for the context windows of a remote model, and token ids for a pinned canvas.

In order of preference: the model's own tokenizer.json (remote.tokenizer, or the Hugging Face hub
cache of the served model id), then an estimate calibrated by the server's `/tokenize` on a code
sample, then the pipeline's fixed estimate. `describe()` says which one is in use.
"""
from __future__ import annotations

import os

from diffill.lsp.pipeline.windows import TokenCounter

# code of the kind completions see, to measure the server tokenizer's characters per token
SAMPLE = '''import json
from pathlib import Path


def load_settings(path: str, defaults: dict | None = None) -> dict:
    """Read a JSON settings file; missing keys take their defaults."""
    settings = dict(defaults or {})
    try:
        settings.update(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}")
    return settings


class Counter {
  constructor(start = 0) { this.value = start; }
  increment(by) { this.value += by ?? 1; return this.value; }
}

for (int i = 0; i < n; ++i) {
    total += values[i] * weights[i];
}
'''
SAFETY = 0.9  # count a little more than measured: a window must not overflow the server's budget


class RemoteTokenCounter(TokenCounter):
    """The pipeline's counter (exact with a tokenizer.json), whose estimate without one is measured on
    the server (`calibrate`); it also says which it uses and gives token ids for a pinned canvas."""

    def __init__(self):
        super().__init__()
        self.measured = False

    def calibrate(self, chars: int, tokens: int) -> None:
        if chars > 0 and tokens > 0:
            self.chars_per_token = min(6.0, max(1.0, SAFETY * chars / tokens))
            self.measured = True

    def describe(self) -> str:
        if self._tok is not None:
            return "tokens counted with the model's tokenizer"
        if self.measured:
            return (f"tokens estimated at {self.chars_per_token:.1f} characters each "
                    f"(measured with the server's /tokenize)")
        return f"tokens estimated at {self.chars_per_token:.0f} characters each (no tokenizer found)"

    def encode(self, text: str) -> list[int] | None:
        """Token ids with the local tokenizer, or None without one."""
        return self._tok.encode(text, add_special_tokens=False).ids if self._tok is not None else None

    def vocab_size(self) -> int | None:
        return self._tok.get_vocab_size(with_added_tokens=True) if self._tok is not None else None

    def has_fim_tokens(self) -> bool:
        return self._tok is not None and all(self._tok.token_to_id(t) is not None
                                             for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))


def find_tokenizer(configured: str | None, model: str | None) -> str | None:
    """A tokenizer.json for the served model: the configured file, folder or hub id, else the
    hub cache of the model id (no download)."""
    for candidate in (configured, model):
        if not candidate:
            continue
        path = os.path.expanduser(candidate)
        if os.path.isfile(path):
            return path
        if os.path.isfile(os.path.join(path, "tokenizer.json")):
            return os.path.join(path, "tokenizer.json")
        cached = _hub_cached(candidate)
        if cached:
            return cached
    return None


def _hub_cached(repo_id: str) -> str | None:
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for rid in dict.fromkeys((repo_id, _hub_case(repo_id))):
        try:
            found = try_to_load_from_cache(rid, "tokenizer.json")
        except Exception:
            continue
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _hub_case(repo_id: str) -> str:
    """Hosted NIM lists DiffusionGemma in lower case; the hub spells it google/diffusiongemma-26B-A4B-it."""
    return repo_id.replace("-26b-a4b-", "-26B-A4B-")
