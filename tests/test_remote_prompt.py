"""The remote client's prompt text is the local engine's chat prompt, token for token."""
from diffill.lsp.wire import prompt_format
from diffill.model.engine.prompt import build_prompt
from diffill.model.engine.tokenizer import TURN_CLOSE, TURN_OPEN, Tokenizer, byte_level_tokenizer

PREFIX = "import os\n\n\ndef total(values):\n    s = 0\n    for v in values:\n        s += "
SUFFIX = "\n    return s\n"


def test_the_chat_text_encodes_to_the_ids_the_local_engine_builds():
    tok = Tokenizer(byte_level_tokenizer([TURN_OPEN, TURN_CLOSE]))
    for language in ("python", None):
        local = build_prompt(tok, "chat", PREFIX, SUFFIX, 32, language).ids
        text = prompt_format.chat_text(PREFIX, SUFFIX, language, bos=True)
        assert tok.encode(text) == local
        # servers add <bos> themselves: the default text leaves it out
        assert [tok.bos_id] + tok.encode(prompt_format.chat_text(PREFIX, SUFFIX, language)) == local


def test_stable_text_comes_first_so_typing_changes_only_the_prompts_tail():
    a = prompt_format.chat_text(PREFIX, SUFFIX, "python")
    b = prompt_format.chat_text(PREFIX + "v", SUFFIX, "python")
    common = len(prompt_format.chat_pieces(PREFIX, SUFFIX, "python").user) + len(TURN_OPEN) + len(PREFIX)
    assert a[:common] == b[:common]
    fim_a, fim_b = prompt_format.fim_text(PREFIX, SUFFIX), prompt_format.fim_text(PREFIX + "v", SUFFIX)
    assert fim_a[: len(prompt_format.FIM_PREFIX) + len(PREFIX)] == fim_b[: len(prompt_format.FIM_PREFIX) + len(PREFIX)]


def test_a_chat_endpoints_answer_loses_its_fence_and_the_repeated_lines():
    answer = "```python\n        s += v\n    return s\n```\nThis adds each value."
    assert prompt_format.chat_answer(answer, PREFIX) == "v\n    return s"
    assert prompt_format.chat_answer("v", PREFIX) == "v"
    assert prompt_format.chat_answer("```\n```", PREFIX) == ""
    assert prompt_format.cut_at_stops("v\n```\nmore") == "v"
