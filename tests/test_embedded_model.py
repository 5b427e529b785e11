"""The model shipped inside the package: its layout and limits, that it is the default, and that its
weights are trained (they predict held-out code far better than chance)."""
import json
import math
import subprocess
import sys

import torch

from diffill.model.engine.checkpoint import load_model
from diffill.model.engine.default import EMBEDDED_DIR, default_model_path

# Held-out code written for this test (not in the training corpus, not from any benchmark).
SNIPPETS = [
    "def mean(values):\n    if not values:\n        raise ValueError(\"mean of nothing\")\n"
    "    return sum(values) / len(values)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n",
    "import os\n\n\ndef list_python_files(root):\n    found = []\n    for folder, _, names in os.walk(root):\n"
    "        for name in names:\n            if name.endswith(\".py\"):\n"
    "                found.append(os.path.join(folder, name))\n    return sorted(found)\n",
]


def test_the_package_ships_a_mask_fim_checkpoint_in_the_hf_layout_under_the_size_limits():
    files = {f.name: f for f in EMBEDDED_DIR.iterdir()}
    for name in ("config.json", "generation_config.json", "tokenizer.json", "training_info.json"):
        assert name in files, name
    weights = [f for n, f in files.items() if n.endswith(".safetensors")]
    assert weights and all(f.stat().st_size < 16_000_000 for f in weights)
    shipped = sum(f.stat().st_size for f in files.values()
                  if f.suffix in (".json", ".safetensors") and f.name not in ("corpus_manifest.json",
                                                                               "decontamination.json"))
    assert shipped <= 40_000_000
    config = json.loads(files["config.json"].read_text())
    assert config["diffill_noise"] == "mask" and config["diffill_prompt_format"] == "fim"
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in files)


def test_the_default_model_is_the_embedded_one():
    found = default_model_path()
    assert found.path == EMBEDDED_DIR and not found.random


def _masked_loss(model, text: str, seed: int) -> float:
    """Cross-entropy (nats) of the model on a middle of `text` with half its tokens masked, given the
    lines before and after it as FIM context."""
    tok = model.tokenizer
    lines = text.splitlines(keepends=True)
    prefix, middle, suffix = "".join(lines[:2]), "".join(lines[2:-1]), lines[-1]
    p, s, m = tok.fim_ids
    cache = model.encode(torch.tensor([[p] + tok.encode(prefix) + [s] + tok.encode(suffix) + [m]]))
    target = torch.tensor(tok.encode(middle) + [tok.eos_ids[0]])
    g = torch.Generator().manual_seed(seed)
    masked = torch.rand(len(target), generator=g) < 0.5
    masked[0] = True
    canvas = torch.where(masked, torch.tensor(tok.mask_id), target)[None]
    logits = model.denoise(canvas, cache, None)[0].float()
    return float(torch.nn.functional.cross_entropy(logits[masked], target[masked]))


@torch.inference_mode()
def test_the_embedded_weights_predict_held_out_code_far_better_than_chance():
    model = load_model(EMBEDDED_DIR)
    losses = [_masked_loss(model, text, seed) for text in SNIPPETS for seed in range(3)]
    chance = math.log(model.config.vocab_size)
    # random weights sit above chance (about 10.5 nats here); a trained model far below it
    assert sum(losses) / len(losses) < 0.75 * chance, losses


def test_demo_uses_the_embedded_model_without_a_random_weight_warning():
    r = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "demo"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "random-weight" not in r.stdout + r.stderr
    assert "model/embedded" in r.stdout.replace("\\", "/") and "for i in range" in r.stdout
