"""Server settings: one typed model, parsed in one place.

Clients send them as `initializationOptions` at initialize and again through
`workspace/didChangeConfiguration` (either bare or under a `diffill` key). Keys are camelCase.
A value that is missing takes its default; a value that is invalid also takes its default, and
`parse` returns one message per problem so the server can tell the user once.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from diffill.lsp.server.remote.config import DEFAULTS as REMOTE_DEFAULTS
from diffill.lsp.server.remote.config import RemoteSettings, describe_remote, parse_remote

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
WORKER_MODES = ("shared", "private")
FAST_PATH = ("auto", "on", "off")
EXPERTS = ("auto", "none", "fp8", "int4")
FAST_PARTS = ("router", "experts", "graph", "fused_head", "device_sampler", "all")  # model/gpu/fast_path.py
BACKENDS = ("local", "remote")


@dataclass(frozen=True)
class Settings:
    model: str | None = None            # checkpoint folder or hub id; None: the embedded model
    device: str = "auto"                # auto | cpu | cuda | cuda:N | mps
    dtype: str = "auto"                 # auto | float32 | bfloat16 | float16
    max_steps: int | None = None        # denoising steps per canvas; None: the checkpoint's default
    canvas_cap: int = 256               # most tokens one completion may fill
    debounce_ms: int = 75               # wait this long after the last keystroke ...
    debounce_max_ms: int = 400          # ... or up to this when the user is typing fast
    adaptive_debounce: bool = True
    context_tokens: int | None = None   # prefix + suffix token budget; None: the checkpoint's own
    prefix_share: float = 0.70          # the prefix gets at least this share of the budget
    suffix_share: float = 0.25          # the suffix gets at most this share
    languages: tuple[str, ...] | None = None  # language ids to complete; None: all
    force_languages: tuple[str, ...] = ()     # complete these although the model was not trained for them
    min_confidence: float | None = None       # lines the model was less sure of are not shown; None: calibrated default
    worker_mode: str = "shared"         # shared: per-user daemon over a socket; private: a child process
    worker_socket: str | None = None    # socket path of the shared worker; None: the per-user default
    worker_idle_timeout_s: int = 900    # a shared worker exits after this long without requests
    fill_timeout_ms: int = 30000        # a fill not answered by then gives no completion
    worker_timeout_ms: int = 10000      # a worker silent this long while asked (or stuck in a cancelled
                                        # fill) is hung: it is killed and started again
    preload: bool = True                # start the worker (and load the model) at initialize
    allow_download: bool = False        # let the worker fetch a hub id that is not cached locally
    experts: str = "auto"               # expert weights: auto (on CUDA what fits), none, fp8, int4
    worker_nice: int = 10               # the worker's scheduling niceness (0: as the editor; 19: lowest)
    fast_path: str = "auto"             # the GPU's fast parts: auto (on CUDA), on (also elsewhere), off
    fast_path_off: tuple[str, ...] = () # fast parts turned off by name (FAST_PARTS; "all")
    cache_size: int = 256               # completions remembered for typing-through
    backend: str = "local"              # local: the model worker; remote: a serving engine over HTTP (remote.*)
    remote: RemoteSettings = REMOTE_DEFAULTS  # url, model, endpoint, apiKeyEnv, ... (lsp/server/remote/config.py)

    def worker_key(self) -> tuple:
        """The settings that need a different worker when they change."""
        return (self.model, self.device, self.dtype, self.worker_mode, self.worker_socket,
                self.worker_idle_timeout_s, self.allow_download, self.experts, self.worker_nice, self.fast_path,
                self.fast_path_off)

    def enabled_for(self, language_id: str) -> bool:
        return self.languages is None or (language_id or "").lower() in self.languages


def _int(lo: int, hi: int):
    def check(v: Any):
        # inf, nan and 1e400 (json reads it as inf) are refused before int() could overflow
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi
                or int(v) != v):
            raise ValueError(f"an integer from {lo} to {hi}")
        return int(v)
    return check


def _optional(check):
    def inner(v: Any):
        return None if v is None else check(v)
    return inner


def _share(v: Any):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError("a number from 0 to 1")
    return float(v)


def _bool(v: Any):
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _choice(options: tuple[str, ...], prefixes: tuple[str, ...] = ()):
    def check(v: Any):
        if isinstance(v, str) and (v.lower() in options or any(v.lower().startswith(p) for p in prefixes)):
            return v.lower()
        raise ValueError("one of " + ", ".join(options))
    return check


def _text(v: Any):
    if not isinstance(v, str) or not v.strip():
        raise ValueError("a non-empty string")
    return os.path.expanduser(v.strip()) if v.strip().startswith("~") else v.strip()


def _languages(v: Any):
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError("a list of language ids, or null for all")
    return None if "*" in v else tuple(x.lower() for x in v)


def _fast_parts(v: Any):
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x.lower() in FAST_PARTS for x in v):
        raise ValueError("a list of fast part names: " + ", ".join(FAST_PARTS))
    return tuple(x.lower() for x in v)


def _forced_languages(v: Any):
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError('a list of language ids, ["*"] for all')
    return tuple(x.lower() for x in v)


# camelCase key -> (field name, validator)
_FIELDS: dict[str, tuple[str, Any]] = {
    "model": ("model", _optional(_text)),
    "device": ("device", _choice(DEVICES, prefixes=("cuda:",))),
    "dtype": ("dtype", _choice(DTYPES)),
    "maxSteps": ("max_steps", _optional(_int(1, 512))),
    "canvasCap": ("canvas_cap", _int(1, 2048)),
    "debounceMs": ("debounce_ms", _int(0, 5000)),
    "debounceMaxMs": ("debounce_max_ms", _int(0, 10000)),
    "adaptiveDebounce": ("adaptive_debounce", _bool),
    "contextTokens": ("context_tokens", _optional(_int(32, 131072))),
    "prefixShare": ("prefix_share", _share),
    "suffixShare": ("suffix_share", _share),
    "languages": ("languages", _languages),
    "forceLanguages": ("force_languages", _forced_languages),
    "minConfidence": ("min_confidence", _optional(_share)),
    "workerMode": ("worker_mode", _choice(WORKER_MODES)),
    "workerSocket": ("worker_socket", _optional(_text)),
    "workerIdleTimeout": ("worker_idle_timeout_s", _int(10, 7 * 24 * 3600)),
    "fillTimeoutMs": ("fill_timeout_ms", _int(100, 600_000)),
    "workerTimeoutMs": ("worker_timeout_ms", _int(200, 600_000)),
    "preload": ("preload", _bool),
    "allowDownload": ("allow_download", _bool),
    "experts": ("experts", _choice(EXPERTS)),
    "workerNice": ("worker_nice", _int(0, 19)),
    "fastPath": ("fast_path", _choice(FAST_PATH)),
    "fastPathOff": ("fast_path_off", _fast_parts),
    "cacheSize": ("cache_size", _int(0, 100000)),
    "backend": ("backend", _choice(BACKENDS)),
    "remote": ("remote", parse_remote),  # parsed apart: its problems never show values (a key may be pasted there)
}

DEFAULTS = Settings()


def parse(raw: Any, base: Settings = DEFAULTS) -> tuple[Settings, list[str]]:
    """Settings from a client's JSON object; invalid or unknown entries are reported, not fatal.

    Keys absent from `raw` keep their value in `base` (so a partial update changes only what it names).
    """
    problems: list[str] = []
    if isinstance(raw, dict) and isinstance(raw.get("diffill"), dict):
        raw = raw["diffill"]
    if raw is None:
        return base, problems
    if not isinstance(raw, dict):
        return base, [f"settings must be a JSON object, got {type(raw).__name__}; using the defaults"]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            problems.append(f"unknown setting {key!r} is ignored (known: {', '.join(_FIELDS)})")
            continue
        if key == "remote":
            values["remote"], remote_problems = parse_remote(value, base.remote)
            problems += remote_problems
            continue
        name, check = _FIELDS[key]
        try:
            values[name] = check(value)
        except Exception as exc:  # any bad value falls back alone, with its own message
            default = getattr(DEFAULTS, name)
            what = exc if isinstance(exc, ValueError) else "valid"
            problems.append(f"setting {key!r} must be {what}, got {_shown(value)}; using {default!r}")
            values[name] = default
    settings = dataclasses.replace(base, **values)
    if settings.prefix_share + settings.suffix_share > 1.0:
        problems.append(
            f"prefixShare + suffixShare must not exceed 1, got {settings.prefix_share} + {settings.suffix_share}; "
            f"using {DEFAULTS.prefix_share} and {DEFAULTS.suffix_share}"
        )
        settings = dataclasses.replace(settings, prefix_share=DEFAULTS.prefix_share, suffix_share=DEFAULTS.suffix_share)
    if settings.debounce_max_ms < settings.debounce_ms:
        settings = dataclasses.replace(settings, debounce_max_ms=settings.debounce_ms)
    return settings, problems


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(settings: Settings) -> dict[str, Any]:
    """The settings as the client would write them (camelCase keys)."""
    return {key: describe_remote(getattr(settings, name)) if key == "remote" else getattr(settings, name)
            for key, (name, _) in _FIELDS.items()}
