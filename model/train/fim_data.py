"""Fill-in-the-middle training examples, with middles cut the way completions are asked for.

A hole in a source file is chosen by one of these kinds:
- `rest_of_line`: the cursor inside a line, the middle is the rest of that line;
- `lines`: one or more whole lines (with their newlines), the cursor at the line start or after
  the indentation;
- `block`: the body of a compound statement or definition (tree-sitter `block`), as when the
  cursor sits under `def f(...):`;
- `node`: a syntax-aligned span, any named tree-sitter node (call, argument list, condition...);
- `chars`: a random character span (may cut tokens and lines);
- `empty`: nothing to insert (teaches the model to stop at once).

An example is the encoder prompt `<|fim_prefix|>` prefix `<|fim_suffix|>` suffix `<|fim_middle|>`
(prefix cut from the left, suffix from the right, to token budgets) and a canvas of a given length:
the middle's tokens, `<eos>`, then `<pad>` to the end.
"""
import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from diffill.model.engine.tokenizer import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SPECIALS, FIM_SUFFIX, MASK, PAD

KINDS = {"rest_of_line": 0.25, "lines": 0.25, "block": 0.15, "node": 0.17, "chars": 0.15, "empty": 0.03}
CANVAS_LENGTHS = (32, 48, 64, 96, 128, 192, 256)
WINDOW_CHARS = 6000           # text around the hole that is parsed and tokenised
LINES_MEAN, MAX_LINES = 2.5, 30   # a `lines` hole: 1 + Exp(mean LINES_MEAN) lines, at most MAX_LINES
CHARS_MEAN = 60               # a `chars` hole: 1 + Exp(mean CHARS_MEAN) characters
INDENT_CURSOR = 0.5           # `lines` and `block` holes start after the indentation this often
NO_SUFFIX = 0.08              # the cursor at the end of the file: nothing after it


@functools.cache
def _parser():
    """tree-sitter's Python parser, imported when first needed (the pre-tokenized path runs without)."""
    import tree_sitter_python
    from tree_sitter import Language, Parser
    return Parser(Language(tree_sitter_python.language()))


@dataclass
class Hole:
    prefix: str
    middle: str
    suffix: str
    kind: str


@dataclass
class Example:
    prompt: list[int]           # [P] <|fim_prefix|> ... <|fim_middle|>
    canvas: list[int]           # [C] middle, <eos>, <pad>...
    middle_tokens: int
    kind: str


# ---------------------------------------------------------------- holes (characters)

def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def rest_of_line(text: str, rng: random.Random, max_chars: int) -> tuple[int, int] | None:
    lines = text.split("\n")
    starts = _line_starts(text)
    candidates = [i for i, line in enumerate(lines) if len(line.strip()) >= 2]
    if not candidates:
        return None
    i = rng.choice(candidates)
    line = lines[i]
    lo, hi = starts[i] + _indent(line), starts[i] + len(line)
    cut = rng.randint(lo, hi - 1)
    return max(cut, hi - max_chars), hi


def whole_lines(text: str, rng: random.Random, max_chars: int) -> tuple[int, int] | None:
    lines = text.split("\n")
    starts = _line_starts(text)
    candidates = [i for i, line in enumerate(lines[:-1]) if line.strip()]
    if not candidates:
        return None
    first = rng.choice(candidates)
    count = min(1 + int(rng.expovariate(1 / LINES_MEAN)), MAX_LINES)
    last = min(first + count, len(lines) - 1)
    start, end = starts[first], starts[last]
    while end - start > max_chars and last > first + 1:
        last -= 1
        end = starts[last]
    if rng.random() < INDENT_CURSOR:          # cursor after the indentation, as editors leave it
        start += _indent(lines[first])
    return start, end


def _nodes(text: str, types: tuple[str, ...] | None):
    tree = _parser().parse(text.encode("utf-8"))
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        if node is tree.root_node or node.has_error or node.start_byte == node.end_byte:
            continue
        if types is None or node.type in types:
            yield node


def _char_offsets(text: str):
    """byte offset -> char offset (tree-sitter reports bytes)."""
    raw = text.encode("utf-8")
    if len(raw) == len(text):
        return lambda b: b
    table, pos = [0] * (len(raw) + 1), 0
    for ci, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        for k in range(n):
            table[pos + k] = ci
        pos += n
    table[len(raw)] = len(text)
    return table.__getitem__


def syntax_block(text: str, rng: random.Random, max_chars: int) -> tuple[int, int] | None:
    to_char = _char_offsets(text)
    spans = [(to_char(n.start_byte), to_char(n.end_byte)) for n in _nodes(text, ("block",))]
    spans = [(s, e) for s, e in spans if 0 < e - s <= max_chars]
    if not spans:
        return None
    start, end = rng.choice(spans)
    if end < len(text) and text[end] == "\n":
        end += 1
    if rng.random() < INDENT_CURSOR:          # from the start of the line, indentation included
        start = text.rfind("\n", 0, start) + 1
    return start, end


def syntax_node(text: str, rng: random.Random, max_chars: int) -> tuple[int, int] | None:
    to_char = _char_offsets(text)
    spans = [(to_char(n.start_byte), to_char(n.end_byte)) for n in _nodes(text, None)]
    spans = [(s, e) for s, e in spans if 0 < e - s <= max_chars]
    if not spans:
        return None
    return rng.choice(spans)


def char_span(text: str, rng: random.Random, max_chars: int) -> tuple[int, int] | None:
    if len(text) < 2:
        return None
    length = min(1 + int(rng.expovariate(1 / CHARS_MEAN)), max_chars, len(text) - 1)
    start = rng.randint(0, len(text) - length)
    return start, start + length


CUTTERS = {"rest_of_line": rest_of_line, "lines": whole_lines, "block": syntax_block,
           "node": syntax_node, "chars": char_span}


def window(text: str, rng: random.Random, size: int = WINDOW_CHARS) -> str:
    """A random stretch of about `size` characters that starts at a line start."""
    if len(text) <= size:
        return text
    start = rng.randint(0, len(text) - size)
    start = text.rfind("\n", 0, start) + 1
    return text[start:start + size]


def choose_hole(text: str, rng: random.Random, max_chars: int, kind: str | None = None) -> Hole:
    """Cut a hole in text; falls back to simpler kinds when the chosen one finds no span."""
    kind = kind or rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    order = [kind] + [k for k in ("lines", "rest_of_line", "chars") if k != kind]
    for k in order:
        if k == "empty":
            cut = rng.randint(0, len(text))
            return Hole(text[:cut], "", text[cut:], "empty")
        span = CUTTERS[k](text, rng, max_chars)
        if span is not None and span[0] < span[1]:
            s, e = span
            return Hole(text[:s], text[s:e], text[e:], k)
    cut = rng.randint(0, len(text))
    return Hole(text[:cut], "", text[cut:], "empty")


# ---------------------------------------------------------------- examples (tokens)

class FimExamples:
    """Turns source texts into tokenised FIM examples for a given canvas length.

    `tokenizer` is a `tokenizers.Tokenizer` (the one saved as tokenizer.json)."""

    def __init__(self, tokenizer, prefix_tokens: int = 256, suffix_tokens: int = 128):
        self.tok = tokenizer
        ids = {name: tokenizer.token_to_id(name) for name in FIM_SPECIALS}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks the special tokens {missing}")
        self.pad, self.eos, self.mask = ids[PAD], ids[EOS], ids[MASK]
        self.fim_prefix, self.fim_suffix, self.fim_middle = ids[FIM_PREFIX], ids[FIM_SUFFIX], ids[FIM_MIDDLE]
        self.prefix_tokens, self.suffix_tokens = prefix_tokens, suffix_tokens

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids if text else []

    def prompt(self, prefix: str, suffix: str) -> list[int]:
        pre = self.encode(prefix[-self.prefix_tokens * 8:])[-self.prefix_tokens:] if self.prefix_tokens else []
        suf = self.encode(suffix[:self.suffix_tokens * 8])[:self.suffix_tokens] if self.suffix_tokens else []
        return [self.fim_prefix, *pre, self.fim_suffix, *suf, self.fim_middle]

    def canvas(self, middle: list[int], canvas_length: int) -> list[int]:
        if len(middle) + 1 > canvas_length:
            raise ValueError(f"middle of {len(middle)} tokens does not fit a canvas of {canvas_length}")
        return middle + [self.eos] + [self.pad] * (canvas_length - len(middle) - 1)

    def example(self, text: str, canvas_length: int, rng: random.Random, kind: str | None = None,
                tries: int = 6) -> Example:
        """One example whose middle fits the canvas; the hole shrinks until it does."""
        text = window(text, rng)
        max_chars = canvas_length * 3
        for _ in range(tries):
            hole = choose_hole(text, rng, max_chars, kind)
            if rng.random() < NO_SUFFIX:      # cursor at the end of the file: nothing after it
                hole.suffix = ""
            middle = self.encode(hole.middle)
            if len(middle) < canvas_length:
                return Example(self.prompt(hole.prefix, hole.suffix), self.canvas(middle, canvas_length), len(middle), hole.kind)
            max_chars = max(8, max_chars // 2)
        hole = choose_hole(text, rng, max_chars, "empty")
        return Example(self.prompt(hole.prefix, hole.suffix), self.canvas([], canvas_length), 0, "empty")


def load_texts(corpus_jsonl: Path) -> list[tuple[str, str]]:
    """(package, text) for every file of a corpus jsonl."""
    with open(corpus_jsonl) as f:
        return [(row["package"], row["text"]) for row in map(json.loads, f)]


def collate(examples: list[Example], pad_id: int):
    """Left-pad prompts (the canvas stays adjacent to the prompt) and stack canvases.
    Returns (prompt [B, P], prompt_pad [B, P] True at padding, canvas [B, C]) as int64 tensors."""
    import torch

    width = max(len(e.prompt) for e in examples)
    prompt = torch.full((len(examples), width), pad_id, dtype=torch.long)
    pad = torch.ones(len(examples), width, dtype=torch.bool)
    for i, e in enumerate(examples):
        prompt[i, width - len(e.prompt):] = torch.tensor(e.prompt)
        pad[i, width - len(e.prompt):] = False
    canvas = torch.tensor([e.canvas for e in examples], dtype=torch.long)
    return prompt, pad, canvas
