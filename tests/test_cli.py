"""The `diffill` command line, run as a user runs it, and the package as pip installs it."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

DIFFILL = [sys.executable, "-m", "diffill.lsp.cli"]
ROOT = Path(__file__).resolve().parent.parent


def run(*args, check=True):
    p = subprocess.run(DIFFILL + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_generate_prints_json(tiny_checkpoint):
    out = json.loads(run("generate", "--model", tiny_checkpoint, "--prompt", "def f(x):", "--steps", "4",
                         "--json").stdout)
    assert set(out) == {"text", "steps", "ms"} and 1 <= out["steps"] <= 4 and out["ms"] > 0


def test_complete_fills_at_line_and_column(fim_checkpoint, tmp_path):
    f = tmp_path / "a.py"
    f.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    out = json.loads(run("complete", f"{f}:2:12", "--model", fim_checkpoint, "--steps", "4", "--json").stdout)
    assert set(out) == {"text", "replace", "steps", "ms"} and isinstance(out["text"], str)
    assert out["steps"] >= 1


@pytest.mark.parametrize("fmt", ["chat", "clamped"])
def test_complete_with_diffusiongemma_prompt_formats(tiny_checkpoint, tmp_path, fmt):
    f = tmp_path / "a.py"
    f.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    out = json.loads(run("complete", f"{f}:2:12", "--model", tiny_checkpoint, "--steps", "3", "--prompt-format",
                         fmt, "--json").stdout)
    assert out["steps"] >= 1


def test_complete_refuses_a_format_the_checkpoint_cannot_do(tiny_checkpoint, tmp_path):
    f = tmp_path / "a.py"
    f.write_text("x = \n")
    p = run("complete", f"{f}:1:5", "--model", tiny_checkpoint, "--prompt-format", "fim", check=False)
    assert p.returncode == 2 and "no FIM tokens" in p.stderr


@pytest.mark.parametrize("content,target,message", [
    (None, "missing.py:1:1", "no such file"),
    (b"\x00\x01binary\x00", "bin.py:1:1", "looks binary"),
    (b"x = 1\n", "a.py:9:1", "past the end of the file"),
    (b"x = 1\n", "a.py:1:30", "past the end of line 1"),
    (b"x = 1\n", "a.py:one:1", "must be numbers"),
])
def test_complete_rejects_bad_input_clearly(tmp_path, content, target, message):
    name = target.split(":")[0]
    if content is not None:
        (tmp_path / name).write_bytes(content)
    p = run("complete", tmp_path / target, check=False)
    assert p.returncode == 2 and message in p.stderr


def test_info_describes_the_checkpoint(tiny_checkpoint):
    from diffill.model import load_model
    d = json.loads(run("info", "--model", tiny_checkpoint, "--json").stdout)
    assert d["parameters"] == load_model(tiny_checkpoint).num_parameters()
    assert d["layers"] == 2 and d["experts"] == 4 and d["experts_per_token"] == 2
    assert d["sliding_layers"] == 1 and d["full_layers"] == 1 and d["prompt_format"] == "chat"


def test_demo_prints_the_example_with_the_shown_middle_in_the_hole_and_says_what_the_model_wrote():
    from diffill.lsp.cli.complete import offset_at
    from diffill.lsp.cli.demo import EXAMPLE, HOLE

    answer = json.loads(run("demo", "--json").stdout)  # the embedded model, greedy: deterministic
    assert answer["raw"], "the embedded model wrote nothing in the hole"
    p = run("demo")
    text = EXAMPLE.read_text()
    offset = offset_at(text, *HOLE)
    printed = p.stdout.split("-" * 60 + "\n")[1]
    assert printed == text[:offset] + answer["text"] + text[offset:]
    assert f"raw text {answer['raw']!r}" in p.stdout and f"shown: {answer['text']!r}" in p.stdout


def test_bad_model_is_one_clear_message(tmp_path):
    p = run("generate", "--model", tmp_path / "none", "--prompt", "x", check=False)
    assert p.returncode == 1 and "cannot load the model" in p.stderr and "Traceback" not in p.stderr


def test_help_lists_the_commands():
    p = run(check=False)
    for cmd in ("complete", "generate", "info", "serve", "demo"):
        assert cmd in p.stdout


def test_the_cli_and_command_options_do_not_import_torch():
    code = ("import sys, diffill.lsp.cli, diffill.lsp.cli.complete, diffill.lsp.cli.generate, "
            "diffill.model.engine.default; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def tracked_package_files() -> set[str]:
    """Every tracked .py file of the three source folders, named as the wheel names it."""
    out = subprocess.run(["git", "ls-files", "lsp", "model", "kernels"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    return {f"diffill/{name}" for name in out if name.endswith(".py")}


@pytest.mark.slow
def test_wheel_installs_only_the_diffill_namespace_with_every_source_file(tmp_path):
    """No generic top-level `lsp`, `model` or `kernels` lands in site-packages; every tracked module and
    the example ship, and nothing that is not in the checkout (a stale build folder) does."""
    clone = tmp_path / "clone"  # the tracked files only, as a fresh clone has them (no build folder)
    for name in subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.splitlines():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(clone)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(tmp_path.glob("diffill-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "diffill" in tops and not tops & {"lsp", "model", "kernels"}
    shipped = {n for n in names if n.endswith(".py")}
    assert tracked_package_files() - shipped == set()  # a package missing from pyproject's list
    assert shipped - tracked_package_files() == set()  # a file that is not in the checkout
    assert "diffill/lsp/examples/fizzbuzz.py" in names
    assert any(n.startswith("diffill/model/embedded/") and n.endswith(".safetensors") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "diffill = diffill.lsp.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
