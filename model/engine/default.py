"""The model used when none is configured: the embedded checkpoint shipped in the package, or, in a
build that has none, a tiny random-weight checkpoint built on the fly (whose output is noise)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded"
RANDOM_NAME = "random-fim-v1"


class DefaultModel(NamedTuple):
    path: Path
    random: bool  # True: random weights, the completions are meaningless


def cache_dir() -> Path:
    base = os.environ.get("DIFFILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "diffill")
    return Path(base)


def default_model_path() -> DefaultModel:
    if (EMBEDDED_DIR / "config.json").is_file():
        return DefaultModel(EMBEDDED_DIR, False)
    return DefaultModel(random_model_path(), True)


def random_model_path(root: Path | None = None) -> Path:
    """A tiny random-weight FIM checkpoint (mask noise), built once under `root` (default: the cache).
    Its output is noise, which still gives an editor something to show: the editor tests use it."""
    out = (root or cache_dir()) / RANDOM_NAME
    if not (out / "config.json").is_file():
        from diffill.model.engine.builder import build_random_checkpoint
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        build_random_checkpoint(tmp, seed=0, fim=True, noise="mask", prompt_format="fim", canvas_length=64,
                                config_overrides=dict(hidden_size=64, intermediate_size=128))
        tmp.replace(out) if not out.exists() else None
    return out
