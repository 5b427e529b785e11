"""`diffill serve --check` with `"backend": "remote"`: the settings as the server will use them, then
`GET /models` and one tiny fill. Prints where the key comes from, never the key."""
from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlsplit

from diffill.lsp.pipeline.fill import FillRequest
from diffill.lsp.server.remote import transport
from diffill.lsp.server.remote.client import RemoteError, RemoteFill
from diffill.lsp.server.remote.config import RemoteSettings

PROBE = FillRequest("diffill-check", "def add(a, b):\n    return ", "\n", 16, "python")


def tls_line(cfg: RemoteSettings) -> str:
    if urlsplit(cfg.url or "").scheme != "https":
        return "none: plain http" + (" (remote.allowInsecureHttp)" if cfg.allow_insecure_http else " to this machine")
    if cfg.insecure_skip_tls_verify:
        return "ON BUT NOT VERIFIED (remote.insecureSkipTlsVerify): anyone on the path can read the key and the code"
    if cfg.ca_bundle:
        return f"verified against remote.caBundle {cfg.ca_bundle}"
    return "verified against the system's authorities and certifi's (SSL_CERT_FILE / SSL_CERT_DIR if set)"


async def probe(cfg: RemoteSettings, env=None, out=print) -> bool:
    env = dict(os.environ if env is None else env)
    out(f"backend: remote, {cfg.endpoint} endpoint at {cfg.url}")
    try:
        key, source = transport.load_key(cfg, env)
    except transport.KeyFileError as exc:
        out(f"key: {exc}")
        return False
    out(f"key: from {source}" if key else f"key: none ({cfg.api_key_env} is not set; fine for a server without --api-key)")
    out(f"TLS: {tls_line(cfg)}")
    out(f"proxy: {transport.proxy_label(transport.proxy_for(cfg.url or '', env))}")
    f = RemoteFill(cfg, env=env)
    try:
        try:
            await f.start()
        except RemoteError as exc:
            out(f"server: {exc}")
            return False
        size = f" (max_model_len {f.max_model_len})" if f.max_model_len else ""
        out(f"server: {cfg.host} serves {f.model}{size}")
        out(f"context: {f.counter.describe()}; prompt format {f.format}")
        t0 = time.perf_counter()
        try:
            reply = await f.fill(PROBE)
        except RemoteError as exc:
            out(f"fill: {exc}")
            return False
        ms = (time.perf_counter() - t0) * 1000.0
        ext = "taken" if f.extensions else "not taken (sent without vllm_xargs)"
        out(f"fill: a test fill took {ms:.0f} ms: {reply.text!r}; vLLM extensions {ext}")
        return True
    finally:
        await f.close()


def check_remote(cfg: RemoteSettings, env=None, out=print) -> bool:
    return asyncio.run(probe(cfg, env, out))
