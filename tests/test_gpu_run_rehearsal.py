"""bench/gpu_run.sh, the one prepared GPU run, rehearsed on the CPU at shrunk shapes: every step runs
and succeeds, the fills go through a real worker with the self-test's verdicts, and what comes back
fits the device machine's limits (at most 8 files, each under 16 MB, no folders)."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_run_rehearsed_on_the_cpu_runs_every_step_and_fits_the_limits(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    p = subprocess.run(["bash", str(ROOT / "bench" / "gpu_run.sh"), str(out), "--rehearse"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.is_file() and f.stat().st_size < 16 << 20 for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["install", "gpu-tests", "gpu-fill", "moe", "tune", "engine-gpu"]
    assert summary["ok"], summary["steps"]
    with tarfile.open(out / "results.tar") as tar:
        names = {Path(n).name for n in tar.getnames()}
        assert {"gpu_fill.json", "gpu_fill.md", "moe.json", "engine_gpu.json"} <= names
        fill = json.load(tar.extractfile("./gpu_fill.json"))
    assert fill["provenance"]["commit"] and "bench/gpu_fill.py" in fill["provenance"]["command"]
    runs = {r["run"]: r for r in fill["runs"]}
    assert set(runs) == {"bf16", "bf16 reference", "fp8", "int4"}
    for name, r in runs.items():
        assert r["state"] == "ready" and r["fills"] == 30 and r["fill_ms_p50"] > 0, (name, r)
    assert runs["bf16"]["fast_path"]["device_sampler"].startswith("ok")
    assert runs["bf16 reference"]["fast_path"] is None  # --fast-path off: nothing checked, the reference runs
    with tarfile.open(out / "kernel_configs.tar") as tar:
        tables = [n for n in tar.getnames() if n.endswith(".json")]
        assert tables and "_meta" in json.load(tar.extractfile(tables[0]))
    assert "gpu-tests" in (out / "gpu_tests.txt").read_text()
