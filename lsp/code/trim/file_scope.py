"""Filter: a line that belongs at the top of a file ends a completion inside a body.

A model that runs on past the code it was asked for often starts another file: `#include <...>`,
`#pragma GCC optimize(...)`, `package main`, `import java.util.*;`. Inside a function or class
body such a line is an error or never meant (GCC refuses `#pragma GCC optimize` inside a function;
Java, Kotlin, Swift, Go and JavaScript modules take imports only at the top; C# takes `using`
directives only outside types), so the completion ends before the first one that would land inside
a brace: one open at the cursor, or one the completion opened. A C or C++ brace that opens a
namespace or an `extern "C"` block does not count (a header included there is deliberate).
Python, Rust and Scala import anywhere: no rule.
"""
from __future__ import annotations

import re

from diffill.lsp.code.lexing import lex
from diffill.lsp.code.span import open_brackets
from diffill.lsp.code.trim.context import Context

_C = re.compile(r"#\s*(include|import)\b|#\s*pragma\s+(once\b|GCC\s+(optimize|target)\b)")
_JAVA = re.compile(r"(package\s+[\w.]+|import\s+(static\s+)?[\w.]+(\.\*)?)\s*;")
_KOTLIN = re.compile(r"(package|import)\s+[\w.]+(\.\*)?\s*$")
_JS = re.compile(r"import\s+([\w${}\s,*]+\s+from\s+)?['\"]|export\s+[\w${}\s,*]+\s+from\s+['\"]")
_LINE = {
    "c": _C, "cpp": _C, "objective-c": _C, "cuda": _C,
    "java": _JAVA,
    "kotlin": _KOTLIN,
    "swift": re.compile(r"import\s+\w+\s*$"),
    "go": re.compile(r"package\s+\w+\s*$|import\s*(\(|\"|[\w.]+\s+\")"),
    "javascript": _JS, "typescript": _JS, "tsx": _JS,
    "csharp": re.compile(r"using\s+((static\s+)?[\w.]+|\w+\s*=\s*[\w.]+(<[^;]*>)?)\s*;|namespace\s+[\w.]+\s*;"),
}
_SCOPE_BRACE = re.compile(r"\s*(inline\s+)?namespace\b|\s*extern\s+\"C")


def apply(ctx: Context, text: str) -> str:
    rule = _LINE.get(ctx.cursor.language)
    if rule is None:
        return text
    prefix = ctx.cursor.prefix
    braces = [at for b, at in open_brackets(ctx.cursor) if b == "{"]
    if braces and _SCOPE_BRACE.match(prefix[prefix.rfind("\n", 0, braces[-1]) + 1:braces[-1]]):
        braces = []  # at namespace scope: what the innermost brace holds may be anything
    lexed = lex(text, ctx.cursor.language)
    mask, opened, k = lexed.mask, 0, 0
    line_start = 0
    while line_start < len(text):
        end = text.find("\n", line_start)
        end = len(text) if end < 0 else end
        line = text[line_start:end]
        first = line_start + len(line) - len(line.lstrip())
        if (braces or opened > 0) and first < end and mask[first] and rule.match(line.lstrip()):
            return text[:line_start]
        while k < len(lexed.brackets) and lexed.brackets[k].offset < end:
            b = lexed.brackets[k]
            k += 1
            if b.char == "{":
                opened += 1
            elif b.char == "}":
                if opened > 0:
                    opened -= 1
                elif braces:
                    braces.pop()
        line_start = end + 1
    return text
