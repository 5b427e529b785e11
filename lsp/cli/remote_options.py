"""`--backend remote` for `diffill complete`: the same pipeline with a serving engine behind the fill.

    diffill complete app.py:12:8 --backend remote --remote-url https://gpu1:8000/v1
    diffill complete app.py:12:8 --settings ~/.config/diffill.json   # its "backend" and "remote" apply

The key comes from the environment variable named by --api-key-env (default DIFFILL_API_KEY), as in
the server. Nothing here imports torch.
"""
from __future__ import annotations

import asyncio
import json
import sys

from diffill.lsp.pipeline import complete as pipeline
from diffill.lsp.pipeline.windows import ContextWindows


def add_remote_arguments(p) -> None:
    g = p.add_argument_group("remote backend (a vLLM or NIM server; see docs/remote.md)")
    g.add_argument("--backend", choices=["local", "remote"], default=None,
                   help="local: the model in this process (default); remote: an OpenAI-compatible server")
    g.add_argument("--remote-url", help="the server's base URL, e.g. https://gpu1:8000/v1")
    g.add_argument("--remote-model", help="the served model id (default: the first the server lists)")
    g.add_argument("--remote-endpoint", choices=["completions", "chat"], help="default: completions")
    g.add_argument("--api-key-env", help="environment variable holding the key (default: DIFFILL_API_KEY)")
    g.add_argument("--settings", metavar="JSON_OR_FILE",
                   help="server settings (a JSON object or file); its backend and remote.* apply here")


def remote_settings(args):
    """(RemoteSettings, problems) when the remote backend is asked for, else (None, [])."""
    from diffill.lsp.server import settings as settings_mod

    raw = {}
    if args.settings:
        text = args.settings
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as f:
                text = f.read()
        raw = json.loads(text)
    cfg, problems = settings_mod.parse(raw)
    backend = args.backend or cfg.backend
    if backend != "remote":
        return None, []
    flags = {"url": args.remote_url, "model": args.remote_model, "endpoint": args.remote_endpoint,
             "apiKeyEnv": args.api_key_env, "promptFormat": getattr(args, "prompt_format", None)}
    from diffill.lsp.server.remote.config import parse_remote
    remote, more = parse_remote({k: v for k, v in flags.items() if v is not None}, cfg.remote)
    return remote, problems + more


async def _complete(remote_cfg, text: str, offset: int, language: str, args, doc: str):
    from diffill.lsp.server.remote.client import RemoteFill

    fill = RemoteFill(remote_cfg)
    try:
        await fill.start()
        context = args.context_tokens or fill.context_tokens() or pipeline.DEFAULT_CONTEXT_TOKENS
        request = pipeline.Request(text, offset, language, context, doc=doc, max_steps=args.steps, seed=args.seed)
        return await pipeline.complete(request, fill.fill, ContextWindows(fill.counter)), fill
    finally:
        await fill.close()


def run_remote(remote_cfg, text: str, offset: int, language: str, args, doc: str, explain) -> int:
    from diffill.lsp.server.remote.client import RemoteError

    try:
        outcome, fill = asyncio.run(_complete(remote_cfg, text, offset, language, args, doc))
    except RemoteError as exc:
        print(f"diffill complete: {exc}", file=sys.stderr)
        return 1
    if args.explain:
        print(f"backend: {fill.label} ({fill.counter.describe()}; prompt format {fill.format})", file=sys.stderr)
        print(explain(outcome), file=sys.stderr)
    reply = outcome.reply
    if args.json:
        print(json.dumps({"text": outcome.text, "replace": outcome.replace, "steps": reply.steps if reply else 0,
                          "ms": round(reply.ms, 1) if reply else 0.0, "backend": fill.label}))
    else:
        print(outcome.text)
    return 0


