"""The embedded model's tokenizer: byte-level BPE with the FIM specials at fixed ids."""
from diffill.model.engine.bpe import train_tokenizer
from diffill.model.engine.tokenizer import FIM_SPECIALS, Tokenizer

TEXTS = ["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i)\n",
         "class Point:\n    def __init__(self, x, y):\n        self.x = x\n"] * 20


def test_specials_take_the_first_ids():
    tok = train_tokenizer(TEXTS, vocab_size=400)
    assert [tok.token_to_id(s) for s in FIM_SPECIALS] == list(range(len(FIM_SPECIALS)))
    assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("<eos>") == 1


def test_any_text_round_trips_and_merges_are_learned():
    tok = train_tokenizer(TEXTS, vocab_size=400)
    for text in ["    return a + b\n", "naïve = '日本' + \"\\t\"\n", "\x00\x7f weird bytes"]:
        assert tok.decode(tok.encode(text).ids) == text
    assert len(tok.encode("    return a + b\n").ids) < len("    return a + b\n")


def test_engine_reads_the_specials_by_name():
    t = Tokenizer(train_tokenizer(TEXTS, vocab_size=400))
    assert t.fim and t.mask_id == 2 and t.pad_id == 0 and t.eos_ids == [1]
    assert t.decode([t.fim_ids[0]] + t.encode("x = 1") + [1]) == "x = 1"
