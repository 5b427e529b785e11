"""The one completion pipeline (lsp/pipeline/complete.py): window -> span -> fill -> trim, the same for
the server, `diffill complete` and the benchmarks."""
import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffill.lsp.code.span import decide_span
from diffill.lsp.pipeline import complete as pipeline
from diffill.lsp.pipeline.fill import FixedFill
from diffill.lsp.pipeline.windows import ContextWindows
from server_harness import capabilities, editor

ROOT = Path(__file__).resolve().parent.parent

# A function whose docstring is longer than a small context window: a window cut near the cursor
# opens inside the docstring.
LONG = "def f(xs):\n    \"\"\"Sum.\n\n" + "    >>> f([1, 2])\n    3\n" * 80 + "    \"\"\"\n    total = 0\n    "
LONG_TEXT = LONG + "\n    return total\n\n\ndef g():\n    \"\"\"Nothing.\"\"\"\n"


def run(request, fill, windows=None):
    return asyncio.run(pipeline.complete(request, fill, windows))


def test_the_span_is_decided_on_the_document_not_on_a_window_that_starts_inside_a_docstring():
    text, offset = LONG_TEXT, len(LONG)
    plan = pipeline.plan(pipeline.Request(text, offset, "python", 96))
    w = plan.window
    assert '"""' in w.prefix and not w.prefix.startswith("def")  # the window opens inside the docstring
    assert decide_span("python", w.prefix, w.suffix).kind == "none"
    assert plan.span.kind == "statements" and plan.canvas > 0
    prefix, suffix = pipeline.document_region(text, offset, before=100, after=10)
    assert text.endswith(suffix, 0, offset + 10) and prefix.startswith("    ") and len(prefix) <= 100
    assert text[offset - len(prefix) - 1] == "\n"  # a long document's region starts at a line start


@pytest.mark.parametrize("raw,shown", [
    ("total += x\n    total += foo(x,", "total += x"),
    ("for x in xs:\n        total += x\n    total += foo(x,\n", "for x in xs:\n        total += x"),
])
def test_trim_reads_the_document_region_not_a_window_that_starts_inside_a_docstring(raw, shown):
    """The model's window opens inside the docstring; the trim reads the document region, where the
    unfinished call is an error the completion adds, and cuts it."""
    request = pipeline.Request(LONG_TEXT, len(LONG), "python", 96)
    outcome = run(request, FixedFill(raw))
    assert '"""' in outcome.plan.window.prefix and not outcome.plan.window.prefix.startswith("def")
    assert outcome.plan.region[0] == LONG  # the whole document before the cursor
    assert outcome.text == shown


def test_the_fill_gets_the_window_the_span_canvas_and_line_limit():
    fill = FixedFill("a + b")
    text = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
    outcome = run(pipeline.Request(text, text.index("\n\nprint"), "python", 256, doc="a.py", max_steps=7), fill)
    (req,) = fill.requests
    assert (req.prefix, req.suffix) == ("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    assert req.canvas_length == outcome.plan.span.canvas_length == 64 and req.max_lines == 8
    assert (req.doc, req.max_steps, req.language) == ("a.py", 7, "python")
    assert outcome.text == "a + b" and outcome.raw == "a + b"


def test_no_fill_is_asked_where_the_span_wants_nothing():
    fill = FixedFill("x")
    text = 'x = "inside a string"\n'
    outcome = run(pipeline.Request(text, text.index("a string"), "python"), fill)
    assert outcome.text == "" and outcome.reply is None and fill.requests == []


def test_the_trim_trace_names_each_filter_and_what_it_cut():
    text = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
    outcome = run(pipeline.Request(text, text.index("\n\nprint"), "python"), FixedFill("a + b\nprint(add(1, 2))\n"))
    assert outcome.text == "a + b"
    (cut,) = outcome.trimmed.trace
    assert cut.filter == "span_end" and cut.after == "a + b"
    assert str(cut) == "span_end: cut '\\nprint(add(1, 2))\\n'"


def test_the_context_budget_is_the_checkpoints_unless_the_user_sets_one():
    from diffill.lsp.server.completer import Completer
    from diffill.lsp.server.settings import DEFAULTS, parse

    completer = Completer(DEFAULTS, FixedFill())
    assert completer.context_tokens() == pipeline.DEFAULT_CONTEXT_TOKENS  # nothing known yet
    completer.model_context_tokens = 256  # what the embedded checkpoint's config says
    assert completer.context_tokens() == 256
    completer.configure(parse({"contextTokens": 1024})[0])
    assert completer.context_tokens() == 1024
    cfg = json.loads((ROOT / "model" / "embedded" / "config.json").read_text())
    assert cfg["diffill_context_tokens"] == 256


# ---- the same completion from the server, `diffill complete` and bench/fim_eval.py ----------------

POINTS = [  # (text, line, character): 0-based, ASCII
    ("def add(a, b):\n    return \n\nprint(add(1, 2))\n", 1, 11),
    ("import os\n\n\ndef list_files(path):\n    names = []\n    for name in os.listdir(path):\n        \n"
     "    return names\n", 6, 8),
    ("def is_even(n):\n    if n % 2 == 0:\n        return True\n    return \n", 3, 11),
    (LONG_TEXT, LONG.count("\n"), 4),  # deep in a long function, below a long docstring
]


def _offset(text, line, character):
    return sum(len(x) + 1 for x in text.split("\n")[:line]) + character


@pytest.fixture(scope="module")
def server_answers():
    """What the real server (the embedded model in its worker, default settings) shows at POINTS."""
    async def ask():
        shown = []
        async with editor({"workerMode": "private", "debounceMs": 0}, capabilities()) as s:
            for i, (text, line, character) in enumerate(POINTS):
                uri = f"file:///project/p{i}.py"
                s.open(uri, text)
                result = await s.inline(uri, line, character)
                shown.append(result.items[0].insert_text if result is not None else "")
        return shown
    return asyncio.run(ask())


def test_the_server_the_cli_and_fim_eval_give_the_same_completion(server_answers, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import fim_eval

    from diffill.lsp.cli.in_process import context_tokens_of
    from diffill.model import load_model
    from diffill.model.engine.default import default_model_path

    model = load_model(default_model_path().path)
    bench = fim_eval.ServerPath(model, context_tokens_of(model), None)
    raws = []
    for i, (text, line, character) in enumerate(POINTS):
        f = tmp_path / f"p{i}.py"
        f.write_text(text)
        cli = subprocess.run([sys.executable, "-m", "diffill.lsp.cli", "complete", f"{f}:{line + 1}:{character + 1}",
                              "--json"], capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        offset = _offset(text, line, character)
        b = bench.complete(text[:offset], text[offset:])
        raws.append(b["raw"])
        assert json.loads(cli.stdout)["text"] == b["text"] == server_answers[i], (i, b["raw"])
    assert any(raws), "the model wrote nothing at any point: the comparison would be vacuous"


# ---- the confidence gate -----------------------------------------------------------------------

def test_lines_the_model_was_unsure_of_are_cut_from_the_end():
    from diffill.lsp.pipeline.confidence_gate import keep
    text = "for x in xs:\n    total += x\n    junk junk"
    assert keep(text, (0.9, 0.8, 0.1), 0.5) == "for x in xs:\n    total += x"
    assert keep(text, (0.2, 0.9, 0.9), 0.5) == ""
    assert keep(text, (0.9, 0.9, 0.9), 0.5) == text
    assert keep(text, None, 0.5) == text  # a fill that does not say passes
    assert keep(text, (0.1, 0.1, 0.1), 0.0) == text  # threshold 0: the gate is off


def test_the_pipeline_applies_the_confidence_gate_before_the_trim_and_traces_it():
    from diffill.lsp.pipeline.fill import FillReply

    class Unsure(FixedFill):
        async def __call__(self, request):
            return FillReply("y = 1\n    for i in x:\n        y += i\n    return y",
                             line_confidence=(0.9, 0.8, 0.05, 0.9))

    text = "def f(x):\n    \n\n\nprint(f(1))\n"
    outcome = run(pipeline.Request(text, text.index("\n", 10), "python", min_confidence=0.3), Unsure())
    assert outcome.text.startswith("y = 1") and "y += i" not in outcome.text
    assert outcome.trimmed.trace[0].filter == "confidence_gate"
    assert outcome.trimmed.trace[0].after == "y = 1\n    for i in x:"
    refused = run(pipeline.Request(text, text.index("\n", 10), "python", min_confidence=0.95), Unsure())
    assert refused.text == "" and refused.raw.startswith("y = 1")
