"""Training for a wall-clock budget: the total set from the warm-up's rate, the shared training step."""
import json
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tokenizers import Tokenizer

from diffill.model.train import pretokenized as PT
from diffill.model.train.budget import SAFETY, planned_total, train_for
from diffill.model.train.corpus import read_text
from diffill.model.train.device_batches import DeviceBatches
from diffill.model.train.fim_data import FimExamples
from diffill.model.train.loop import make_optimizer, new_model

TOKENIZER = Path(__file__).resolve().parent.parent / "model" / "embedded" / "tokenizer.json"
STDLIB = Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    path = tmp_path_factory.mktemp("budget") / "clean.jsonl"
    path.write_text("".join(json.dumps({"package": "p", "path": n, "text": read_text(STDLIB / n), "version": "1",
                                        "license": "PSF-2.0"}) + "\n" for n in ("bisect.py", "heapq.py", "glob.py")))
    fim = FimExamples(Tokenizer.from_file(str(TOKENIZER)), prefix_tokens=32, suffix_tokens=16)
    return DeviceBatches(PT.build(path, TOKENIZER), fim, seed=0, canvas_lengths=[16, 32])


def _args(**kw):
    args = SimpleNamespace(seed=0, lr=2e-3, warmup=8, decay_fraction=0.25, batch_size=2, minutes=0.04, steps=None,
                           ar_weight=0.5, pad_weight=0.1, bf16=True, log_every=4, eval_batches=1)
    args.__dict__.update(kw)
    return args


def _run(batches, **kw):
    torch.manual_seed(0)
    model = new_model("tiny", TOKENIZER, seed=0).train()
    opt = make_optimizer(model, 2e-3, 0.1)
    lines = []
    return model, train_for(model, opt, batches, _args(**kw), lines.append), lines


def test_the_planned_total_fills_the_rest_of_the_budget_at_the_measured_rate():
    assert planned_total(200, 100, 10.0, 20.0, 60.0) == 200 + int(10 * 40 * SAFETY)
    assert planned_total(50, 10, 1.0, 61.0, 60.0) == 51             # over budget already: one more step


def test_a_budgeted_run_sets_its_total_after_the_warm_up_and_ends_near_the_budget(batches):
    _run(batches, steps=12, minutes=5)      # the first steps of a process build its kernels: not what is timed here
    _, record, lines = _run(batches, minutes=0.1)
    assert record["planned_at_step"] == 8 and record["measured_steps_per_s"] > 0, (record, lines)
    assert record["step"] == record["steps"] or record["stopped_by_budget"]
    assert record["steps"] > 8 and record["train_s"] < 0.1 * 60 * 1.5      # a step or two past it at most
    assert record["tokens"] > record["canvas_tokens"] > 0
    assert any("warm-up:" in line for line in lines) and any("step 4/?" in line for line in lines)


def test_a_run_with_a_fixed_total_is_a_function_of_its_seed(batches):
    a, ra, _ = _run(batches, steps=3, minutes=5)
    b, rb, _ = _run(batches, steps=3, minutes=5)
    assert ra["step"] == rb["step"] == 3 and ra["planned_at_step"] is None
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
