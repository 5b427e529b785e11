"""The language gate: no completion in a language the checkpoint was not trained for.

A checkpoint names its languages in config.json (`diffill_languages`, canonical ids such as
"python"); one that names none (DiffusionGemma) takes every language. The user may force others
(setting `forceLanguages`, `["*"]` for all).
"""
from __future__ import annotations

from diffill.lsp.code.syntax import canonical_language


def refusal(language: str, model_languages, forced=()) -> str | None:
    """Why the gate refuses `language`, or None when it may be completed."""
    if not model_languages:
        return None
    lang = canonical_language(language)
    forced = {canonical_language(x) for x in forced or ()}
    if lang in {canonical_language(x) for x in model_languages} or lang in forced or "*" in forced:
        return None
    return (f"the model was trained for {', '.join(model_languages)} only, not {lang or 'this language'}; "
            f"no completions here (the setting forceLanguages: [\"{lang}\"] turns them on)")
