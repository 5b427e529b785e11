"""The VS Code extension: lint and unit tests, and end to end in real VS Code (code-server in
headless Chromium, driven by playwright-core) against the real `diffill serve`."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from editor_support import (CODE_SERVER, NODE_DIR, VSCODE_EXTENSION, free_port, missing, node_env, plumbing_model,
                            save_screenshot, server_command, stop, wait_for_port)

pytestmark = pytest.mark.slow

DRIVER = VSCODE_EXTENSION / "test" / "e2e" / "type-and-accept.mjs"
# The document the user edits: the cursor goes to the end of the empty line 3, where TYPED is typed.
DOCUMENT = "def mean(values):\n    total = sum(values)\n\n\nprint(mean([1, 2, 3]))\n"
TYPED_LINE = 3
TYPED = "    return"


def as_drawn(text: str) -> str:
    """Text as VS Code draws it: control characters as their Unicode control pictures."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 0x20 and c not in "\t\n" else c for c in text)


def npm(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    # The machine's npm, run by node 24 (first on PATH in env).
    return subprocess.run(["npm", *args], cwd=VSCODE_EXTENSION, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def toolchain():
    if not (NODE_DIR / "node").exists() or not (VSCODE_EXTENSION / "node_modules").exists():
        missing("node 24 and the extension's npm dependencies")
    if not CODE_SERVER.exists():
        missing("code-server")


@pytest.fixture(scope="module")
def vsix(toolchain, tmp_path_factory) -> Path:
    """The extension packaged from the current source, as a user installs it."""
    env = node_env(tmp_path_factory.mktemp("npm-home"))
    done = npm(["run", "-s", "package"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    return VSCODE_EXTENSION / "diffill.vsix"


def test_extension_passes_lint_and_unit_tests(toolchain, tmp_path):
    env = node_env(tmp_path)
    lint = npm(["run", "-s", "lint"], env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    unit = npm(["test"], env)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "# fail 0" in unit.stdout or "fail 0" in unit.stdout, unit.stdout


class CodeServer:
    """code-server with the extension installed, a private profile and one workspace folder."""

    def __init__(self, vsix: Path, home: Path, settings: dict):
        self.home = home
        self.env = node_env(home)
        self.user_data = home / "user-data"
        self.extensions = home / "extensions"
        self.workspace = home / "workspace"
        self.workspace.mkdir()
        (self.user_data / "User").mkdir(parents=True)
        editor_settings = {
            "workbench.startupEditor": "none",
            "chat.disableAIFeatures": True,
            "security.workspace.trust.enabled": False,
            "workbench.secondarySideBar.defaultVisibility": "hidden",
            "telemetry.telemetryLevel": "off",
            "workbench.tips.enabled": False,
            "extensions.ignoreRecommendations": True,
            "update.mode": "none",
            "editor.minimap.enabled": False,
            "editor.fontSize": 15,
            # Tab must go to the inline suggestion, not to a suggest widget.
            "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
            "editor.suggestOnTriggerCharacters": False,
            "diffill.trace.server": "messages",
            **settings,
        }
        (self.user_data / "User" / "settings.json").write_text(json.dumps(editor_settings, indent=2))
        common = ["--user-data-dir", str(self.user_data), "--extensions-dir", str(self.extensions)]
        installed = subprocess.run([str(CODE_SERVER), *common, "--install-extension", str(vsix)], env=self.env,
                                   capture_output=True, text=True, timeout=120)
        assert installed.returncode == 0 and "successfully installed" in installed.stdout, installed.stdout + installed.stderr
        self.port = free_port()
        self.log = open(home / "code-server.log", "w")
        self.proc = subprocess.Popen(
            [str(CODE_SERVER), "--auth", "none", "--bind-addr", f"127.0.0.1:{self.port}", "--disable-telemetry",
             "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override", *common,
             str(self.workspace)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for_port(self.port, self.proc)

    def drive(self, job: dict, timeout: float) -> dict:
        job = {"url": f"http://127.0.0.1:{self.port}/?folder={self.workspace}", **job}
        done = subprocess.run([str(NODE_DIR / "node"), str(DRIVER), json.dumps(job)], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines, f"the driver printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        return json.loads(lines[-1])

    def extension_log(self) -> str:
        logs = sorted(self.user_data.glob("logs/*/exthost*/diffill.diffill/*.log"))
        return "\n".join(path.read_text(errors="replace") for path in logs)[-6000:]

    def close(self) -> None:
        stop(self.proc)
        self.log.close()


@pytest.fixture
def code_server(vsix, tmp_path):
    servers: list[CodeServer] = []

    def start(settings: dict) -> CodeServer:
        servers.append(CodeServer(vsix, tmp_path, settings))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_ghost_text_appears_and_tab_accepts_it_into_the_file(code_server, tmp_path):
    vscode = code_server({
        "diffill.server.command": server_command(),
        # The worker is a child of this server, so nothing outlives the test.
        "diffill.serverSettings": {"workerMode": "private"},
        "diffill.model": plumbing_model(),
    })
    source = vscode.workspace / "stats.py"
    source.write_text(DOCUMENT)
    shot = tmp_path / "vscode.png"
    result = vscode.drive({"file": str(source), "line": TYPED_LINE, "type": TYPED, "screenshot": str(shot),
                           "timeoutMs": 240_000}, timeout=400)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    save_screenshot(shot, "vscode.png")

    ghost = result["ghost"]
    assert ghost, result
    # What the editor drew on the cursor's line: the typed text, then the ghost text.
    assert result["lineShown"] == TYPED + ghost, result
    # Tab put exactly that into the document, and the lines below the cursor are kept.
    saved = as_drawn(source.read_text())
    before = DOCUMENT.splitlines(keepends=True)
    prefix = "".join(before[:TYPED_LINE - 1]) + TYPED
    assert saved.startswith(prefix + ghost.rstrip()), saved
    assert saved.endswith("".join(before[TYPED_LINE:])), saved
    assert len(saved) > len(prefix) + len("".join(before[TYPED_LINE:])), saved
    # The status item showed the model loading (with its progress when a model loads: the worker
    # answers from a table here, see editor_support.PLUMBING_ANSWERS), then ready with the last
    # completion's latency.
    seen = " | ".join(result["statusSeen"])
    assert "loading the model" in seen, seen
    assert re.search(r"diffill \d+%", seen) or "fixed answers" in seen, seen
    assert re.fullmatch(r"diffill \d+ ms", result["statusText"]), result
    # The command palette's "diffill: Disable completions" turns them off.
    assert "completions disabled" in result["statusAfterDisable"], result


def test_a_server_that_cannot_start_shows_an_error_that_opens_the_log(code_server, tmp_path):
    vscode = code_server({"diffill.server.command": [str(tmp_path / "no-such-diffill"), "serve"]})
    source = vscode.workspace / "empty.py"
    source.write_text("x = 1\n")
    result = vscode.drive({"mode": "error", "file": str(source), "screenshot": str(tmp_path / "error.png"),
                           "timeoutMs": 30_000}, timeout=150)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    assert "no-such-diffill" in result["log"], result
