"""Loading checkpoints: the layout, ties, shards, and a clear error for every broken input."""
import json
import shutil

import pytest
import torch

from diffill.model import CheckpointError, build_random_checkpoint, load_model, save_checkpoint


@pytest.fixture
def ckpt(tmp_path, tiny_checkpoint):
    d = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, d)
    return d


def _logits(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 300, (1, 12), generator=g)
    canvas = torch.randint(0, 300, (1, 16), generator=g)
    with torch.no_grad():
        return m.denoise(canvas, m.encode(ids))


def test_sharded_save_round_trips_exactly(tmp_path, tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    out = save_checkpoint(m, tmp_path / "sharded", max_shard_bytes=40_000)
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    assert torch.equal(_logits(load_model(out)), _logits(m))


def test_bfloat16_load_stays_close_to_float32(tiny_checkpoint):
    a = _logits(load_model(tiny_checkpoint))
    b = _logits(load_model(tiny_checkpoint, dtype=torch.bfloat16))
    assert b.dtype == torch.float32
    assert (a - b).abs().max().item() < 0.05


def test_lm_head_is_the_embedding_when_tied(tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    assert m.lm_head is None
    h = torch.randn(1, 2, m.config.hidden_size)
    logits = m.head(h)
    expected = torch.tanh((h @ m.embed_tokens.weight.T) / 30) * 30
    assert torch.allclose(logits, expected, atol=1e-6)


def test_missing_directory_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")


def test_missing_config_says_so(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(ckpt)


def test_missing_weights_and_pickle_refused(ckpt):
    (ckpt / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, ckpt / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle checkpoints are refused"):
        load_model(ckpt)


def test_another_architecture_is_named(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "llama", ["LlamaForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="not DiffusionGemma"):
        load_model(ckpt)


def test_shape_mismatch_names_the_tensor(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["text_config"]["intermediate_size"] = 96
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"mlp\..*shape"):
        load_model(ckpt)


def test_truncated_safetensors_is_reported(ckpt):
    f = ckpt / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(ckpt)


def test_corrupt_header_is_reported(ckpt):
    f = ckpt / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[8:40] = b"\xff" * 32
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(ckpt)


def test_missing_tensor_is_listed(ckpt):
    from safetensors.torch import load_file, save_file
    t = load_file(str(ckpt / "model.safetensors"))
    del t["model.decoder.layers.0.router.proj.weight"]
    save_file(t, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="router.proj.weight"):
        load_model(ckpt)


def test_missing_tokenizer_is_reported(ckpt):
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        load_model(ckpt)


def test_generation_config_is_read(tmp_path):
    from diffill.model import GenerationSettings
    d = build_random_checkpoint(tmp_path, generation=GenerationSettings(max_denoising_steps=12, entropy_bound=0.3))
    m = load_model(d)
    assert m.generation.max_denoising_steps == 12 and m.generation.entropy_bound == 0.3


def test_weights_load_without_doubling_memory(tmp_path):
    """Peak resident memory while loading stays near the weights' size (tensors are read one at a time)."""
    import subprocess
    import sys
    d = build_random_checkpoint(tmp_path / "big", config_overrides=dict(hidden_size=512, intermediate_size=1024,
                                                                          num_experts=16, moe_intermediate_size=512,
                                                                          vocab_size=4096))
    size = (d / "model.safetensors").stat().st_size
    code = ("import resource, torch; from diffill.model import load_model; "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; m = load_model(%r); "
            "print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)" % str(d))
    base, peak = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout.split())
    grown = (peak - base) * 1024
    assert grown < 1.6 * size, (grown, size)
