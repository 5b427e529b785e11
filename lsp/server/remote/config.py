"""The `remote` settings: where the serving engine is and how to talk to it. Standard library only.

    "backend": "remote",
    "remote": {"url": "https://gpu1:8000/v1", "model": null, "endpoint": "completions",
               "apiKeyEnv": "DIFFILL_API_KEY"}

The key itself is never a setting: it comes from the environment variable named by `apiKeyEnv`
(or the file named by `apiKeyFile`). Problems are reported without the values that caused them,
since a value put in the wrong place may be a key or a URL with credentials.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ENDPOINTS = ("completions", "chat")
PROMPT_FORMATS = ("chat", "fim", "clamped")
KEY_LIKE_NAMES = ("apikey", "api_key", "key", "token", "apitoken", "bearer", "password", "secret")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class RemoteSettings:
    url: str | None = None                # OpenAI-compatible base URL, e.g. https://gpu1:8000/v1
    model: str | None = None              # None: the first model the server lists
    endpoint: str = "completions"         # completions (vLLM, self-hosted NIM) | chat (hosted NIM)
    api_key_env: str = "DIFFILL_API_KEY"  # the environment variable holding the key
    api_key_file: str | None = None       # ... or a file holding it (read when the variable is unset)
    ca_bundle: str | None = None          # PEM file of certificate authorities to trust (self-signed servers)
    insecure_skip_tls_verify: bool = False  # accept any certificate: anyone on the path can read the key
    allow_insecure_http: bool = False     # allow http:// to a host that is not this machine
    connect_timeout_ms: int = 2000
    timeout_ms: int = 6000                # the whole fill, retries included
    max_inflight: int = 4                 # requests in flight at once (one per document)
    retries: int = 2                      # on 429 and 503, with backoff and jitter
    stream: bool = True
    prompt_format: str | None = None      # chat | fim | clamped; None: fim when the tokenizer has FIM tokens, else chat
    tokenizer: str | None = None          # tokenizer.json, a folder holding it, or a hub id; None: look for the model's
    vllm_extensions: bool = True          # send vllm_xargs (canvas length, pinned suffix); off by itself where rejected

    def problem(self) -> str | None:
        """Why these settings cannot be used, or None."""
        if not self.url:
            return 'backend "remote" needs remote.url (the server\'s OpenAI-compatible base URL, e.g. https://host:8000/v1)'
        parts = urlsplit(self.url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or "") and not self.allow_insecure_http:
            return (f"remote.url uses http:// to {parts.hostname}, which is not this machine: the key and your code "
                    f"would cross the network in clear text. Use https://, or set remote.allowInsecureHttp")
        if self.endpoint == "chat" and self.prompt_format in ("fim", "clamped"):
            return (f'remote.promptFormat "{self.prompt_format}" needs the completions endpoint; the chat endpoint '
                    f'takes the "chat" format only')
        return None

    @property
    def host(self) -> str:
        """host[:port] of the server, for messages (never credentials or the path)."""
        parts = urlsplit(self.url or "")
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{parts.port}" if parts.port else host


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("an http:// or https:// URL")
    parts = urlsplit(v.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("a URL without credentials (the key goes in the variable named by remote.apiKeyEnv)")
    if parts.query or parts.fragment:
        raise ValueError("a base URL without query or fragment")
    try:
        parts.port
    except ValueError:
        raise ValueError("a URL with a valid port") from None
    path = parts.path.rstrip("/") or "/v1"  # a bare host: the OpenAI-compatible routes live under /v1
    return f"{parts.scheme}://{parts.netloc}{path}"


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("a non-empty string")
    return v.strip()


def _path(v: Any) -> str:
    return os.path.expanduser(_text(v))


def _env_name(v: Any) -> str:
    if not isinstance(v, str) or not ENV_NAME.match(v.strip()) or _looks_like_a_key(v.strip()):
        raise ValueError("the name of an environment variable (like DIFFILL_API_KEY), not the key itself")
    return v.strip()


def _looks_like_a_key(v: str) -> bool:
    return len(v) >= 24 and any(c.islower() for c in v) and any(c.isdigit() for c in v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _int(lo: int, hi: int):
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or not lo <= v <= hi:
            raise ValueError(f"an integer from {lo} to {hi}")
        return int(v)
    return check


def _choice(options):
    def check(v: Any) -> str:
        if isinstance(v, str) and v.strip().lower() in options:
            return v.strip().lower()
        raise ValueError("one of " + ", ".join(options))
    return check


def _optional(check):
    return lambda v: None if v is None else check(v)


# camelCase key -> (field, validator)
FIELDS: dict[str, tuple[str, Any]] = {
    "url": ("url", _optional(_url)),
    "model": ("model", _optional(_text)),
    "endpoint": ("endpoint", _choice(ENDPOINTS)),
    "apiKeyEnv": ("api_key_env", _env_name),
    "apiKeyFile": ("api_key_file", _optional(_path)),
    "caBundle": ("ca_bundle", _optional(_path)),
    "insecureSkipTlsVerify": ("insecure_skip_tls_verify", _bool),
    "allowInsecureHttp": ("allow_insecure_http", _bool),
    "connectTimeoutMs": ("connect_timeout_ms", _int(50, 60000)),
    "timeoutMs": ("timeout_ms", _int(100, 120000)),
    "maxInflight": ("max_inflight", _int(1, 8)),
    "retries": ("retries", _int(0, 5)),
    "stream": ("stream", _bool),
    "promptFormat": ("prompt_format", _optional(_choice(PROMPT_FORMATS))),
    "tokenizer": ("tokenizer", _optional(_path)),
    "vllmExtensions": ("vllm_extensions", _bool),
}

DEFAULTS = RemoteSettings()


def parse_remote(raw: Any, base: RemoteSettings = DEFAULTS) -> tuple[RemoteSettings, list[str]]:
    """The `remote` object of the settings; keys it does not name keep their value in `base`."""
    if raw is None:
        return base, []
    if not isinstance(raw, dict):
        return base, ["setting 'remote' must be a JSON object; it is ignored"]
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.replace("-", "").replace("_", "").lower() in KEY_LIKE_NAMES:
            problems.append(f"remote.{key} is ignored and not shown: the key is never read from the settings; "
                            f"put it in the environment variable named by remote.apiKeyEnv "
                            f"({values.get('api_key_env', base.api_key_env)}) or in the file named by "
                            f"remote.apiKeyFile")
            continue
        if key not in FIELDS:
            problems.append(f"unknown setting remote.{key} is ignored (known: {', '.join(FIELDS)})")
            continue
        name, check = FIELDS[key]
        try:
            values[name] = check(value)
        except ValueError as exc:
            default = getattr(DEFAULTS, name)
            problems.append(f"setting remote.{key} must be {exc} (the value given is not shown); "
                            f"using {default!r}")
            values[name] = default
    return dataclasses.replace(base, **values), problems


def describe_remote(settings: RemoteSettings) -> dict[str, Any]:
    return {key: getattr(settings, name) for key, (name, _) in FIELDS.items()}
