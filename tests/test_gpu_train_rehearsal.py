"""bench/gpu_train.sh, the embedded model's GPU recipe, rehearsed on the CPU at shrunk sizes: the corpus is
built and decontaminated here, pre-tokenized, a tiny model trained for a short budget, exported as one
archive that loads through the engine and fills a hole, and evaluated through the pipeline; what comes
back fits the device machine's limits (at most 4 files, each under 16 MB, no folders)."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVALDATA = ROOT.parent / "shared" / "evaldata"
LIMIT = 16_000_000


def _rehearse(out: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_train.sh"), str(out), "--rehearse"],
                          env={**os.environ, "PYTHON": sys.executable, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _within_limits(out: Path):
    files = sorted(out.iterdir())
    assert len(files) <= 4 and all(f.is_file() and f.stat().st_size < LIMIT for f in files), files
    return {f.name for f in files}


@pytest.mark.slow
@pytest.mark.skipif(not (EVALDATA / "humaneval-infilling").is_dir(), reason="needs ../shared/evaldata")
def test_the_rehearsal_exports_a_decontaminated_archive_that_fills_a_hole_and_its_evaluation(tmp_path):
    out = tmp_path / "out"
    p = _rehearse(out)
    assert p.returncode == 0, p.stdout[-3000:]
    assert _within_limits(out) == {"gpu_train.log", "embedded-gpu.tar.gz", "fim_eval_gpu.json", "fim_eval_gpu.md"}
    model_dir = tmp_path / "model"
    with tarfile.open(out / "embedded-gpu.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    model_dir = model_dir / "embedded"
    assert {f.name for f in model_dir.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                      "generation_config.json", "training_info.json",
                                                      "corpus_manifest.json", "decontamination.json"}
    from safetensors import safe_open

    from diffill.model.engine.checkpoint import load_model
    from diffill.model.engine.infill import Infiller
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        assert all(str(f.get_slice(k).get_dtype()) == "BF16" for k in f.keys())
    m = load_model(model_dir)
    assert m.config.noise == "mask" and m.config.prompt_format == "fim" and m.tokenizer.fim
    assert m.config.raw["diffill_context_tokens"] == 96                    # the rehearsal's 64 + 32
    r = Infiller(m).fill("def add(a, b):\n    return ", "\n", canvas_length=16, max_steps=4)
    assert isinstance(r.text, str) and 1 <= r.steps <= 4
    info = json.loads((model_dir / "training_info.json").read_text())
    assert info["params"] == m.num_parameters() and info["recipe"]["minutes"] > 0
    assert info["planned_at_step"] == 20 and info["step"] > 20 and info["tokens"] > 0
    decon = json.loads((model_dir / "decontamination.json").read_text())
    assert decon["ran"] and decon["against"] == "evaldata" and decon["eval_ngrams"] > 0
    manifest = json.loads((model_dir / "corpus_manifest.json").read_text())
    assert manifest["total_files"] == decon["corpus_files_kept"] and manifest["packages"][0]["package"] == "cpython-stdlib"
    ev = json.loads((out / "fim_eval_gpu.json").read_text())
    assert ev["provenance"]["commit"] and "bench/fim_eval.py" in ev["provenance"]["command"]
    assert ev["params"] == m.num_parameters() and ev["time_limit_s"] == 10
    tasks = ev["tasks"]
    for key, score in (("single_line", "pass@1"), ("multi_line", "pass@1"), ("santacoder_fim_py", "exact_match")):
        assert 1 <= tasks[key]["problems"] <= 2 and 0.0 <= tasks[key][score] <= 1.0, key
        assert len(tasks[key]["samples"]) == tasks[key]["problems"]
    assert tasks["block_latency"]["fills"] >= 1
    log = (out / "gpu_train.log").read_text()
    assert "decontamination against" in log and "warm-up:" in log and "== done: exit 0" in log


@pytest.mark.slow
def test_without_evaluation_data_the_rehearsal_trains_but_exports_and_evaluates_nothing(tmp_path):
    out = tmp_path / "out"
    p = _rehearse(out, DIFFILL_EVALDATA=str(tmp_path / "missing"))
    assert p.returncode == 3, p.stdout[-3000:]
    assert _within_limits(out) == {"gpu_train.log", "fim_eval_gpu.json"}
    assert json.loads((out / "fim_eval_gpu.json").read_text())["ran"] is False
    log = (out / "gpu_train.log").read_text()
    assert "decontamination NOT run" in log and "not exported" in log and "warm-up:" in log
