"""The text of the fill-in-the-middle prompt formats, shared by the local engine and the remote client.

Standard library only: the local engine (model/engine/prompt.py) encodes these pieces with the
checkpoint's tokenizer, the remote client (lsp/server/remote) joins them into the `prompt` text a
serving engine tokenizes itself. Both therefore show the model the same words.

- "chat" (DiffusionGemma): the file with a cursor marker and an instruction in the user turn; the
  model turn is opened with the prefix's last lines, so the canvas starts at the cursor.
- "fim": native FIM tokens: <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>.
- "clamped": the prefix alone is the prompt; the suffix's first tokens are pinned in the canvas.

Stable text comes first in every format (the instruction, then the prefix window, whose start stays
put while the user types), so a server's prefix cache keeps the leading part of the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

CURSOR = "<|cursor|>"
LEAD_LINES = 3
BOS = "<bos>"
TURN_OPEN, TURN_CLOSE = "<|turn>", "<turn|>"
FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"
CHAT_STOPS = ("\n```", "```")
FENCE = "```"


@dataclass(frozen=True)
class ChatPieces:
    """The chat format's text, in order; the turn markers go around them:

        <bos><|turn>{user}{prefix}{cursor}{suffix}<turn|>\\n<|turn>{model}{head}
    """

    user: str      # "user\n" + the instruction and the opening fence
    prefix: str
    cursor: str
    suffix: str    # the suffix and the closing fence
    model: str     # "model\n" + the opening fence of the answer
    head: str      # the prefix's last lines: the model goes on from there

    def instruction(self) -> str:
        """The user turn's content (no role line): what a chat endpoint gets as the message."""
        return self.user[len("user\n"):] + self.prefix + self.cursor + self.suffix


def lines_tail(text: str, n: int) -> str:
    """The last n lines of text (the last one possibly partial)."""
    parts = text.split("\n")
    return "\n".join(parts[-n:])


def chat_pieces(prefix: str, suffix: str, language: str | None = None) -> ChatPieces:
    lang = language or ""
    user = (f"user\nFill in the code at {CURSOR} in this {lang or 'source'} file. Answer with the code that goes "
            f"at {CURSOR} only.\n```{lang}\n")
    return ChatPieces(user, prefix, CURSOR, suffix + "\n```", f"model\n```{lang}\n", lines_tail(prefix, LEAD_LINES))


def chat_text(prefix: str, suffix: str, language: str | None = None, bos: bool = False) -> str:
    """The whole chat prompt as text. `bos`: spell out <bos> (servers that tokenize a completion
    prompt add it themselves, vLLM among them, so the default leaves it out)."""
    c = chat_pieces(prefix, suffix, language)
    return ((BOS if bos else "") + TURN_OPEN + c.user + c.prefix + c.cursor + c.suffix + TURN_CLOSE + "\n"
            + TURN_OPEN + c.model + c.head)


def fim_text(prefix: str, suffix: str) -> str:
    return FIM_PREFIX + prefix + FIM_SUFFIX + suffix + FIM_MIDDLE


def cut_at_stops(text: str, stops=CHAT_STOPS) -> str:
    """Text up to the first stop text, trying them in order (as the local engine does)."""
    for stop in stops:
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text


def chat_answer(text: str, prefix: str) -> str:
    """The middle out of a chat endpoint's answer, whose model turn the client could not open itself:
    a leading code fence dropped, the text cut at the closing fence, and the prefix's last lines
    dropped when the model wrote them again before the middle."""
    stripped = text.lstrip("\n")
    if stripped.startswith(FENCE):
        nl = stripped.find("\n")
        text = stripped[nl + 1:] if nl >= 0 else ""
    cut = text.find(FENCE)
    if cut >= 0:
        text = text[:cut]
        if text.endswith("\n"):
            text = text[:-1]
    for n in range(LEAD_LINES, 0, -1):
        head = lines_tail(prefix, n)
        if head.strip() and text.startswith(head):
            return text[len(head):]
    return text
