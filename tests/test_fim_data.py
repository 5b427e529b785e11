"""FIM examples: holes cut the way completions are asked for, prompts in the engine's format."""
import ast
import random

import pytest

from diffill.model.engine.bpe import train_tokenizer
from diffill.model.train.fim_data import FimExamples, choose_hole, collate
from diffill.model.engine.prompt import build_prompt
from diffill.model.engine.tokenizer import Tokenizer

SOURCE = '''import math


def area(shape, size):
    """Area of a regular shape."""
    if shape == "square":
        return size * size
    elif shape == "circle":
        return math.pi * size ** 2
    for i in range(3):
        print(i, shape)
    return None


class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k=1):
        self.n += k
        return self.n
'''


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([SOURCE] * 10, vocab_size=400)


@pytest.mark.parametrize("kind", ["rest_of_line", "lines", "block", "node", "chars", "empty"])
def test_hole_splits_the_text_exactly(kind):
    rng = random.Random(0)
    for _ in range(50):
        h = choose_hole(SOURCE, rng, 300, kind)
        assert h.prefix + h.middle + h.suffix == SOURCE
        assert h.kind == kind


def test_rest_of_line_ends_at_the_line_end():
    rng = random.Random(1)
    for _ in range(50):
        h = choose_hole(SOURCE, rng, 300, "rest_of_line")
        assert "\n" not in h.middle and h.middle.strip()
        assert h.suffix.startswith("\n")


def test_whole_lines_end_with_a_newline_and_start_at_line_start_or_indentation():
    rng = random.Random(2)
    for _ in range(50):
        h = choose_hole(SOURCE, rng, 300, "lines")
        assert h.middle.endswith("\n")
        last = h.prefix.rsplit("\n", 1)[-1]
        assert last.strip() == ""


def test_blocks_are_statement_bodies():
    rng = random.Random(3)
    for _ in range(30):
        h = choose_hole(SOURCE, rng, 300, "block")
        body = h.middle
        indent = len(body) - len(body.lstrip(" ")) if body.startswith(" ") else len(h.prefix.rsplit("\n", 1)[-1])
        # dedented, a block's text is a valid module
        lines = (" " * (indent if not body.startswith(" ") else 0) + body).splitlines()
        ast.parse("\n".join(l[indent:] for l in lines))


def test_syntax_nodes_are_parsable_fragments_or_names():
    rng = random.Random(4)
    seen = 0
    for _ in range(40):
        h = choose_hole(SOURCE, rng, 60, "node")
        assert 0 < len(h.middle) <= 60
        seen += h.middle.strip() == h.middle
    assert seen > 30


def test_example_layout_is_prompt_then_canvas_with_eos_and_padding(tok):
    fim = FimExamples(tok, prefix_tokens=64, suffix_tokens=32)
    rng = random.Random(5)
    for c in (32, 64, 256):
        for _ in range(20):
            e = fim.example(SOURCE, c, rng)
            assert len(e.canvas) == c
            assert e.canvas[e.middle_tokens] == fim.eos
            assert all(t == fim.pad for t in e.canvas[e.middle_tokens + 1:])
            assert fim.eos not in e.canvas[:e.middle_tokens] and fim.pad not in e.canvas[:e.middle_tokens]
            assert e.prompt[0] == fim.fim_prefix and e.prompt[-1] == fim.fim_middle
            assert e.prompt.count(fim.fim_suffix) == 1
            assert len(e.prompt) <= 64 + 32 + 3


def test_prompt_matches_the_engine_fim_format(tok):
    fim = FimExamples(tok, prefix_tokens=10_000, suffix_tokens=10_000)
    engine = build_prompt(Tokenizer(tok), "fim", SOURCE[:200], SOURCE[230:], 64)
    assert fim.prompt(SOURCE[:200], SOURCE[230:]) == engine.ids


def test_collate_left_pads_prompts(tok):
    fim = FimExamples(tok, 64, 32)
    rng = random.Random(6)
    examples = [fim.example(SOURCE, 32, rng) for _ in range(4)]
    prompt, pad, canvas = collate(examples, fim.pad)
    assert canvas.shape == (4, 32)
    for i, e in enumerate(examples):
        n = len(e.prompt)
        assert prompt[i, -n:].tolist() == e.prompt
        assert not pad[i, -n:].any() and pad[i, :-n].all()
