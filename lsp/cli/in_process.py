"""The model in this process behind the fill seam: what `diffill complete`, `diffill demo` and the
benchmarks hand to the pipeline instead of the server's worker."""
from __future__ import annotations

from pathlib import Path

from diffill.lsp.pipeline.complete import DEFAULT_CONTEXT_TOKENS
from diffill.lsp.pipeline.fill import FillReply, FillRequest
from diffill.lsp.pipeline.windows import ContextWindows, TokenCounter


class InProcessFill:
    """An `Infiller` (diffill.model.engine.infill) as a `Fill`."""

    def __init__(self, infiller):
        self.infiller = infiller

    async def __call__(self, request: FillRequest) -> FillReply:
        res = self.infiller.fill(request.prefix, request.suffix, canvas_length=request.canvas_length,
                                 max_steps=request.max_steps, seed=request.seed, doc_key=request.doc or None,
                                 language=request.language, max_lines=request.max_lines)
        return FillReply(res.text, res.steps, res.ms, res.cancelled, res.reused_tokens, res.encoded_tokens,
                         line_confidence=tuple(res.line_confidence) if res.line_confidence else None)


def context_tokens_of(model) -> int:
    """The checkpoint's own context budget (config `diffill_context_tokens`), else the default."""
    return int(model.config.raw.get("diffill_context_tokens") or DEFAULT_CONTEXT_TOKENS)


def windows_for(model) -> ContextWindows:
    """Context windows cut with the checkpoint's tokenizer, as the server cuts them."""
    tok = Path(model.path) / "tokenizer.json"
    return ContextWindows(TokenCounter(str(tok) if tok.is_file() else None))
