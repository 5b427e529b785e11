"""The language gate: a checkpoint trained for some languages gets no completion in others."""
import asyncio
import json
from pathlib import Path

from diffill.lsp.pipeline import complete as pipeline
from diffill.lsp.pipeline.fill import FixedFill
from diffill.lsp.pipeline.language_gate import refusal
from diffill.lsp.server.completer import Completer
from diffill.lsp.server.documents import Document
from diffill.lsp.server.settings import DEFAULTS, parse

ROOT = Path(__file__).resolve().parent.parent
TS = "function add(a: number, b: number): number {\n    return \n}\n"


def test_a_model_that_names_no_languages_takes_every_language():
    assert refusal("typescript", None) is None and refusal("go", ()) is None


def test_a_python_model_refuses_typescript_and_says_how_to_force_it():
    reason = refusal("typescriptreact", ["python"])
    assert "python" in reason and "tsx" in reason and "forceLanguages" in reason
    assert refusal("python", ["python"]) is None and refusal("py", ["python"]) is None


def test_the_user_can_force_a_language_or_all():
    assert refusal("go", ["python"], ("go",)) is None
    assert refusal("go", ["python"], ("*",)) is None
    assert refusal("rust", ["python"], ("go",)) is not None


def test_a_refused_language_never_reaches_the_fill():
    fill = FixedFill("a + b;")
    r = pipeline.Request(TS, TS.index("\n}"), "typescript", model_languages=("python",))
    outcome = asyncio.run(pipeline.complete(r, fill))
    assert outcome.text == "" and fill.requests == [] and "typescript" in outcome.plan.refused
    forced = asyncio.run(pipeline.complete(
        pipeline.Request(TS, TS.index("\n}"), "typescript", model_languages=("python",), force_languages=("*",)), fill))
    assert forced.text == "a + b;" and len(fill.requests) == 1


def test_the_server_says_why_once_and_the_setting_turns_the_language_on():
    told = []
    completer = Completer(parse({"debounceMs": 0})[0], FixedFill("a + b;"), told.append)
    completer.model_languages = ("python",)
    doc = Document("file:///a.ts", "typescript", 1, TS)

    async def ask():
        return await completer.complete(doc, 1, 11)

    assert asyncio.run(ask()) is None and asyncio.run(ask()) is None
    assert len(told) == 1 and "forceLanguages" in told[0]
    completer.configure(parse({"forceLanguages": ["typescript"]}, completer.settings)[0])
    assert asyncio.run(ask()).text == "a + b;"


def test_the_embedded_model_says_it_knows_python_only():
    cfg = json.loads((ROOT / "model" / "embedded" / "config.json").read_text())
    assert cfg["diffill_languages"] == ["python"]
    assert DEFAULTS.force_languages == ()
