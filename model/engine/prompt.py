"""Prompt formats for fill-in-the-middle: a property of the checkpoint, never hard-coded.

- "fim": native FIM tokens (the embedded model): <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>.
- "chat" (A, DiffusionGemma): the file with a cursor marker and an instruction in the user turn; the
  model turn is opened with the prefix's last lines, so the canvas starts at the cursor.
- "clamped" (B, DiffusionGemma): the prefix is the prompt; the suffix's first tokens are pinned at the
  end of the canvas and re-imposed after every step; the middle is what the model puts before them.
"""
from __future__ import annotations

from dataclasses import dataclass

from diffill.lsp.wire import prompt_format
from diffill.model.engine.sampler import Clamp
from diffill.model.engine.tokenizer import Tokenizer

FORMATS = ("fim", "chat", "clamped")


@dataclass
class Prompt:
    ids: list[int]               # encoder input
    clamp: Clamp | None = None   # pinned canvas positions (format B)
    middle_len: int | None = None  # canvas positions that hold the middle (format B)
    stop_texts: tuple[str, ...] = ()  # text that ends the completion in this format


def default_format(tokenizer: Tokenizer, configured: str | None = None) -> str:
    """The configured format if the tokenizer can express it (ValueError if not), else the natural one."""
    if not configured:
        return "fim" if tokenizer.fim else "chat"
    if configured not in FORMATS:
        raise ValueError(f"unknown prompt format {configured!r}; choose one of {', '.join(FORMATS)}")
    if configured == "fim" and not tokenizer.fim:
        raise ValueError("this checkpoint's tokenizer has no FIM tokens; use the 'chat' or 'clamped' format")
    if configured == "chat" and not tokenizer.chat:
        raise ValueError("this checkpoint's tokenizer has no chat turn markers; use the 'clamped' format")
    return configured


def build_prompt(tok: Tokenizer, fmt: str, prefix: str, suffix: str, canvas_length: int,
                 language: str | None = None) -> Prompt:
    if fmt == "fim":
        if not tok.fim:
            raise ValueError("this checkpoint's tokenizer has no FIM tokens; use the 'chat' or 'clamped' format")
        p, s, m = tok.fim_ids
        return Prompt([p] + tok.encode(prefix) + [s] + tok.encode(suffix) + [m])
    bos = [tok.bos_id] if tok.bos_id is not None else []
    if fmt == "chat":
        if not tok.chat:
            raise ValueError("this checkpoint's tokenizer has no chat turn markers; use the 'clamped' format")
        open_, close = tok.turn_ids
        c = prompt_format.chat_pieces(prefix, suffix, language)  # the same text the remote client sends
        ids = (bos + [open_] + tok.encode(c.user) + tok.encode(c.prefix) + tok.encode(c.cursor)
               + tok.encode(c.suffix) + [close] + tok.encode("\n") + [open_]
               + tok.encode(c.model) + tok.encode(c.head))
        return Prompt(ids, stop_texts=prompt_format.CHAT_STOPS)
    if fmt == "clamped":
        pins = tok.encode(suffix)[: max(1, canvas_length // 4)] if suffix else []
        middle = canvas_length - len(pins)
        clamp = Clamp(positions=list(range(middle, canvas_length)), ids=pins) if pins else None
        return Prompt(bos + tok.encode(prefix), clamp=clamp, middle_len=middle)
    raise ValueError(f"unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)}")

