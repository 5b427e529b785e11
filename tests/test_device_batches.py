"""Batches made on the device from the pre-tokenized corpus: the same kinds of FIM examples as fim_data's."""
import dataclasses
import json
import sysconfig
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from diffill.model.train import pretokenized as PT
from diffill.model.train.corpus import read_text
from diffill.model.train.device_batches import KIND_NAMES, DeviceBatches
from diffill.model.train.fim_data import KINDS, FimExamples
from diffill.model.train.objective import mask_canvas, noise_levels

TOKENIZER = Path(__file__).resolve().parent.parent / "model" / "embedded" / "tokenizer.json"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ("bisect.py", "heapq.py", "colorsys.py", "glob.py", "textwrap.py", "fnmatch.py", "string.py")  # ASCII
CANVAS = [32, 64, 128]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "clean.jsonl"
    texts = [read_text(STDLIB / n) for n in FILES]
    path.write_text("".join(json.dumps({"package": f"p{i % 3}", "path": n, "text": t, "version": "1",
                                        "license": "PSF-2.0"}) + "\n" for i, (n, t) in enumerate(zip(FILES, texts))))
    tok = Tokenizer.from_file(str(TOKENIZER))
    fim = FimExamples(tok, prefix_tokens=64, suffix_tokens=32)
    pt = PT.build(path, TOKENIZER)
    return pt, fim, tok, texts


def _rows(batch, fim):
    for r in range(batch.prompt.shape[0]):
        p = batch.prompt[r][~batch.prompt_pad[r]].tolist()
        c = batch.canvas[r].tolist()
        yield p, c, c[:c.index(fim.eos)]


def test_every_row_is_a_hole_of_its_file_tokenised_as_the_product_tokenises_each_part(setup):
    pt, fim, tok, texts = setup
    db = DeviceBatches(pt, fim, seed=0, canvas_lengths=CANVAS)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids if s else []   # noqa: E731
    for step in range(6):
        files = db.holes(step, 48)[0]
        batch = db.batch(step, 48)
        for (p, c, middle), f in zip(_rows(batch, fim), files.tolist()):
            assert p[0] == fim.fim_prefix and p[-1] == fim.fim_middle and p.count(fim.fim_suffix) == 1
            cut = p.index(fim.fim_suffix)
            prefix, suffix = p[1:cut], p[cut + 1:-1]
            assert len(prefix) <= fim.prefix_tokens and len(suffix) <= fim.suffix_tokens
            pre, mid, suf = tok.decode(prefix), tok.decode(middle), tok.decode(suffix)
            text = texts[f]
            at = text.find(pre + mid + suf)
            assert at >= 0, (pre[-40:], mid[:40], suf[:40])                     # a hole inside its file
            s, e = at + len(pre), at + len(pre) + len(mid)
            assert enc(mid) == middle                                           # FimExamples.encode(middle)
            assert enc(text[:s])[len(enc(text[:s])) - len(prefix):] == prefix   # the prompt's last prefix tokens
            assert enc(text[e:])[:len(suffix)] == suffix


def test_canvases_have_a_length_from_the_list_and_hold_the_middle_then_eos_then_padding(setup):
    pt, fim, _, _ = setup
    db = DeviceBatches(pt, fim, seed=1, canvas_lengths=CANVAS)
    lengths = set()
    for step in range(12):
        batch = db.batch(step, 16)
        assert batch.prompt.shape == (16, fim.prefix_tokens + fim.suffix_tokens + 3)
        lengths.add(batch.canvas.shape[1])
        for _, c, middle in _rows(batch, fim):
            assert len(middle) + 1 <= len(c) and fim.pad not in middle and fim.mask not in middle
            assert all(x == fim.pad for x in c[len(middle) + 1:])
    assert lengths == set(CANVAS)


def test_hole_kinds_follow_fim_data_weights(setup):
    pt, fim, _, _ = setup
    db = DeviceBatches(pt, fim, seed=2, canvas_lengths=[128])
    kinds = torch.cat([db.holes(step, 200)[1] for step in range(10)])
    for i, name in enumerate(KIND_NAMES):
        assert abs(float((kinds == i).float().mean()) - KINDS[name]) < 0.04, name


def test_a_batch_is_a_function_of_seed_and_step(setup):
    pt, fim, _, _ = setup
    a, b, other = (DeviceBatches(pt, fim, seed=s, canvas_lengths=CANVAS) for s in (3, 3, 4))
    x, y = a.batch(5, 8), b.batch(5, 8)
    b.batch(6, 8)
    assert torch.equal(x.prompt, y.prompt) and torch.equal(x.canvas, y.canvas)
    assert torch.equal(b.batch(5, 8).canvas, x.canvas)                    # whatever came before
    assert not torch.equal(other.batch(5, 8).prompt, x.prompt)


def test_held_out_batches_draw_held_out_files_only_and_training_batches_never(setup):
    pt, fim, _, _ = setup
    held = torch.zeros(pt.files, dtype=torch.bool)
    held[2] = True
    db = DeviceBatches(dataclasses.replace(pt, file_held=held), fim, seed=0, canvas_lengths=CANVAS)
    assert db.has_held_out()
    for step in range(4):
        assert set(db.holes(step, 32, held_out=True)[0].tolist()) == {2}
        assert 2 not in db.holes(step, 32)[0].tolist()


def test_mask_noise_is_drawn_where_the_batch_lives_and_masks_canvas_positions_only(setup):
    pt, fim, _, _ = setup
    batch = DeviceBatches(pt, fim, seed=0, canvas_lengths=[64]).batch(0, 64)
    g = torch.Generator(device=batch.canvas.device).manual_seed(0)
    t = noise_levels(64, g)
    noisy, masked = mask_canvas(batch.canvas, t, fim.mask, g)
    assert noisy.device == batch.canvas.device and masked.any(1).all()
    assert (noisy[masked] == fim.mask).all() and torch.equal(noisy[~masked], batch.canvas[~masked])
    assert abs(float(masked.float().mean()) - float(t.mean())) < 0.05


def test_without_syntax_cuts_block_and_node_holes_fall_back_and_every_row_is_still_a_hole(setup, tmp_path):
    _, fim, tok, texts = setup
    path = tmp_path / "clean.jsonl"
    path.write_text("".join(json.dumps({"package": "p", "path": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    pt = PT.build(path, TOKENIZER, syntax=False)                 # as on a machine without tree-sitter
    assert len(pt.block_start) == 0 and len(pt.node_start) == 0
    db = DeviceBatches(pt, fim, seed=0, canvas_lengths=CANVAS)
    kinds = torch.cat([db.holes(step, 64)[1] for step in range(4)])
    assert not ((kinds == KIND_NAMES.index("block")) | (kinds == KIND_NAMES.index("node"))).any()
    assert (kinds == KIND_NAMES.index("lines")).float().mean() > KINDS["lines"] + 0.2   # the fallback takes them
    for (p, _, middle), f in zip(_rows(db.batch(0, 32), fim), db.holes(0, 32)[0].tolist()):
        cut = p.index(fim.fim_suffix)
        assert texts[f].find(tok.decode(p[1:cut]) + tok.decode(middle) + tok.decode(p[cut + 1:-1])) >= 0
