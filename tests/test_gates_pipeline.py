"""The gates through the one pipeline: junk the embedded model writes is not shown, each gate's cut is
in the trace under its name (and in `diffill complete --explain`), and the confidence gate's default
is calibrated."""
from __future__ import annotations

import asyncio

import pytest

from diffill.lsp.cli.complete import explain
from diffill.lsp.pipeline import complete as pipeline
from diffill.lsp.pipeline import confidence_gate
from diffill.lsp.pipeline.fill import FillReply, FixedFill


def run(text: str, marker: str, answer: str, confidence=None, **kw) -> pipeline.Outcome:
    offset = text.index(marker) + len(marker)

    class Fill(FixedFill):
        async def __call__(self, request):
            self.requests.append(request)
            return FillReply(answer, steps=1, line_confidence=confidence)

    return asyncio.run(pipeline.complete(pipeline.Request(text.replace(marker, ""), offset - len(marker), "python",
                                                          **kw), Fill()))


LOOP = "def total_of(xs):\n    total = 0\n    for x in xs:\n        @\n    return total\n"


@pytest.mark.parametrize("document, raw, shown, gate", [
    (LOOP, "total += return None = None = None:", "", "parse_gate"),
    ("def f(x):\n    y = x * 2\n    ret@\n", "return y", "urn y", "word_at_cursor"),
    ("def f(foo):\n    @\n    return foo\n", "foo = foo = foo = foo = foo = foo = fo", "", "repetition"),
    ("def f(x):\n    @\n    return x\n", "x += 1\n" + "    x += 1\n" * 9, "x += 1", "repetition"),
    ("def f(x):\n    y = x\n    @\n\n\ndef g():\n    pass\n", "return y\n\n    z = 3\n    print(z)\n", "return y", "unreachable"),
    ("def f(a):\n    b = @\n    return b\n", " a * 2", "a * 2", "cursor_spacing"),
])
def test_junk_of_the_kinds_the_embedded_model_writes_is_not_shown(document, raw, shown, gate):
    outcome = run(document, "@", raw)
    assert outcome.text == shown
    assert gate in [cut.filter for cut in outcome.trimmed.trace]
    assert f"{gate}:" in explain(outcome)


def test_a_header_the_completion_writes_is_shown_with_its_body():
    doc = "def main():\n    for@\n\nmain()\n"
    outcome = run(doc, "@", " i in range(10):\n        print(i)\n\n\nmain()\n")
    assert outcome.text == " i in range(10):\n        print(i)"


def test_the_confidence_gate_has_a_calibrated_default():
    assert 0 < confidence_gate.THRESHOLD < 1
    assert pipeline.Request("", 0, "python").min_confidence == confidence_gate.THRESHOLD
    doc = "def f(x):\n    @\n    return y\n"
    sure = run(doc, "@", "y = x * 2", confidence=(0.99,))
    assert sure.text == "y = x * 2"
    unsure = run(doc, "@", "y = x * 2", confidence=(confidence_gate.THRESHOLD / 2,))
    assert unsure.text == "" and unsure.trimmed.trace[0].filter == "confidence_gate"


def test_a_random_weight_model_shows_nearly_nothing(tmp_path):
    pytest.importorskip("torch")
    from diffill.lsp.cli.complete import complete_in_process
    from diffill.model import build_random_checkpoint, load_model

    model = load_model(build_random_checkpoint(tmp_path / "tiny", fim=True, noise="mask", prompt_format="fim",
                                               canvas_length=32))
    docs = [LOOP.replace("@", ""), "def f(a, b):\n    return \n", "import os\n\n\ndef main():\n    path = \n",
            "class A:\n    def f(self):\n        self.\n"]
    offsets = [LOOP.index("@"), docs[1].index("return ") + 7, docs[2].index("= ") + 2, docs[3].index("self.\n") + 5]
    shown = [complete_in_process(model, d, o, "python").text for d, o in zip(docs, offsets)]
    assert sum(bool(s.strip()) for s in shown) == 0, shown


def test_in_an_unterminated_f_string_field_the_completion_closes_the_field_the_string_and_the_call():
    doc = 'def show(d):\n    for k in d:\n        print(f"{k}={@\n    return d\n'
    outcome = run(doc, "@", 'd[k]}")\n    return d\n')
    assert outcome.plan.span.kind == "line"
    assert outcome.text == 'd[k]}")'
