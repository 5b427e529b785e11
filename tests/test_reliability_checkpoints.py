"""Broken checkpoints are refused with a CheckpointError that names what is wrong, never a traceback
and never a silent load: nonsense sizes, a config.json that is not an object, names the file system
cannot hold, weights stored as integers or booleans, NaN weights."""
import json
import shutil
import subprocess
import sys

import pytest
import torch

from diffill.model import CheckpointError, load_model

FILE = "def add(a, b):\n    return \n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from diffill.model import build_random_checkpoint
    return build_random_checkpoint(tmp_path_factory.mktemp("base"), seed=1, canvas_length=16)


def _copy(base, tmp_path):
    d = tmp_path / "ck"
    shutil.copytree(base, d)
    return d


def _config(d, change):
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(change(cfg)))


def _text(key, value):
    def change(cfg):
        cfg["text_config"][key] = value
        return cfg
    return change


CONFIGS = {
    "vocab_size -1": (_text("vocab_size", -1), "vocab_size"),
    "sliding_window -5": (_text("sliding_window", -5), "sliding_window"),
    "hidden_size 0": (_text("hidden_size", 0), "hidden_size"),
    "hidden_size 64.5": (_text("hidden_size", 64.5), "hidden_size"),
    "hidden_size true": (_text("hidden_size", True), "hidden_size"),
    "num_attention_heads 0": (_text("num_attention_heads", 0), "num_attention_heads"),
    "top_k over experts": (_text("top_k_experts", 99), "top_k_experts"),
    "rms_norm_eps -1": (_text("rms_norm_eps", -1), "rms_norm_eps"),
    "num_experts 1e400": (_text("num_experts", float("inf")), "num_experts"),
    "canvas_length -3": (lambda cfg: {**cfg, "canvas_length": -3}, "canvas_length"),
    "config is a list": (lambda cfg: [cfg], "JSON object"),
    "config is a string": (lambda cfg: "diffusion_gemma", "JSON object"),
    "text_config is a list": (lambda cfg: {**cfg, "text_config": [1]}, "text_config"),
    "rope_theta 0": (lambda cfg: {**cfg, "text_config": {**cfg["text_config"], "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 0},
        "full_attention": {"rope_type": "default", "rope_theta": 10000.0}}}}, "rope_theta"),
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_a_config_that_makes_no_sense_is_refused_by_name(base, tmp_path, case):
    change, named = CONFIGS[case]
    d = _copy(base, tmp_path)
    _config(d, change)
    with pytest.raises(CheckpointError, match=named):
        load_model(d)


@pytest.mark.parametrize("kind", ["int8", "bool", "nan", "inf", "some nan"])
def test_weights_that_are_not_finite_floats_are_refused_by_tensor(base, tmp_path, kind):
    from safetensors.torch import load_file, save_file
    d = _copy(base, tmp_path)
    tensors = load_file(str(d / "model.safetensors"))
    key = "model.decoder.embed_tokens.weight"
    t = tensors[key]
    tensors[key] = {"int8": lambda: t.to(torch.int8), "bool": lambda: t.to(torch.bool),
                    "nan": lambda: torch.full_like(t, float("nan")), "inf": lambda: torch.full_like(t, float("inf")),
                    "some nan": lambda: t.masked_fill(torch.rand_like(t) < 0.05, float("nan"))}[kind]()
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match="embed_tokens"):
        load_model(d)


@pytest.mark.parametrize("name", ["a" * 300, "org/" + "a" * 300, "", "   "])
def test_a_name_that_is_no_folder_and_no_hub_id_is_refused(name):
    with pytest.raises(CheckpointError):
        load_model(name)


def test_a_hub_id_missing_from_the_local_cache_names_the_setting_that_fetches_it(tmp_path, monkeypatch):
    """Downloads off (the default): the message says what to set, not the hub library's internals."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        load_model("google/diffusiongemma-26B-A4B-it")
    message = str(err.value)
    assert "not in the local hub cache" in message and "allowDownload" in message
    assert "local_files_only" not in message and "Traceback" not in message


def test_generation_config_that_is_not_an_object_or_not_numbers_is_refused(base, tmp_path):
    d = _copy(base, tmp_path)
    (d / "generation_config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        load_model(d)
    (d / "generation_config.json").write_text('{"max_denoising_steps": "many"}')
    with pytest.raises(CheckpointError, match="max_denoising_steps"):
        load_model(d)


@pytest.mark.parametrize("case", ["vocab_size -1", "config is a list", "hub id of 300 characters"])
def test_diffill_complete_prints_a_clear_error_not_a_traceback(base, tmp_path, case):
    if case == "hub id of 300 characters":
        model = "a" * 300
    else:
        d = _copy(base, tmp_path)
        _config(d, CONFIGS[case][0])
        model = str(d)
    source = tmp_path / "add.py"
    source.write_text(FILE)
    out = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "complete", f"{source}:2:12", "--model", model],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "cannot load the model" in out.stderr, out.stderr
