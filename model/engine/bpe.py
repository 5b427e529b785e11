"""Train the embedded model's tokenizer: byte-level BPE over the corpus, with the FIM specials.

Special tokens take the first ids, in the order of `tokenizer.FIM_SPECIALS`: `<pad>` 0, `<eos>` 1,
`<mask>` 2, `<|fim_prefix|>` 3, `<|fim_suffix|>` 4, `<|fim_middle|>` 5. Every byte is in the base
alphabet, so any text round-trips through encode/decode exactly. `diffill train` trains it when the
tokenizer file is missing.
"""
import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from diffill.model.engine.tokenizer import FIM_SPECIALS


def train_tokenizer(texts, vocab_size: int = 8192, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE tokenizer trained on an iterable of strings."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=FIM_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def sample_texts(corpus_jsonl: Path, max_bytes: int, seed: int = 0):
    """A seeded random subset of the corpus files, about max_bytes of text."""
    with open(corpus_jsonl) as f:
        texts = [json.loads(line)["text"] for line in f]
    random.Random(seed).shuffle(texts)
    total = 0
    for text in texts:
        if total >= max_bytes:
            break
        total += len(text)
        yield text

