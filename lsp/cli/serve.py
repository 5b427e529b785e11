"""`diffill serve`: the language server over stdio (or --tcp PORT on loopback); --check tests the set-up."""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys

from diffill.lsp.server import settings as settings_mod
from diffill.lsp.server.worker_client import socket_path_for, worker_command
from diffill.lsp.wire import sockets

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stdio", action="store_true", help="serve over stdin/stdout (the default)")
    parser.add_argument("--tcp", type=int, metavar="PORT", help="serve on 127.0.0.1:PORT instead of stdio")
    parser.add_argument("--check", action="store_true",
                        help="validate the settings and the model (remote backend: the server's /models and one tiny fill), print a report, and exit")
    parser.add_argument("--settings", metavar="JSON_OR_FILE",
                        help="settings as a JSON object or a JSON file (for --check; editors send them "
                             "as initializationOptions)")
    parser.add_argument("--log-level", default="WARNING", help="log level on stderr (default: WARNING)")


def run(args) -> int:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="diffill %(levelname)s %(name)s: %(message)s")
    if args.check:
        return check(args.settings)
    from diffill.lsp.server.app import server

    if args.tcp is not None:
        server.start_tcp("127.0.0.1", args.tcp)
    else:
        server.start_io()
        return server.exit_code  # 0 after shutdown and exit, 1 for exit (or end of input) without
    return 0


def _read_settings_arg(value: str | None):
    if not value:
        return {}
    text = value
    if not value.lstrip().startswith("{"):
        with open(value, encoding="utf-8") as f:
            text = f.read()
    return json.loads(text)


def check(settings_arg: str | None) -> int:
    """Validate the settings and the model; print what was found and what to do about it."""
    ok = True
    try:
        raw = _read_settings_arg(settings_arg)
    except (OSError, ValueError) as exc:
        print(f"settings: cannot read {settings_arg!r}: {exc}")
        raw, ok = {}, False
    cfg, problems = settings_mod.parse(raw)
    for p in problems:
        print(f"settings: {p}")
        ok = False
    print("settings: " + json.dumps(settings_mod.describe(cfg)))
    if cfg.backend == "remote":  # no worker: probe the server's /models and one tiny fill
        from diffill.lsp.server.remote.check import check_remote
        ok = check_remote(cfg.remote) and ok
        print("check: " + ("ok" if ok else "problems found (see above)"))
        return 0 if ok else 1
    if cfg.worker_mode == "shared":
        path = socket_path_for(cfg)
        try:
            with sockets.SocketPlace(path, create=True) as place:  # every folder on the way, checked
                place.check_socket()  # and what is there already: a socket of ours, or nothing
            print(f"worker socket: {path} (every folder on the way safe, the last private to this user)")
        except (OSError, sockets.UnsafeSocketDir, sockets.UnsafeSocket) as exc:
            print(f"worker socket: {path}: {exc}")
            ok = False
    cmd = worker_command(cfg, None) + ["--check"]
    print("model: loading (this runs the worker once) ...", flush=True)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print(f"model: the worker failed to run (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
        return 1
    report = json.loads(lines[-1])
    if report.get("state") != "ready":
        print(f"model: {report.get('message')}")
        return 1
    print(f"model: {report.get('message')}; loaded in {report.get('load_s')} s")
    print(f"model: a test fill took {report.get('fill_ms')} ms in {report.get('fill_steps')} steps: "
          f"{report.get('fill_text')!r}")
    print("check: " + ("ok" if ok else "problems found (see above)"))
    return 0 if ok else 1
