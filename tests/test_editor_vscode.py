"""The VS Code extension: lint and unit tests, and end to end in real VS Code (code-server in
headless Chromium, driven by playwright-core) against the real `diffill serve`."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from editor_support import (ARTIFACTS, CODE_SERVER, NODE_DIR, ROOT, VSCODE_EXTENSION, free_port, missing, node_env,
                            plumbing_model, save_screenshot, server_command, stop, wait_for_port)

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
    """The extension packaged from the current source by the documented command, as a user installs it."""
    env = node_env(tmp_path_factory.mktemp("npm-home"))
    done = subprocess.run([str(ROOT / ".ci" / "build-vsix")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    built = Path(done.stdout.strip().splitlines()[-1])
    assert built == VSCODE_EXTENSION / "diffill.vsix" and built.stat().st_size > 0, done.stdout
    return built


def artifact(source: Path, name: str) -> Path:
    """A screenshot kept with the others in build/editor-tests (only the README's pictures go to docs/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(source, ARTIFACTS / name))


def without_diffill_on_path(env: dict[str, str]) -> dict[str, str]:
    """The environment of a user who never put diffill on PATH: every PATH entry holding one is dropped."""
    keep = [d for d in env["PATH"].split(os.pathsep) if d and not os.access(os.path.join(d, "diffill"), os.X_OK)]
    env["PATH"] = os.pathsep.join(keep)
    assert shutil.which("diffill", path=env["PATH"]) is None
    return env


def real_model(env: dict[str, str]) -> dict[str, str]:
    """The worker runs the model it is given, not the editor tests' answer table."""
    env.pop("DIFFILL_WORKER_FIXED_ANSWERS", None)
    return env


def test_extension_passes_lint_and_unit_tests(toolchain, tmp_path):
    env = node_env(tmp_path)
    lint = npm(["run", "-s", "lint"], env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    unit = npm(["test"], env)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "# fail 0" in unit.stdout or "fail 0" in unit.stdout, unit.stdout


class CodeServer:
    """code-server with the extension installed, a private profile and one workspace folder."""

    def __init__(self, vsix: Path, home: Path, settings: dict, env=None, trusted: bool = True):
        self.home = home
        self.env = node_env(home)
        if env is not None:
            self.env = env(self.env)
        self.user_data = home / "user-data"
        self.extensions = home / "extensions"
        self.workspace = home / "workspace"
        self.workspace.mkdir()
        (self.user_data / "User").mkdir(parents=True)
        editor_settings = {
            "workbench.startupEditor": "none",
            "chat.disableAIFeatures": True,
            "security.workspace.trust.enabled": not trusted,
            # an untrusted folder opens in Restricted Mode without the trust dialog
            "security.workspace.trust.startupPrompt": "never",
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
             "--disable-update-check", *(["--disable-workspace-trust"] if trusted else []),
             "--disable-getting-started-override", *common, str(self.workspace)],
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

    def start(settings: dict, **options) -> CodeServer:
        servers.append(CodeServer(vsix, tmp_path, settings, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_the_vsix_from_build_vsix_installs_into_code_server_with_the_remote_settings_in_its_ui(vsix, tmp_path):
    # What the settings UI shows comes from the packaged manifest: every setting has a description,
    # the remote backend's among them, and the download and niceness settings are machine-scoped.
    import zipfile
    with zipfile.ZipFile(vsix) as packed:
        manifest = json.loads(packed.read("extension/package.json"))
        names = packed.namelist()
    assert "extension/out/src/extension.js" in names and not any(n.endswith(".ts") for n in names)
    properties = manifest["contributes"]["configuration"]["properties"]
    for key in ("diffill.backend", "diffill.remote.url", "diffill.remote.model", "diffill.remote.endpoint",
                "diffill.remote.apiKeyEnv", "diffill.remote.caBundle", "diffill.remote.timeoutMs",
                "diffill.remote.allowInsecureHttp", "diffill.remote.insecureSkipTlsVerify",
                "diffill.allowDownload", "diffill.workerNice"):
        assert properties[key].get("description") or properties[key].get("markdownDescription"), key
    assert properties["diffill.allowDownload"]["scope"] == "machine"
    assert properties["diffill.workerNice"]["scope"] == "machine"
    assert manifest["capabilities"]["untrustedWorkspaces"]["supported"] == "limited"
    # and code-server installs it from that file
    env = node_env(tmp_path)
    common = ["--user-data-dir", str(tmp_path / "user-data"), "--extensions-dir", str(tmp_path / "extensions")]
    done = subprocess.run([str(CODE_SERVER), *common, "--install-extension", str(vsix)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "successfully installed" in done.stdout, done.stdout + done.stderr
    listed = subprocess.run([str(CODE_SERVER), *common, "--list-extensions", "--show-versions"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert f"diffill.diffill@{manifest['version']}" in listed.stdout, listed.stdout + listed.stderr


def local_bin_install(env: dict[str, str]) -> dict[str, str]:
    """The README's "Install for your editor": diffill in ~/.local/bin (here the link to the checkout's
    .venv/bin/diffill that the README gives for a Python that refuses `pip install --user`), not on PATH."""
    env = without_diffill_on_path(env)
    local_bin = Path(env["HOME"]) / ".local" / "bin"
    local_bin.mkdir(parents=True)
    (local_bin / "diffill").symlink_to(Path(server_command()[0]))
    return env


def test_a_fresh_user_setup_finds_diffill_in_local_bin_shows_ghost_text_and_the_status_menu(code_server, tmp_path):
    # Only what the README tells a new user: diffill installed to ~/.local/bin, no diffill.server.command,
    # no model. The worker is a child of this server, so nothing outlives the test.
    vscode = code_server({"diffill.serverSettings": {"workerMode": "private"}}, env=local_bin_install)
    assert "diffill.server.command" not in json.loads((vscode.user_data / "User" / "settings.json").read_text())
    source = vscode.workspace / "stats.py"
    source.write_text(DOCUMENT)
    shot, menu_shot = tmp_path / "vscode-ghost-text.png", tmp_path / "vscode-menu.png"
    result = vscode.drive({"file": str(source), "line": TYPED_LINE, "type": TYPED, "screenshot": str(shot),
                           "menuScreenshot": str(menu_shot), "timeoutMs": 240_000}, timeout=400)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    artifact(shot, "vscode-ghost-text.png")
    artifact(menu_shot, "vscode-menu.png")
    # The server that ran is the one in ~/.local/bin.
    assert f"starting {vscode.env['HOME']}/.local/bin/diffill serve (found through ~/.local/bin)" in vscode.extension_log()

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
    # The status item showed the model loading (the worker answers from a table here, see
    # editor_support.PLUMBING_ANSWERS), then ready with the last completion's latency.
    seen = " | ".join(result["statusSeen"])
    assert "loading the model" in seen or "starting the server" in seen, seen
    assert re.search(r"diffill \d+%", seen) or "fixed answers" in seen, seen
    assert re.fullmatch(r"diffill \d+ ms", result["statusText"]), result
    # A click on the status item opens the menu and changes nothing by itself ...
    for label in ("Disable completions", "Restart server", "Show log", "Show model and status", "Open settings"):
        assert any(label in item for item in result["menu"]), result["menu"]
    assert "completions disabled" not in result["statusAfterClick"], result
    # ... and its "Disable completions" turns them off.
    assert "completions disabled" in result["statusAfterDisable"], result


def test_the_embedded_model_answers_in_vscode_and_the_status_says_whether_a_completion_was_shown(code_server, tmp_path):
    # The README's picture: the shipped model, no answer table. Its fills on unseen code are mostly
    # refused by the gates, so what it shows is either ghost text or the status saying none was shown.
    vscode = code_server({"diffill.server.command": server_command(),
                          "diffill.serverSettings": {"workerMode": "private"}}, env=real_model)
    source = vscode.workspace / "stats.py"
    source.write_text(DOCUMENT)
    shot = tmp_path / "vscode.png"
    result = vscode.drive({"mode": "answer", "file": str(source), "line": TYPED_LINE, "type": TYPED,
                           "screenshot": str(shot), "timeoutMs": 240_000}, timeout=400)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    save_screenshot(shot, "vscode.png")
    assert re.match(r"diffill \d+ ms", result["statusText"]), result
    if result["ghost"]:
        assert "no completion shown" not in result["statusText"], result
    else:
        assert re.fullmatch(r"diffill \d+ ms \(no completion shown\)(, slow: .+)?", result["statusText"]), result
        assert "gates refused" in result["statusLabel"], result
    # the model that answered is the embedded one, loaded for real
    assert "embedded" in " | ".join(result["statusSeen"]), result["statusSeen"]


def test_no_diffill_found_says_which_setting_to_set_with_an_example(code_server, tmp_path):
    # A new user who has not installed diffill: nothing on PATH, nothing in ~/.local/bin.
    vscode = code_server({}, env=without_diffill_on_path)
    source = vscode.workspace / "empty.py"
    source.write_text("x = 1\n")
    shot = tmp_path / "vscode-not-found.png"
    result = vscode.drive({"mode": "error", "file": str(source), "screenshot": str(shot),
                           "logPattern": r"Looked\sfor", "timeoutMs": 60_000}, timeout=150)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    artifact(shot, "vscode-not-found.png")
    messages = [m for m in result["notifications"] if "diffill" in m]
    assert len(messages) == 1, result["notifications"]
    assert "the diffill command was not found on PATH, in ~/.local/bin" in messages[0], messages
    assert 'set diffill.server.command, e.g. ["/path/to/diffill/.venv/bin/diffill", "serve"]' in messages[0], messages
    assert "ENOENT" not in messages[0] and "ENOENT" not in result["statusLabel"], result
    assert "diffill.server.command" in result["statusLabel"], result
    # the menu after an error starts with the log, which lists where it looked
    assert "Show log" in result["menu"][0], result["menu"]
    assert "Looked for" in result["log"], result["log"]
    assert f"{vscode.env['HOME']}/.local/bin/diffill, {vscode.workspace}/.venv/bin/diffill" in vscode.extension_log()


def test_restricted_mode_shows_a_status_item_that_says_why(code_server, tmp_path):
    # The user's own settings start the server; the folder is not trusted.
    vscode = code_server({"diffill.server.command": server_command(),
                          "diffill.serverSettings": {"workerMode": "private"}}, trusted=False)
    source = vscode.workspace / "stats.py"
    source.write_text(DOCUMENT)
    shot = tmp_path / "vscode-restricted.png"
    result = vscode.drive({"mode": "restricted", "file": str(source), "screenshot": str(shot),
                           "timeoutMs": 180_000}, timeout=300)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    artifact(shot, "vscode-restricted.png")
    assert result["statusText"].startswith("diffill restricted"), result
    assert "Restricted Mode: this folder is not trusted" in result["statusLabel"], result
    assert "Trust the folder" in result["statusLabel"], result
    assert any("Manage workspace trust" in item for item in result["menu"]), result["menu"]


def test_a_wrong_model_path_gives_one_message_and_the_status_shows_the_reason(code_server, tmp_path):
    missing_model = tmp_path / "no-such-model"
    vscode = code_server({"diffill.server.command": server_command(), "diffill.model": str(missing_model),
                          "diffill.serverSettings": {"workerMode": "private"}}, env=real_model)
    source = vscode.workspace / "empty.py"
    source.write_text("x = 1\n")
    shot = tmp_path / "vscode-wrong-model.png"
    result = vscode.drive({"mode": "error", "file": str(source), "screenshot": str(shot),
                           "logPattern": "no-such-model", "timeoutMs": 120_000}, timeout=250)
    assert result["ok"], f"{result}\n--- extension log ---\n{vscode.extension_log()}"
    artifact(shot, "vscode-wrong-model.png")
    messages = [m for m in result["notifications"] if "diffill" in m or "no-such-model" in m]
    assert len(messages) == 1, result["notifications"]
    assert str(missing_model) in messages[0], messages
    # the status item says why, not just "error"
    assert str(missing_model) in result["statusLabel"], result
    assert str(missing_model) in result["log"], result
