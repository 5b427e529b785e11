"""The sampler's rules, the prompt formats, and the Infiller's prefix-cache reuse."""
import pytest
import torch

from diffill.model import load_model
from diffill.model.engine.infill import Infiller, common_prefix_len
from diffill.model.engine.prompt import build_prompt
from diffill.model.engine.sampler import Clamp, entropy_bound_accept, sample


def test_entropy_bound_accepts_the_lowest_entropy_run():
    ent = torch.tensor([[0.5, 0.01, 0.02, 0.9, 0.03]])
    # sorted: .01 .02 .03 .5 .9 ; cumsum - own: 0, .01, .03, .06, .56 -> bound .1 takes four
    assert entropy_bound_accept(ent, 0.1).tolist() == [[True, True, True, False, True]]
    # a tight bound still takes the single most certain position
    assert entropy_bound_accept(ent, 0.0).tolist() == [[False, True, False, False, False]]


def test_entropy_bound_only_takes_eligible_positions():
    ent = torch.tensor([[0.0, 0.0, 5.0]])
    eligible = torch.tensor([[False, False, True]])
    assert entropy_bound_accept(ent, 0.1, eligible).tolist() == [[False, False, True]]


def record_canvases(m) -> list:
    """Make m.denoise keep a copy of every canvas it is given (the real model still runs)."""
    inputs, original = [], m.denoise

    def recording(canvas, cache, *args, **kwargs):
        inputs.append(canvas.clone())
        return original(canvas, cache, *args, **kwargs)

    m.denoise = recording
    return inputs


def _prompt_cache(m, n=10, seed=0):
    ids = torch.randint(5, 300, (1, n), generator=torch.Generator().manual_seed(seed))
    return m.encode(ids)


def test_uniform_sampling_is_reproducible_from_its_seed(tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    a = sample(m, _prompt_cache(m), max_steps=6, seed=7)
    b = sample(m, _prompt_cache(m), max_steps=6, seed=7)
    c = sample(m, _prompt_cache(m), max_steps=6, seed=8)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_callback_sees_every_step_and_can_abort(tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    seen = []
    r = sample(m, _prompt_cache(m), max_steps=10, seed=0, on_step=lambda s: (seen.append(s), len(seen) < 3)[1])
    assert r.cancelled and r.steps == 3 and len(seen) == 3
    assert [s.step for s in seen] == [1, 2, 3] and all(s.max_steps == 10 for s in seen)


def test_chaining_encodes_each_finished_canvas(tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    cache = _prompt_cache(m)
    r = sample(m, cache, max_new_tokens=48, max_steps=3, seed=1)
    # three canvases of 16 unless an end-of-sequence came first; each committed canvas grows the cache
    assert r.canvases >= 1
    assert cache.length == 10 + 16 * (r.canvases - 1)
    assert len(r.tokens[0]) <= 48


def test_clamped_positions_are_reimposed_before_every_step(tiny_checkpoint):
    m = load_model(tiny_checkpoint)
    pins = Clamp(positions=[12, 13, 14, 15], ids=[40, 41, 42, 43])
    inputs = record_canvases(m)
    sample(m, _prompt_cache(m), max_steps=5, seed=0, clamp=pins)
    assert len(inputs) >= 2
    for canvas in inputs:
        assert canvas[0, 12:].tolist() == [40, 41, 42, 43]


def test_mask_process_keeps_committed_tokens_and_fills_everything(fim_checkpoint):
    m = load_model(fim_checkpoint)
    mask = m.tokenizer.mask_id
    inputs = record_canvases(m)
    r = sample(m, _prompt_cache(m), max_steps=6, seed=0)
    assert inputs[0].eq(mask).all()  # starts fully masked
    for before, after in zip(inputs, inputs[1:]):
        kept = before != mask
        assert torch.equal(after[kept], before[kept])  # committed tokens stay
        assert (after != mask).sum() > kept.sum()  # progress every step
    assert r.steps <= 6
    assert mask not in r.tokens[0]


def test_mask_process_stops_when_the_committed_prefix_is_enough(fim_checkpoint):
    m = load_model(fim_checkpoint)
    seen = []

    def enough(tokens):
        seen.append(list(tokens))
        return len(tokens) >= 3

    full = sample(m, _prompt_cache(m), max_steps=16, seed=0)
    early = sample(m, _prompt_cache(m), max_steps=16, seed=0, done_when=enough)
    assert seen and all(len(t) <= 16 for t in seen)
    assert early.steps < full.steps
    # what is returned is exactly the committed prefix that satisfied the rule
    assert early.tokens[0] == seen[-1] and len(early.tokens[0]) >= 3


def test_fim_prompt_layout(fim_checkpoint):
    tok = load_model(fim_checkpoint).tokenizer
    p = build_prompt(tok, "fim", "def f(", "):\n", 16)
    pre, suf, mid = tok.fim_ids
    assert p.ids[0] == pre and p.ids[-1] == mid and suf in p.ids and p.clamp is None
    assert tok.decode(p.ids) == "def f():\n"


def test_chat_prompt_opens_the_model_turn_at_the_cursor(tiny_checkpoint):
    tok = load_model(tiny_checkpoint).tokenizer
    prefix = "a = 1\nb = 2\nc = 3\ndef f(x):\n    return "
    p = build_prompt(tok, "chat", prefix, "\nprint(f(2))\n", 64, language="python")
    text = tok.decode(p.ids, skip_special=False)
    assert "<|cursor|>" in text and "print(f(2))" in text
    assert text.endswith("model\n```python\nc = 3\ndef f(x):\n    return ")  # the last lines, up to the cursor
    with pytest.raises(ValueError, match="no FIM tokens"):
        build_prompt(tok, "fim", "a", "b", 16)


def test_clamped_prompt_pins_the_start_of_the_suffix(tiny_checkpoint):
    tok = load_model(tiny_checkpoint).tokenizer
    p = build_prompt(tok, "clamped", "x = ", "\ny = 2\n", 16)
    assert p.clamp.ids == tok.encode("\ny = 2\n")[:4]
    assert p.clamp.positions == [12, 13, 14, 15] and p.middle_len == 12


def test_infiller_reuses_the_common_prefix_and_gives_the_same_answer(fim_checkpoint):
    m = load_model(fim_checkpoint)
    warm, cold = Infiller(m), Infiller(m)
    prefix, suffix = "def add(a, b):\n    return", "\n\nprint(add(1, 2))\n"
    first = warm.fill(prefix, suffix, canvas_length=16, max_steps=4, doc_key="a.py")
    assert first.reused_tokens == 0
    again = warm.fill(prefix + " a", suffix, canvas_length=16, max_steps=4, doc_key="a.py", seed=3)
    assert again.reused_tokens >= len(m.tokenizer.encode(prefix)) - 1
    assert again.encoded_tokens < len(build_prompt(m.tokenizer, "fim", prefix + " a", suffix, 16).ids)
    fresh = cold.fill(prefix + " a", suffix, canvas_length=16, max_steps=4, seed=3)
    assert fresh.tokens == again.tokens and fresh.text == again.text


def test_fill_text_never_holds_control_characters_or_undecodable_bytes(fim_checkpoint):
    from diffill.model.engine.infill import printable
    assert printable("a\tb\nc\r\n\x00\x14\x1b[0m\ufffdd\x7f") == "a\tb\nc\r\n[0md"
    m = load_model(fim_checkpoint)  # random weights: raw output is full of broken bytes
    for seed in range(3):
        text = Infiller(m).fill("x = ", "\n", canvas_length=16, max_steps=3, seed=seed).text
        assert text == printable(text)


def test_common_prefix_len():
    assert common_prefix_len([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_len([], [1]) == 0
    assert common_prefix_len([1, 2], [1, 2]) == 2


def test_the_mask_process_ends_the_middle_only_where_the_end_tokens_hold_half_the_mass():
    from diffill.model.engine.sampler import mask_predictions
    ends = torch.tensor([0, 1])  # pad, eos
    # position 0: padding is the single most likely token (0.3) but code holds 0.6 -> the best code token
    # position 1: eos + padding hold 0.7 -> the more likely of the two
    probs = torch.tensor([[[0.3, 0.1, 0.25, 0.2, 0.15], [0.3, 0.4, 0.1, 0.1, 0.1]]])
    assert mask_predictions(probs, ends).tolist() == [[2, 1]]
    assert probs.argmax(-1).tolist() == [[0, 1]]  # what a plain argmax would have chosen


def test_the_sampler_reports_each_tokens_probability_and_the_infiller_a_confidence_per_line(fim_checkpoint):
    import math

    from diffill.model.engine.infill import Infiller, line_confidence
    m = load_model(fim_checkpoint)
    res = Infiller(m).fill("def f(x):\n    return ", "\n", canvas_length=16, max_steps=4)
    assert res.line_confidence is not None and len(res.line_confidence) == res.text.count("\n") + 1
    assert all(0.0 <= p <= 1.0 and not math.isnan(p) for p in res.line_confidence)
    tok = m.tokenizer
    ids = tok.encode("a\nb\nc")
    probs = [0.9, 0.5, 0.8, 0.2, 0.7][: len(ids)] + [0.6] * max(0, len(ids) - 5)
    per_line = line_confidence(tok, ids, probs, tok.decode(ids))
    assert len(per_line) == 3
    # each line's value is the least probable token on it
    lines, line = [1.0, 1.0, 1.0], 0
    for i, p in zip(ids, probs):
        lines[line] = min(lines[line], p)
        line += tok.decode([i]).count("\n")
    assert per_line == [round(x, 4) for x in lines]
