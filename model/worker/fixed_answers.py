"""A worker that answers from a table instead of a model: the deterministic fill behind the real
server, worker and wire that the tests of settings, encodings, caching and lifecycle use.

    DIFFILL_WORKER_FIXED_ANSWERS=answers.json diffill serve

answers.json: {"answers": [{"after": "return ", "text": "a + b"}, ...], "default": "", "step_ms": 0}.
A fill gets the text of the longest `after` that its prefix ends with, else `default`. It "denoises"
for `steps` steps (at most the request's max_steps) of `step_ms` each, honouring cancellation between them.
An answer may set its own "step_ms" (a huge one is a fill that never ends and ignores cancellation,
for the hang tests). No torch is imported.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

ENV = "DIFFILL_WORKER_FIXED_ANSWERS"


@dataclass
class FixedResult:
    text: str
    steps: int
    ms: float
    cancelled: bool
    reused_tokens: int = 0
    encoded_tokens: int = 0


class FixedAnswers:
    """Stands where an `Infiller` stands in the worker (the same `fill` signature)."""

    def __init__(self, path: str):
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        self.default = str(table.get("default", ""))
        self.steps = int(table.get("steps", 4))
        self.step_ms = float(table.get("step_ms", 0))
        self.answers = sorted(((str(a["after"]), str(a["text"]), float(a.get("step_ms", self.step_ms)))
                               for a in table.get("answers", [])), key=lambda a: -len(a[0]))

    def _match(self, prefix: str) -> tuple[str, float]:
        return next(((text, ms) for after, text, ms in self.answers if prefix.endswith(after)),
                    (self.default, self.step_ms))

    def answer(self, prefix: str) -> str:
        return self._match(prefix)[0]

    def fill(self, prefix: str, suffix: str, on_step=None, max_steps=None, **_) -> FixedResult:
        t0 = time.perf_counter()
        text, step_ms = self._match(prefix)
        steps = min(self.steps, max_steps or self.steps)
        for step in range(steps):
            if step_ms:
                time.sleep(step_ms / 1000.0)
            if on_step is not None and on_step(step) is False:
                return FixedResult("", step + 1, (time.perf_counter() - t0) * 1000, True)
        return FixedResult(text, steps, (time.perf_counter() - t0) * 1000, False)
