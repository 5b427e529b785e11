"""Config tables: only measured ones exist; without one the launcher takes the default and says so
once; with one it picks the nearest token count; the tuning and benchmark scripts run end to end
(in the interpreter, at toy shapes)."""
import json
import logging
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


def test_no_table_is_committed_that_was_not_measured():
    for path in (ROOT / "kernels" / "configs").glob("*.json"):   # written by tune.py on a GPU
        meta = json.loads(path.read_text())["_meta"]
        assert meta["device"] in path.name and meta["date"] and meta["command"].startswith("python -m diffill.kernels.tune")


def test_without_a_table_the_launcher_uses_the_default_and_logs_it_once(config_dir, caplog):
    from diffill.kernels import moe_reference
    g = torch.Generator().manual_seed(0)
    E, H, I, M, K = 4, 64, 32, 8, 2
    x = torch.randn(M, H, generator=g)
    gate_up, down = torch.randn(E, 2 * I, H, generator=g) * 0.1, torch.randn(E, H, I, generator=g) * 0.1
    ids = torch.rand(M, E, generator=g).topk(K, dim=1).indices.to(torch.int32)
    weights = torch.softmax(torch.randn(M, K, generator=g), dim=1)
    with caplog.at_level(logging.WARNING, logger=fm.__name__):
        outs = [fm.fused_moe(x, gate_up, down, weights, ids) for _ in range(2)]
    said = [r.getMessage() for r in caplog.records if r.name == fm.__name__]
    assert len(said) == 1 and said[0].startswith("Using default MoE config. Performance might be sub-optimal!")
    assert fm.config_file_name(E, H, I, fm.device_name(x.device), "bf16") in said[0]
    for out in outs:
        torch.testing.assert_close(out, moe_reference.fused_moe(x, gate_up, down, weights, ids), rtol=1e-5, atol=1e-5)


def test_launcher_takes_the_nearest_token_count(config_dir):
    entries = {m: {"BLOCK_M": bm, "gemm1": {"BLOCK_N": 64, "BLOCK_K": 64}, "gemm2": {"BLOCK_N": 64, "BLOCK_K": 64}}
               for m, bm in (("1", 16), ("64", 32), ("256", 64))}
    (config_dir / fm.config_file_name(8, 64, 32, "TEST_GPU", "fp8")).write_text(
        json.dumps({**entries, "_meta": {"device": "TEST_GPU", "note": "a test table"}}))
    pick = lambda M: fm.get_config(M, 8, 64, 32, "fp8", "TEST_GPU")["BLOCK_M"]  # noqa: E731
    assert [pick(M) for M in (1, 20, 40, 100, 160, 161, 5000)] == [16, 16, 32, 32, 32, 64, 64]
    assert fm.get_config(100, 8, 64, 32, "int4", "TEST_GPU") == fm.default_config(100, "int4")


def test_tune_writes_a_table_the_launcher_reads(config_dir):
    written = tune.tune(["bf16", "int4"], [8], 4, 64, 32, 2, "toy", DEVICE, config_dir, log=lambda m: None)
    device = fm.device_name(DEVICE)
    assert [p.name for p in written] == [fm.config_file_name(4, 64, 32, device, f) for f in ("bf16", "int4")]
    for path, fmt in zip(written, ("bf16", "int4")):
        table = json.loads(path.read_text())
        assert table["_meta"]["device"] == device and table["_meta"]["date"]
        check_entry(table["8"], fmt)
        assert fm.get_config(8, 4, 64, 32, fmt, device) == table["8"]


def test_tune_without_a_gpu_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    assert tune.main(["--dtype", "bf16"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the benchmark runs at full size: run it by hand")
def test_benchmark_script_records_rows_and_a_plot(tmp_path):
    bench = runpy.run_path(str(ROOT / "bench" / "moe.py"))
    assert bench["main"](["--device", "cpu", "--batch-sizes", "4", "--dtype", "bf16", "fp8"]) == 2   # not a result
    assert bench["main"](["--device", "cpu", "--batch-sizes", "4", "--dtype", "bf16", "fp8",
                          "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "moe.json").read_text())
    assert data["provenance"]["commit"] and data["provenance"]["date"] and data["provenance"]["machine"]
    assert [(r["dtype"], r["M"]) for r in data["rows"]] == [("bf16", 4), ("fp8", 4)]
    assert all(REQUIRED_ROW_KEYS <= set(r) for r in data["rows"])
    assert "| bf16 | 4 |" in (tmp_path / "moe.md").read_text()
    xml.dom.minidom.parse(str(tmp_path / "moe.svg"))


def test_hbm_peaks_come_from_one_table():
    hbm = runpy.run_path(str(ROOT / "bench" / "hbm.py"))
    peak = hbm["peak_tbs"]
    assert peak("NVIDIA H100 80GB HBM3") == 3.35 and peak("NVIDIA_H200") == 4.8
    assert peak("NVIDIA H100 PCIe") == 2.0 and peak("NVIDIA H100 NVL") == 3.9
    assert peak("NVIDIA GH200 480GB") is None and peak("cpu") is None
