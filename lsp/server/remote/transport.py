"""The HTTP side of the remote backend: the key, TLS, proxies and the httpx client.

- The key comes from the environment variable named by `apiKeyEnv`, else the file `apiKeyFile`.
  It lives in one header of one client; a logging filter blanks it out of every record anyway.
- TLS is verified by default against the system's authorities plus certifi's, or against
  `caBundle` (with SSL_CERT_FILE / SSL_CERT_DIR honoured); `insecureSkipTlsVerify` turns it off.
- HTTP(S)_PROXY, ALL_PROXY and NO_PROXY are honoured (the process environment is read here, not by
  httpx), and a loopback server is never proxied.
- Redirects are never followed: the key goes to the configured host and nowhere else.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from urllib.parse import urlsplit

from diffill.lsp.server.remote.config import RemoteSettings, is_loopback

REDACTED = "[redacted]"


class KeyFileError(Exception):
    """The key file cannot be read (the message names the setting, never the key)."""


def load_key(cfg: RemoteSettings, env) -> tuple[str | None, str]:
    """(key or None, where it came from, for messages)."""
    value = (env.get(cfg.api_key_env) or "").strip()
    if value:
        return value, f"the environment variable {cfg.api_key_env}"
    if cfg.api_key_file:
        try:
            with open(cfg.api_key_file, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise KeyFileError(f"cannot read remote.apiKeyFile: {exc.strerror}") from None
        if value:
            return value, "the file named by remote.apiKeyFile"
    return None, f"no key ({cfg.api_key_env} is not set)"


class Redact(logging.Filter):
    """Replaces the given secrets in a record's message (and its arguments) before anyone writes it."""

    def __init__(self, secrets=()):
        super().__init__("diffill-redact")
        self.secrets = {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = message
        for s in self.secrets:
            clean = clean.replace(s, REDACTED)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_REDACT = Redact()
# a logger's filter sees only the records made on it, not its children's: name them all, and filter
# every handler (the root's, and the last resort that prints when there is none)
_LOGGERS = ("", "diffill", "diffill.remote", "httpx", "httpcore", "httpcore.connection", "httpcore.http11",
            "httpcore.proxy", "pygls")


def protect(secret: str | None) -> None:
    """Keep `secret` out of every log record of this process, from now on."""
    if not secret:
        return
    _REDACT.secrets.add(secret)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
        for handler in logger.handlers + ([logging.lastResort] if logging.lastResort and not name else []):
            if _REDACT not in handler.filters:
                handler.addFilter(_REDACT)


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, REDACTED) if secret else text


def ssl_context(cfg: RemoteSettings, env) -> ssl.SSLContext | bool:
    """What httpx verifies the server's certificate with."""
    if cfg.insecure_skip_tls_verify:
        return False
    if cfg.ca_bundle:
        if not os.path.exists(cfg.ca_bundle):
            raise OSError(f"remote.caBundle {cfg.ca_bundle} does not exist")
        if os.path.isdir(cfg.ca_bundle):
            return ssl.create_default_context(capath=cfg.ca_bundle)
        return ssl.create_default_context(cafile=cfg.ca_bundle)
    cafile, capath = env.get("SSL_CERT_FILE"), env.get("SSL_CERT_DIR")
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    ctx = ssl.create_default_context()  # the system's authorities (a company's own CA is usually there)
    try:
        import certifi
        ctx.load_verify_locations(cafile=certifi.where())
    except (ImportError, OSError, ssl.SSLError):
        pass
    return ctx


def _no_proxy_matches(host: str, port: int | None, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: "*", host names (a leading dot or "*." optional, matching
    subdomains too), host:port, IP addresses and CIDR ranges."""
    host = host.strip("[]").lower()
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, entry_port = entry, None
        if entry.startswith("["):
            name, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] or None
        elif entry.count(":") == 1:
            name, entry_port = entry.split(":")
        if entry_port and str(port) != entry_port:
            continue
        name = name.removeprefix("*").lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def proxy_for(url: str, env) -> str | None:
    """The proxy URL for requests to `url`, from the environment; None for loopback and NO_PROXY hosts."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback(host):
        return None
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    if _no_proxy_matches(host, parts.port, no_proxy):
        return None
    scheme = parts.scheme
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
        value = (env.get(name) or "").strip()
        if value:
            return value if "://" in value else "http://" + value
    return None


def proxy_label(proxy: str | None) -> str:
    """host:port of a proxy, for messages (never its credentials)."""
    if not proxy:
        return "direct"
    parts = urlsplit(proxy)
    return f"via proxy {parts.hostname}:{parts.port}" if parts.port else f"via proxy {parts.hostname}"


def make_client(cfg: RemoteSettings, key: str | None, env):
    """An async httpx client for `cfg.url`: keep-alive, our TLS and proxy choice, no redirects."""
    import httpx

    headers = {"User-Agent": "diffill", "Accept": "application/json, text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = httpx.Timeout(connect=cfg.connect_timeout_ms / 1000.0, read=cfg.timeout_ms / 1000.0,
                            write=cfg.timeout_ms / 1000.0, pool=cfg.timeout_ms / 1000.0)
    limits = httpx.Limits(max_connections=cfg.max_inflight + 2, max_keepalive_connections=cfg.max_inflight + 2,
                          keepalive_expiry=120.0)
    return httpx.AsyncClient(headers=headers, verify=ssl_context(cfg, env), proxy=proxy_for(cfg.url, env),
                             trust_env=False, follow_redirects=False, timeout=timeout, limits=limits)
