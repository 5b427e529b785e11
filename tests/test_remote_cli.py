"""`diffill complete --backend remote`: the pipeline with the counterpart behind it, without torch."""
import json
import subprocess
import sys

from vllm_counterpart import Behaviour, Counterpart

SOURCE = "def total(values):\n    return \n"
CODE = """import sys
from diffill.lsp.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""


def test_complete_with_the_remote_backend_prints_the_trimmed_middle(tmp_path):
    path = tmp_path / "a.py"
    path.write_text(SOURCE)
    with Counterpart(Behaviour(answers={"    return ": "sum(values)\n\nprint('x')"})) as cp:
        proc = subprocess.run([sys.executable, "-c", CODE, "complete", f"{path}:2:12", "--backend", "remote",
                               "--remote-url", cp.url, "--json", "--explain"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["text"] == "sum(values)" and out["backend"].startswith("remote 127.0.0.1")
        assert "backend: remote" in proc.stderr
        settings = json.dumps({"backend": "remote", "remote": {"url": cp.url, "stream": False}})
        proc = subprocess.run([sys.executable, "-c", CODE, "complete", f"{path}:2:12", "--settings", settings],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == "sum(values)", proc.stderr
        assert cp.app.completions()[-1].body["stream"] is False


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path):
    path = tmp_path / "a.py"
    path.write_text(SOURCE)
    proc = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "complete", f"{path}:2:12", "--backend", "remote",
                           "--remote-url", "http://127.0.0.1:9/v1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot reach 127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
