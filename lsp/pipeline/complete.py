"""The one completion pipeline: window -> span -> fill -> trim.

    plan(request, windows)        the model's window, the span and the canvas (no model call)
    await finish(plan, fill)      the fill, then the trim on the same document region as the span
    await complete(request, fill) both

The language server (`lsp/server/completer.py`), `diffill complete`, `diffill demo` and the
benchmarks all call these; only the `fill` differs (see fill.py). Torch-free.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diffill.lsp.code.span import Span, decide_span
from diffill.lsp.code.trim import Cut, Trimmed, trim
from diffill.lsp.pipeline import confidence_gate
from diffill.lsp.pipeline.fill import Fill, FillReply, FillRequest
from diffill.lsp.pipeline.language_gate import refusal
from diffill.lsp.pipeline.windows import ContextWindows, Window

DEFAULT_CONTEXT_TOKENS = 2048  # when neither the user nor the checkpoint names a budget
PREFIX_SHARE, SUFFIX_SHARE = 0.70, 0.25
CANVAS_CAP = 256
# characters of the document that span and trim read around the cursor: far more than the model's
# window, which may start inside a docstring and make the cursor look as if it were inside a string
REGION_BEFORE, REGION_AFTER = 200_000, 50_000


@dataclass(frozen=True)
class Request:
    text: str                   # the whole document
    offset: int                 # the cursor, as an index into `text`
    language: str               # LSP language id or canonical id
    context_tokens: int = DEFAULT_CONTEXT_TOKENS
    doc: str = ""               # the document's key for the fill (KV cache reuse)
    prefix_share: float = PREFIX_SHARE
    suffix_share: float = SUFFIX_SHARE
    canvas_cap: int = CANVAS_CAP
    max_steps: int | None = None
    seed: int = 0
    model_languages: tuple[str, ...] | None = None  # what the checkpoint was trained for; None: all
    force_languages: tuple[str, ...] = ()           # the user's override of the language gate
    min_confidence: float = confidence_gate.THRESHOLD  # lines the model was less sure of are not shown


@dataclass(frozen=True)
class Plan:
    request: Request
    window: Window              # what the model sees
    region: tuple[str, str]     # what span and trim see: (prefix, suffix) of the document
    span: Span
    canvas: int                 # 0: nothing to fill here
    refused: str | None = None  # why a gate before the fill said no

    def fill_request(self) -> FillRequest:
        r = self.request
        return FillRequest(r.doc, self.window.prefix, self.window.suffix, self.canvas,
                           language=r.language, max_lines=self.span.max_lines or None,
                           max_steps=r.max_steps, seed=r.seed)


@dataclass(frozen=True)
class Outcome:
    text: str                   # what to insert at the cursor ("" for nothing)
    replace: int                # characters after the cursor it replaces
    plan: Plan
    reply: FillReply | None     # None when the span wanted no fill
    trimmed: Trimmed | None

    @property
    def raw(self) -> str:
        return self.reply.text if self.reply is not None else ""


def document_region(text: str, offset: int, before: int = REGION_BEFORE, after: int = REGION_AFTER) -> tuple[str, str]:
    """The (prefix, suffix) that span and trim read. Whole documents up to `before` characters
    ahead of the cursor; longer ones from a line start."""
    start = max(0, offset - before)
    if start > 0:
        nl = text.find("\n", start, offset)
        start = nl + 1 if nl >= 0 else start
    return text[start:offset], text[offset:offset + after]


def plan(request: Request, windows: ContextWindows | None = None) -> Plan:
    windows = windows or ContextWindows()
    r = request
    offset = max(0, min(r.offset, len(r.text)))
    window = windows.window(r.doc, r.text, offset, r.context_tokens, r.prefix_share, r.suffix_share)
    region = document_region(r.text, offset)
    span = decide_span(r.language, *region)
    canvas = min(int(span.canvas_length), r.canvas_cap)
    refused = refusal(r.language, r.model_languages, r.force_languages)
    return Plan(r, window, region, span, 0 if refused else max(0, canvas), refused)


def shape(plan: Plan, reply: FillReply) -> Outcome:
    """The gates after the fill, then the trim on the document region (the reply of a cancelled fill
    shows nothing). The confidence gate cuts the raw text first, so that every trim filter (the
    parse-clean cut among them) sees what is left."""
    if reply.cancelled or not reply.text:
        return Outcome("", 0, plan, reply, None)
    raw = confidence_gate.keep(reply.text, reply.line_confidence, plan.request.min_confidence)
    gated = (Cut("confidence_gate", reply.text, raw),) if raw != reply.text else ()
    if not raw.strip():
        return Outcome("", 0, plan, reply, Trimmed("", trace=gated))
    trimmed = trim(plan.request.language, *plan.region, raw, plan.span)
    trimmed = dataclasses.replace(trimmed, trace=gated + trimmed.trace)
    (_, _), (end_line, end_char) = trimmed.replace_range
    return Outcome(trimmed.text, end_char if end_line == 0 and trimmed.text else 0, plan, reply, trimmed)


async def finish(plan: Plan, fill: Fill) -> Outcome:
    if plan.canvas <= 0:
        return Outcome("", 0, plan, None, None)
    return shape(plan, await fill(plan.fill_request()))


async def complete(request: Request, fill: Fill, windows: ContextWindows | None = None) -> Outcome:
    return await finish(plan(request, windows), fill)
