"""`diffill quantize`: a tiny checkpoint quantised to fp8 and int4, loaded back by load_model,
gives logits close to the original model's."""
import json

import pytest
import torch
from safetensors import safe_open

from diffill.kernels.quant import QuantWeight
from diffill.lsp.cli import main as cli
from diffill.model import build_random_checkpoint, load_model
from diffill.model.engine.config import CheckpointError
from diffill.model.engine.quantize import quantize_checkpoint


@pytest.fixture(scope="module")
def sharded_checkpoint(tmp_path_factory):
    """Tiny model with K = 64 and 32 (two int4 groups of 32 in gate_up), written in several shards."""
    return build_random_checkpoint(tmp_path_factory.mktemp("orig"), seed=5, canvas_length=8,
                                   config_overrides={"hidden_size": 64, "moe_intermediate_size": 32},
                                   max_shard_bytes=40_000)


def logits(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(5, 300, (2, 12), generator=g)
    canvas = torch.randint(5, 300, (2, 8), generator=g)
    with torch.no_grad():
        return model.denoise(canvas, model.encode(prompt))


# Measured: fp8 0.038, int4 (group 32) 0.15 of the logits' spread; expert weights err by ~3% and ~10%.
@pytest.mark.parametrize("fmt,group,max_rel", [("fp8", 128, 0.06), ("int4", 32, 0.25)])
def test_quantised_checkpoint_loads_and_gives_close_logits(sharded_checkpoint, tmp_path, fmt, group, max_rel):
    src = sharded_checkpoint
    assert (src / "model.safetensors.index.json").is_file()
    out = tmp_path / fmt
    assert cli(["quantize", "--model", str(src), "--out", str(out), "--to", fmt, "--group-size", str(group),
                "--quiet"]) == 0

    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"] == {"quant_method": "diffill", "format": fmt, "group_size": group,
                                             "targets": ["experts"]}
    for name in ("tokenizer.json", "generation_config.json"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    key = next(k for k in index if k.endswith("layers.0.experts.gate_up_proj"))
    assert index[key + "_scale"] == index[key]
    with safe_open(str(out / index[key]), framework="pt") as f:
        want = torch.float8_e4m3fn if fmt == "fp8" else torch.uint8
        assert f.get_tensor(key).dtype == want

    original, quantised = load_model(src), load_model(out)
    experts = quantised.layers[0].experts
    assert isinstance(experts.gate_up_proj, QuantWeight) and experts.gate_up_proj.format == fmt
    a, b = logits(original), logits(quantised)
    rel = ((a - b).norm() / (a - a.mean()).norm()).item()
    assert rel < max_rel, rel
    assert rel > 0                                        # the experts really were quantised


def test_quantize_prints_progress(sharded_checkpoint, tmp_path, capsys):
    assert cli(["quantize", "--model", str(sharded_checkpoint), "--out", str(tmp_path / "q"), "--to", "fp8"]) == 0
    err = capsys.readouterr().err
    assert "[1/" in err and "expert tensors to fp8" in err


def test_quantize_refuses_what_it_cannot_do(sharded_checkpoint, tmp_path, capsys):
    assert cli(["quantize", "--model", str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--to", "fp8"]) == 1
    assert "does not exist" in capsys.readouterr().err

    done = quantize_checkpoint(sharded_checkpoint, tmp_path / "done", "int4", log=lambda m: None)
    assert cli(["quantize", "--model", str(done), "--out", str(tmp_path / "again"), "--to", "fp8"]) == 1
    assert "already quantised" in capsys.readouterr().err

    assert cli(["quantize", "--model", str(sharded_checkpoint), "--out", str(done), "--to", "fp8"]) == 1
    assert "not empty" in capsys.readouterr().err

    with pytest.raises(CheckpointError, match="unknown format"):
        quantize_checkpoint(sharded_checkpoint, tmp_path / "x", "int2")
    with pytest.raises(SystemExit):                      # argparse: invalid choice
        cli(["quantize", "--model", str(sharded_checkpoint), "--out", str(tmp_path / "y"), "--to", "int2"])


def test_single_file_checkpoint(tmp_path):
    src = build_random_checkpoint(tmp_path / "single", seed=6, canvas_length=8)
    out = quantize_checkpoint(src, tmp_path / "q", "fp8", log=lambda m: None)
    assert (out / "model.safetensors").is_file() and not (out / "model.safetensors.index.json").exists()
    assert isinstance(load_model(out).layers[1].experts.down_proj, QuantWeight)
