"""The checkpoint's tokenizer (tokenizer.json through the `tokenizers` library) and its special tokens.

Special tokens are looked up by name, never by hard-coded id: the prompt format is a property of the
checkpoint (FIM tokens when the tokenizer has them, the chat turn markers otherwise).
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

from diffill.model.engine.config import CheckpointError

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"
TURN_OPEN, TURN_CLOSE = "<|turn>", "<turn|>"


class Tokenizer:
    def __init__(self, tok: _HFTokenizer, eos_ids: list[int] | None = None):
        self._tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.pad_id = self.id_of("<pad>", 0)
        self.bos_id = self.id_of("<bos>")
        self.mask_id = self.id_of("<mask>")
        eos = self.id_of("<eos>", 1)
        self.eos_ids = sorted(set(eos_ids or [eos]))
        self.fim_ids = tuple(self.id_of(t) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE))
        self.fim = all(i is not None for i in self.fim_ids)
        self.turn_ids = (self.id_of(TURN_OPEN), self.id_of(TURN_CLOSE))
        self.chat = all(i is not None for i in self.turn_ids)
        self.special_ids = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}

    @classmethod
    def from_dir(cls, path: str | Path, eos_ids=None) -> "Tokenizer":
        f = Path(path) / "tokenizer.json"
        if not f.is_file():
            raise CheckpointError(f"{f} is missing: the checkpoint needs its tokenizer.json")
        try:
            return cls(_HFTokenizer.from_file(str(f)), eos_ids)
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


BASE_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def byte_level_tokenizer(extra_specials: list[str] = (), vocab_size: int | None = None) -> _HFTokenizer:
    """A byte-level tokenizer with no merges: specials first (pad 0, eos 1, bos 2, unk 3, mask 4), then
    the 256 bytes, then unused filler entries up to vocab_size. For random-weight checkpoints."""
    from tokenizers import AddedToken

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = BASE_SPECIALS + [s for s in extra_specials if s not in BASE_SPECIALS]
    vocab = {s: i for i, s in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    n = 0
    while vocab_size is not None and len(vocab) < vocab_size:
        vocab[f"<unused{n}>"] = len(vocab)
        n += 1
    tok = _HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fillers = [t for t in vocab if t.startswith("<unused")]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials + fillers])
    return tok
