"""A corpus tokenised once, with the places a hole may start or end, for batches made on the device.

Each file is tokenised whole (`tokens`, `file_tok` offsets). A hole's prompt and middle must be
tokenised as the product tokenises them: prefix, suffix and middle each on its own
(`FimExamples.encode`, `build_prompt`). The byte-level pre-tokenizer splits text into chunks (words
with their leading space, punctuation runs, whitespace runs such as "\\n   "); a cut at a chunk
boundary leaves every chunk, so the whole file's tokens on either side are what the parts give on
their own. A cut inside a chunk (a line start inside "\\n   ", the cursor after the indentation
inside " return") changes the chunks next to it only. A `Cut` stores that fix: the prefix up to the
cut is the file's tokens before token `a` plus `tail`, and the text from the cut on is `head` plus
the file's tokens from token `b` on. A plain chunk boundary at token t is a = b = t, nothing else.

Per file this keeps, as global cut ids: every line's start, its start after the indentation and its
content end (`lines`), tree-sitter blocks (start after the indentation or at the line start, end at
the next line's start, as `fim_data.syntax_block` cuts them) and up to MAX_NODES named nodes
(`fim_data.syntax_node`). Chunk starts are listed (`chunk_pos`) for cuts drawn anywhere (the rest
of a line, random spans, empty holes).
"""
import bisect
import json
import random
from dataclasses import dataclass, fields
from multiprocessing import get_context
from pathlib import Path

import torch

from diffill.model.train.corpus import is_held_out
from diffill.model.train.fim_data import _char_offsets, _nodes

MAX_FIX = 6            # tokens in a cut's tail or head; a cut that needs more is not used
MAX_NODES = 200        # named nodes kept per file (a seeded sample)
MAX_BLOCKS = 200


@dataclass
class PreTokenized:
    tokens: torch.Tensor        # [N] int32, every file's tokens one after another
    file_tok: torch.Tensor      # [F+1] int64 token offsets
    file_chars: torch.Tensor    # [F] int64 characters per file
    file_package: torch.Tensor  # [F] int64 package index
    file_held: torch.Tensor     # [F] bool: held out of training (corpus.is_held_out)
    chunk_pos: torch.Tensor     # [Nc] int64 sorted global token indices that start a pre-tokenizer chunk
    cut_a: torch.Tensor         # [K] int64 global token index: the prefix keeps tokens before it
    cut_b: torch.Tensor         # [K] int64 the text after the cut resumes with the file's tokens here
    cut_tail: torch.Tensor      # [K, MAX_FIX] int32 tokens that end the prefix (left-aligned)
    cut_tail_n: torch.Tensor    # [K] int64
    cut_head: torch.Tensor      # [K, MAX_FIX] int32 tokens that start the text after the cut
    cut_head_n: torch.Tensor    # [K] int64
    line_start: torch.Tensor    # [NL] cut id of the line start
    line_indent: torch.Tensor   # [NL] cut id after the indentation
    line_end: torch.Tensor      # [NL] cut id of the content end (before the newline)
    line_content: torch.Tensor  # [NL] bool: the line has at least 2 non-space characters
    file_line: torch.Tensor     # [F+1] int64 offsets into the line arrays
    block_start: torch.Tensor   # [NB] cut id (after the indentation, or the node's start)
    block_line: torch.Tensor    # [NB] cut id of the start of the block's first line
    block_end: torch.Tensor     # [NB] cut id
    file_block: torch.Tensor    # [F+1]
    node_start: torch.Tensor    # [NN] cut id
    node_end: torch.Tensor      # [NN] cut id
    file_node: torch.Tensor     # [F+1]
    packages: list

    def to(self, device) -> "PreTokenized":
        return PreTokenized(**{f.name: (getattr(self, f.name).to(device) if f.name != "packages" else self.packages)
                               for f in fields(self)})

    def save(self, path: Path):
        torch.save({f.name: getattr(self, f.name) for f in fields(self)}, path)

    @classmethod
    def load(cls, path: Path) -> "PreTokenized":
        return cls(**torch.load(path, weights_only=False))

    @property
    def files(self) -> int:
        return len(self.file_chars)


# ---------------------------------------------------------------- one file (CPU)

class _FileCuts:
    """Cuts of one text: chunk boundaries from the pre-tokenizer, fixes for cuts inside chunks."""

    def __init__(self, text: str, tok, cache: dict):
        self.text, self.tok, self.cache = text, tok, cache
        chunks = tok.pre_tokenizer.pre_tokenize_str(text)
        self.chunk_span = [span for _, span in chunks]
        enc = tok.encode(text, add_special_tokens=False)
        self.ids = enc.ids
        # the first token of each chunk (tokens never cross a chunk)
        starts = {s: j for j, (s, _) in enumerate(self.chunk_span)}
        self.chunk_first_tok = [0] * (len(chunks) + 1)
        self.chunk_first_tok[-1] = len(self.ids)
        seen = set()
        for t, (s, _) in enumerate(enc.offsets):
            j = starts.get(s)
            if j is not None and j not in seen:
                seen.add(j)
                self.chunk_first_tok[j] = t
        self.ok = len(seen) == len(chunks)          # offsets line up with chunks (else skip the file)
        self.chunk_starts = [s for s, _ in self.chunk_span]
        self.cuts: list[tuple] = []
        self.index: dict[int, int] = {}

    def _space(self, j: int) -> bool:
        s, e = self.chunk_span[j]
        return self.text[s:e].isspace()

    def plain(self, j: int) -> bool:
        """A cut before chunk j leaves the tokens on both sides as they are: not so after a
        whitespace chunk, as whitespace chunks split by what follows them merge at the end of a text."""
        return j == 0 or j >= len(self.chunk_span) or not self._space(j - 1)

    def _resync(self, c: int, j: int, ahead: int = 3) -> int:
        """The first chunk after chunk j (which holds c) where the text from c, pre-tokenised on its
        own, meets the file's chunks again (a quote cut off its word may join the next as "'s");
        -1 if not within `ahead` chunks."""
        last = min(j + ahead, len(self.chunk_span) - 1)
        own = {c + e for _, (_, e) in self.tok.pre_tokenizer.pre_tokenize_str(self.text[c:self.chunk_span[last][1]])}
        for k in range(j + 1, last + 1):
            if self.chunk_starts[k] in own:
                return k
        return len(self.chunk_span) if last == len(self.chunk_span) - 1 and len(self.text) in own else -1

    def _encode(self, s: str) -> list[int]:
        ids = self.cache.get(s)
        if ids is None:
            ids = self.cache[s] = self.tok.encode(s, add_special_tokens=False).ids if s else []
        return ids

    def cut(self, c: int) -> int:
        """The local id of the cut at character c (-1 when its fix is too long)."""
        if c in self.index:
            return self.index[c]
        j = bisect.bisect_right(self.chunk_starts, c) - 1
        boundary = c == len(self.text) or self.chunk_span[j][0] == c
        if boundary:
            j = len(self.chunk_span) if c == len(self.text) else j
        if boundary and self.plain(j):
            t = self.chunk_first_tok[j]
            rec = (t, t, [], [])
        else:
            # the prefix's end is re-tokenised from the first of the whitespace chunks before the
            # cut's chunk (a whitespace run at the end of a text is one chunk); the text after the
            # cut resumes with the file's tokens at the next chunk
            anchor = j if not boundary else j - 1
            while anchor > 0 and self._space(anchor - 1):
                anchor -= 1
            tail = self._encode(self.text[self.chunk_span[anchor][0]:c])
            resume = j if boundary else self._resync(c, j)
            head = self._encode(self.text[c:self.chunk_starts[resume]]) if resume < len(self.chunk_span) else \
                self._encode(self.text[c:])
            rec = (self.chunk_first_tok[anchor], self.chunk_first_tok[resume], tail, head)
            if resume < 0 or len(tail) > MAX_FIX or len(head) > MAX_FIX:
                self.index[c] = -1
                return -1
        self.index[c] = len(self.cuts)
        self.cuts.append(rec)
        return self.index[c]


def syntax_available() -> bool:
    """Whether tree-sitter's Python grammar is installed (without it, no block or node cuts)."""
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in ("tree_sitter", "tree_sitter_python"))


def _file_tables(text: str, tok, cache: dict, seed: int, syntax: bool = True) -> dict | None:
    fc = _FileCuts(text, tok, cache)
    if not fc.ok or not fc.ids:
        return None
    lines, pos = [], 0
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        lines.append((fc.cut(pos), fc.cut(pos + indent), fc.cut(pos + len(line)), len(line.strip()) >= 2))
        pos += len(line) + 1
    line_starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            line_starts.append(i + 1)
    rng = random.Random(f"{seed}:{len(text)}:{text[:64]}")
    to_char = _char_offsets(text)
    blocks, nodes = [], []
    for node in _nodes(text, None) if syntax else ():
        s, e = to_char(node.start_byte), to_char(node.end_byte)
        if node.type == "block":
            line_start = text.rfind("\n", 0, s) + 1
            end = e + 1 if e < len(text) and text[e] == "\n" else e
            blocks.append((s, line_start, end))
        nodes.append((s, e))
    blocks = rng.sample(blocks, MAX_BLOCKS) if len(blocks) > MAX_BLOCKS else blocks
    nodes = rng.sample(nodes, MAX_NODES) if len(nodes) > MAX_NODES else nodes
    blocks = [(fc.cut(s), fc.cut(l), fc.cut(e)) for s, l, e in blocks]
    nodes = [(fc.cut(s), fc.cut(e)) for s, e in nodes]
    chunk_toks = [fc.chunk_first_tok[j] for j in range(len(fc.chunk_span)) if fc.plain(j)]
    return {"ids": fc.ids, "chunks": chunk_toks, "cuts": fc.cuts, "lines": lines,
            "blocks": [b for b in blocks if min(b) >= 0], "nodes": [n for n in nodes if min(n) >= 0]}


_WORKER = {}


def _init(tokenizer_file: str):
    from tokenizers import Tokenizer
    _WORKER["tok"] = Tokenizer.from_file(tokenizer_file)
    _WORKER["cache"] = {}
    _WORKER["syntax"] = syntax_available()


def _work(args):
    text, seed = args
    return _file_tables(text, _WORKER["tok"], _WORKER["cache"], seed, _WORKER["syntax"])


# ---------------------------------------------------------------- the corpus

def build(corpus_jsonl: Path, tokenizer_file: Path, workers: int = 1, seed: int = 0,
          max_files: int | None = None, log=None) -> PreTokenized:
    """Tokenise every file of a corpus jsonl with its cut tables; files are kept in corpus order,
    so the result does not depend on `workers`."""
    rows = []
    with open(corpus_jsonl) as f:
        for line in f:
            row = json.loads(line)
            rows.append((row["package"], row["text"]))
            if max_files and len(rows) >= max_files:
                break
    jobs = [(text, seed) for _, text in rows]
    if workers > 1:
        with get_context("fork").Pool(workers, _init, (str(tokenizer_file),)) as pool:
            tables = pool.map(_work, jobs, chunksize=16)
    else:
        _init(str(tokenizer_file))
        tables = [_work(j) for j in jobs]
    packages = sorted({p for p, _ in rows})
    pkg_index = {p: i for i, p in enumerate(packages)}
    out = {k: [] for k in ("tokens", "chunk", "a", "b", "tail", "tail_n", "head", "head_n", "ls", "li", "le",
                           "lc", "bs", "bl", "be", "ns", "ne")}
    file_tok, file_line, file_block, file_node = [0], [0], [0], [0]
    chars, package, held = [], [], []
    ntok = ncut = 0
    for (pkg, text), t in zip(rows, tables):
        if t is None:
            continue
        out["tokens"].extend(t["ids"])
        out["chunk"].extend(ntok + c for c in t["chunks"])
        for a, b, tail, head in t["cuts"]:
            out["a"].append(ntok + a)
            out["b"].append(ntok + b)
            out["tail"].append(tail + [0] * (MAX_FIX - len(tail)))
            out["tail_n"].append(len(tail))
            out["head"].append(head + [0] * (MAX_FIX - len(head)))
            out["head_n"].append(len(head))
        for ls, li, le, content in t["lines"]:
            out["ls"].append(ncut + ls if ls >= 0 else -1)
            out["li"].append(ncut + li if li >= 0 else -1)
            out["le"].append(ncut + le if le >= 0 else -1)
            out["lc"].append(content and min(ls, li, le) >= 0)
        for s, l, e in t["blocks"]:
            out["bs"].append(ncut + s)
            out["bl"].append(ncut + l)
            out["be"].append(ncut + e)
        for s, e in t["nodes"]:
            out["ns"].append(ncut + s)
            out["ne"].append(ncut + e)
        ntok += len(t["ids"])
        ncut += len(t["cuts"])
        file_tok.append(ntok)
        file_line.append(len(out["ls"]))
        file_block.append(len(out["bs"]))
        file_node.append(len(out["ns"]))
        chars.append(len(text))
        package.append(pkg_index[pkg])
        held.append(is_held_out(text))
    if log and not syntax_available():
        log("tree-sitter's Python grammar is not installed: no block or node holes (they fall back to lines)")
    if log:
        log(f"pre-tokenized {len(chars)} files: {ntok:,} tokens, {ncut:,} cuts, {len(out['ls']):,} lines, "
            f"{len(out['bs']):,} blocks, {len(out['ns']):,} nodes")
    L = lambda xs, dt=torch.int64: torch.tensor(xs, dtype=dt)
    fix = lambda xs: torch.tensor(xs, dtype=torch.int32).reshape(-1, MAX_FIX)
    return PreTokenized(
        tokens=L(out["tokens"], torch.int32), file_tok=L(file_tok), file_chars=L(chars), file_package=L(package),
        file_held=L(held, torch.bool), chunk_pos=L(out["chunk"]), cut_a=L(out["a"]), cut_b=L(out["b"]),
        cut_tail=fix(out["tail"]), cut_tail_n=L(out["tail_n"]), cut_head=fix(out["head"]), cut_head_n=L(out["head_n"]),
        line_start=L(out["ls"]), line_indent=L(out["li"]), line_end=L(out["le"]), line_content=L(out["lc"], torch.bool),
        file_line=L(file_line), block_start=L(out["bs"]), block_line=L(out["bl"]), block_end=L(out["be"]),
        file_block=L(file_block), node_start=L(out["ns"]), node_end=L(out["ne"]), file_node=L(file_node),
        packages=packages)
