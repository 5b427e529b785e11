"""The fill seam: what the pipeline asks of a model, and what it gets back.

A `Fill` is any async callable `FillRequest -> FillReply`: the local worker (the server's
`WorkerClient.fill`), the model in this process (`diffill complete`, `diffill demo`, the
benchmarks), a remote engine, or `FixedFill`, the deterministic stand-in that tests use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable


@dataclass(frozen=True)
class FillRequest:
    doc: str                    # the document's key: a worker keeps a KV cache per document
    prefix: str                 # the model's context window before the cursor
    suffix: str                 # ... and after it
    canvas_length: int          # tokens to denoise (the span decides)
    language: str               # canonical language id
    max_lines: int | None = None  # the span wants at most this many lines
    max_steps: int | None = None  # denoising steps; None: the checkpoint's default
    seed: int = 0


@dataclass(frozen=True)
class FillReply:
    text: str                   # the raw middle the model wrote, before trimming
    steps: int = 0
    ms: float = 0.0
    cancelled: bool = False
    reused_tokens: int = 0
    encoded_tokens: int = 0
    queue_ms: float = 0.0
    # per line of `text`: how sure the model was of it (the least probable committed token's
    # probability); None when the fill does not say
    line_confidence: tuple[float, ...] | None = None


Fill = Callable[[FillRequest], Awaitable[FillReply]]


@dataclass
class FixedFill:
    """A fill that answers `text`, or `answer(request)` when given, and records every request."""

    text: str = ""
    answer: Callable[[FillRequest], str] | None = None
    requests: list[FillRequest] = field(default_factory=list)

    async def __call__(self, request: FillRequest) -> FillReply:
        self.requests.append(request)
        return FillReply(self.answer(request) if self.answer is not None else self.text, steps=1)
