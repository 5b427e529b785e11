"""Training the embedded model: the objective, determinism, resuming, export in the engine's layout."""
import json
from types import SimpleNamespace

import pytest
import torch

from diffill.model.train import loop as T
from diffill.model.engine.bpe import train_tokenizer
from diffill.model.engine.checkpoint import load_model
from diffill.model.train.objective import Batch, RouterBalance, diffusion_loss, mask_canvas, noise_levels, training_loss


def test_noise_levels_are_stratified():
    g = torch.Generator().manual_seed(0)
    t = noise_levels(8, g).sort().values
    for i in range(8):
        assert i / 8 <= t[i] <= (i + 1) / 8 + 1e-3


def test_masking_rate_follows_t_and_never_leaves_a_row_clean():
    g = torch.Generator().manual_seed(0)
    canvas = torch.randint(10, 100, (4, 2000))
    noisy, masked = mask_canvas(canvas, torch.tensor([0.0, 0.25, 0.5, 0.9]), 2, g)
    assert masked[0].sum() == 1
    for row, t in zip(range(1, 4), (0.25, 0.5, 0.9)):
        assert abs(masked[row].float().mean() - t) < 0.05
    assert (noisy[masked] == 2).all() and (noisy[~masked] == canvas[~masked]).all()


def test_the_training_loss_gives_gradients_to_every_weight(fim_checkpoint):
    m = load_model(fim_checkpoint)
    for p in m.parameters():
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    batch = Batch(prompt=torch.randint(5, 300, (2, 12), generator=g), prompt_pad=torch.zeros(2, 12, dtype=torch.bool),
                  canvas=torch.randint(5, 300, (2, 16), generator=g))
    balance = RouterBalance(m)
    loss, parts = training_loss(m, batch, g, m.tokenizer.mask_id, m.tokenizer.pad_id, self_condition=True,
                                balance=balance)
    balance.close()
    loss.backward()
    assert {"diffusion", "ar", "balance"} <= set(parts)
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, missing


def test_diffusion_loss_counts_masked_positions_only():
    canvas = torch.tensor([[5, 6, 1, 0]])
    logits = torch.zeros(1, 4, 8)
    logits[0, 0, 5] = 20.0                        # right at position 0
    masked = torch.tensor([[True, False, False, False]])
    assert diffusion_loss(logits, canvas, masked, pad_id=0, pad_weight=0.1) < 1e-6
    masked = torch.tensor([[True, True, False, False]])
    assert diffusion_loss(logits, canvas, masked, 0, 0.1) == pytest.approx(torch.log(torch.tensor(8.0)).item() / 2, rel=1e-4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    import sysconfig
    from pathlib import Path
    std = Path(sysconfig.get_paths()["stdlib"])
    texts = [(std / name).read_text() for name in ("bisect.py", "heapq.py", "colorsys.py", "keyword.py", "glob.py")]
    corpus = root / "clean.jsonl"
    corpus.write_text("".join(json.dumps({"package": f"p{i % 2}", "path": f"{i}.py", "text": t, "version": "1",
                                          "license": "PSF-2.0"}) + "\n" for i, t in enumerate(texts * 30)))
    tok = train_tokenizer([t for t in texts], vocab_size=300)
    tok_file = root / "tokenizer.json"
    tok.save(str(tok_file))
    return corpus, tok_file


def _args(data, run, **kw):
    corpus, tok = data
    args = SimpleNamespace(size="tiny", corpus=corpus, tokenizer=tok, evaldata=None, run=run, export=None, steps=6, stop_at=None,
                           batch_size=2, lr=2e-3, warmup=2, decay_fraction=0.2, weight_decay=0.1, seed=3, ar_weight=0.5, pad_weight=0.1,
                           prefix_tokens=32, suffix_tokens=16, canvas_lengths=[16, 32], save_every=3, eval_every=100,
                           log_every=3, threads=None, device="cpu", bf16=True)
    args.__dict__.update(kw)
    return args


def _weights(run):
    from safetensors.torch import load_file
    return load_file(str(run / "state.safetensors"))


def test_training_is_reproducible_and_resumes_exactly(data, tmp_path):
    assert T.train(_args(data, tmp_path / "a")) == 0
    assert T.train(_args(data, tmp_path / "b", stop_at=3)) == 0
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 3
    assert T.train(_args(data, tmp_path / "b")) == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_resumed_run_with_a_new_total_records_its_schedule(data, tmp_path):
    assert T.train(_args(data, tmp_path / "c", steps=8, stop_at=2)) == 0
    assert T.train(_args(data, tmp_path / "c", steps=3)) == 0
    meta = json.loads((tmp_path / "c" / "state.json").read_text())
    assert meta["step"] == 3 and meta["steps"] == 3 and meta["decay_fraction"] == 0.2
    assert meta["schedule_changes"] == [{"at_step": 2, "steps": 3}]


def test_export_loads_as_a_mask_fim_checkpoint_with_its_corpus_manifest_under_the_size_limits(data, tmp_path):
    out = tmp_path / "model"
    assert T.train(_args(data, tmp_path / "run", steps=2, export=out)) == 0
    m = load_model(out)
    assert m.config.noise == "mask" and m.config.prompt_format == "fim" and m.tokenizer.fim
    assert m.tokenizer.mask_id is not None and m.config.canvas_length == 256
    for f in out.iterdir():
        assert f.stat().st_size < 16_000_000
    info = json.loads((out / "training_info.json").read_text())
    assert info["step"] == 2 and info["params"] == m.num_parameters()
    manifest = json.loads((out / "corpus_manifest.json").read_text())   # the provenance ships with the model
    assert manifest["total_files"] == 150 and [p["package"] for p in manifest["packages"]] == ["p0", "p1"]
    from diffill.model.engine.infill import Infiller
    r = Infiller(m).fill("def f(x):\n    return ", "\n", canvas_length=16, max_steps=4)
    assert isinstance(r.text, str) and r.steps <= 4


def test_loss_falls_when_training_on_a_small_corpus(data, tmp_path):
    args = _args(data, tmp_path / "fit", steps=40, batch_size=4, lr=3e-3, warmup=4, log_every=5, save_every=40,
                 canvas_lengths=[16])
    assert T.train(args) == 0
    hist = json.loads((tmp_path / "fit" / "state.json").read_text())["history"]
    losses = [h["diffusion"] for h in hist if "diffusion" in h]
    assert losses[0] > 5.0 and losses[-1] < 4.5        # ln(300) = 5.7 at random


def test_learning_rate_warms_up_holds_then_decays():
    lrs = [T.lr_at(s, 100, 1.0, 10, 0.2) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(lr == 1.0 for lr in lrs[10:80])
    assert lrs[99] < lrs[90] < 1.0 and lrs[99] >= 0.1
