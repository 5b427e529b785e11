"""Train the embedded model's tokenizer: byte-level BPE over the corpus, with the FIM specials.

Special tokens take the first ids, in this order: `<pad>` 0, `<eos>` 1, `<mask>` 2,
`<|fim_prefix|>` 3, `<|fim_suffix|>` 4, `<|fim_middle|>` 5. Every byte is in the base alphabet,
so any text round-trips through encode/decode exactly.

    python -m diffill.model.engine.bpe --corpus .cache/corpus/clean.jsonl --vocab-size 8192 --out .cache/tokenizer.json
"""
import argparse
import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIALS = ["<pad>", "<eos>", "<mask>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]


def train_tokenizer(texts, vocab_size: int = 8192, min_frequency: int = 2) -> Tokenizer:
    """A byte-level BPE tokenizer trained on an iterable of strings."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIALS,
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(".cache/corpus/clean.jsonl"))
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--sample-bytes", type=int, default=40_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(".cache/tokenizer.json"))
    args = parser.parse_args(argv)
    tok = train_tokenizer(sample_texts(args.corpus, args.sample_bytes, args.seed), args.vocab_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out))
    print(f"wrote {args.out}: {tok.get_vocab_size()} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
