"""The checkpoint's tokenizer (tokenizer.json through the `tokenizers` library) and its special tokens.

Special tokens are looked up by name, never by hard-coded id: the prompt format is a property of the
checkpoint (FIM tokens when the tokenizer has them, the chat turn markers otherwise).
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from diffill.lsp.wire.prompt_format import BOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, TURN_CLOSE, TURN_OPEN
from diffill.model.engine.config import CheckpointError

# The tokens that prompts spell out (BOS, FIM, chat turns) are named in lsp.wire.prompt_format; the rest:
PAD, EOS, UNK, MASK = "<pad>", "<eos>", "<unk>", "<mask>"
# The first ids of a vocabulary, in order. DiffusionGemma's (and the random-weight checkpoints'):
# pad 0, eos 1, bos 2, unk 3, mask 4. The embedded model's (bpe.py): pad 0, eos 1, mask 2, then FIM.
GEMMA_SPECIALS = [PAD, EOS, BOS, UNK, MASK]
FIM_SPECIALS = [PAD, EOS, MASK, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE]


class Tokenizer:
    def __init__(self, tok: _HFTokenizer):
        self._tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.pad_id = self.id_of(PAD, 0)
        self.bos_id = self.id_of(BOS)
        self.mask_id = self.id_of(MASK)
        self.eos_ids = [self.id_of(EOS, 1)]  # load_model sets the generation config's list
        self.fim_ids = tuple(self.id_of(t) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE))
        self.fim = all(i is not None for i in self.fim_ids)
        self.turn_ids = (self.id_of(TURN_OPEN), self.id_of(TURN_CLOSE))
        self.chat = all(i is not None for i in self.turn_ids)
        self.special_ids = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}

    @classmethod
    def from_dir(cls, path: str | Path) -> "Tokenizer":
        f = Path(path) / "tokenizer.json"
        if not f.is_file():
            raise CheckpointError(f"{f} is missing: the checkpoint needs its tokenizer.json")
        try:
            return cls(_HFTokenizer.from_file(str(f)))
        except Exception as exc:  # the tokenizers library raises plain Exceptions for bad files
            raise CheckpointError(f"{f} cannot be read ({exc})") from None

    def id_of(self, token: str, default=None):
        i = self._tok.token_to_id(token)
        return default if i is None else i

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special:
            ids = [i for i in ids if i not in self.special_ids]
        return self._tok.decode(ids, skip_special_tokens=False)

    def save(self, path: str | Path) -> None:
        self._tok.save(str(Path(path) / "tokenizer.json"))


def byte_level_tokenizer(extra_specials: list[str] = (), vocab_size: int | None = None) -> _HFTokenizer:
    """A byte-level tokenizer with no merges: specials first (pad 0, eos 1, bos 2, unk 3, mask 4), then
    the 256 bytes, then unused filler entries up to vocab_size. For random-weight checkpoints."""
    from tokenizers import AddedToken

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = GEMMA_SPECIALS + [s for s in extra_specials if s not in GEMMA_SPECIALS]
    vocab = {s: i for i, s in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    n = 0
    while vocab_size is not None and len(vocab) < vocab_size:
        vocab[f"<unused{n}>"] = len(vocab)
        n += 1
    tok = _HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fillers = [t for t in vocab if t.startswith("<unused")]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials + fillers])
    return tok
