"""Config tables: the committed ones are well formed, the launcher picks the nearest token count,
and the tuning and benchmark scripts run end to end (in the interpreter, at toy shapes)."""
import json
import os
import runpy
import xml.dom.minidom
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from diffill.kernels import fused_moe_triton as fm  # noqa: E402
from diffill.kernels import tune  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
REQUIRED_ROW_KEYS = {"device", "dtype", "M", "ms", "gbps", "hbm_share", "grouped_mm_ms", "eager_ms"}


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFILL_MOE_CONFIG_DIR", str(tmp_path))
    fm.load_config_table.cache_clear()
    yield tmp_path
    fm.load_config_table.cache_clear()


def check_entry(entry, fmt):
    assert entry["BLOCK_M"] in (16, 32, 64, 128)
    for gemm in ("gemm1", "gemm2"):
        cfg = entry[gemm]
        assert cfg["BLOCK_N"] in (16, 32, 64, 128, 256) and cfg["BLOCK_K"] in (16, 32, 64, 128, 256)
        assert fmt != "int4" or cfg["BLOCK_K"] >= 32           # int4 dots run over BLOCK_K / 2 >= 16


def test_committed_tables_cover_h100_and_h200_in_every_format():
    files = sorted((ROOT / "kernels" / "configs").glob("*.json"))
    names = {p.name for p in files}
    for device in ("NVIDIA_H100_80GB_HBM3", "NVIDIA_H200"):
        for fmt in ("bf16", "fp8", "int4"):
            assert fm.config_file_name(128, 2816, 704, device, fmt) in names
    for path in files:
        table = json.loads(path.read_text())
        meta = table.pop("_meta")
        assert isinstance(meta["tuned"], bool)
        if not meta["tuned"]:
            assert "untuned" in meta["note"]
        fmt = path.stem.rsplit("dtype=", 1)[1]
        assert {int(m) for m in table} >= {1, 256, 4096}
        for entry in table.values():
            check_entry(entry, fmt)


def test_launcher_takes_the_nearest_token_count(config_dir):
    entries = {m: {"BLOCK_M": bm, "gemm1": {"BLOCK_N": 64, "BLOCK_K": 64}, "gemm2": {"BLOCK_N": 64, "BLOCK_K": 64}}
               for m, bm in (("1", 16), ("64", 32), ("256", 64))}
    (config_dir / fm.config_file_name(8, 64, 32, "TEST_GPU", "fp8")).write_text(
        json.dumps({**entries, "_meta": {"tuned": False, "note": "untuned test table"}}))
    pick = lambda M: fm.get_config(M, 8, 64, 32, "fp8", "TEST_GPU")["BLOCK_M"]  # noqa: E731
    assert [pick(M) for M in (1, 20, 40, 100, 160, 161, 5000)] == [16, 16, 32, 32, 32, 64, 64]
    assert fm.get_config(100, 8, 64, 32, "int4", "TEST_GPU") == fm.default_config(100, "int4")


def test_tune_writes_a_table_the_launcher_reads(config_dir):
    written = tune.tune(["bf16", "int4"], [8], 4, 64, 32, 2, "toy", DEVICE, config_dir, log=lambda m: None)
    device = fm.device_name(DEVICE)
    assert [p.name for p in written] == [fm.config_file_name(4, 64, 32, device, f) for f in ("bf16", "int4")]
    for path, fmt in zip(written, ("bf16", "int4")):
        table = json.loads(path.read_text())
        assert table["_meta"]["tuned"] is True and table["_meta"]["device"] == device
        check_entry(table["8"], fmt)
        assert fm.get_config(8, 4, 64, 32, fmt, device) == table["8"]


def test_tune_without_a_gpu_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert tune.main(["--dtype", "bf16"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the benchmark runs at full size: run it by hand")
def test_benchmark_script_writes_rows_and_a_plot(tmp_path):
    bench = runpy.run_path(str(ROOT / "bench" / "moe.py"))
    assert bench["main"](["--device", "cpu", "--batch-sizes", "4", "--dtype", "bf16", "fp8",
                          "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "moe.json").read_text())
    assert [(r["dtype"], r["M"]) for r in rows] == [("bf16", 4), ("fp8", 4)]
    assert all(REQUIRED_ROW_KEYS <= set(r) and r["date"] and r["command"] for r in rows)
    xml.dom.minidom.parse(str(tmp_path / "moe.svg"))
    assert bench["hbm_peak"]("NVIDIA H100 80GB HBM3") == 3350.0 and bench["hbm_peak"]("NVIDIA H200") == 4800.0
