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

import numpy as np
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
        self.chunk_starts = [s for s, _ in self.chunk_span]
        tok_starts = np.array([s for s, _ in enc.offsets], dtype=np.int64)
        first = np.searchsorted(tok_starts, np.array(self.chunk_starts, dtype=np.int64))
        # offsets line up with chunks (else the file is skipped)
        self.ok = bool(len(first) == 0 or (first < len(tok_starts)).all()
                       and (tok_starts[first.clip(max=len(tok_starts) - 1)] == self.chunk_starts).all())
        self.chunk_first_tok = first.tolist() + [len(self.ids)]
        self.space = [text[s:e].isspace() for s, e in self.chunk_span]
        self.cuts: list[tuple] = []
        self.index: dict[int, int] = {}

    def plain(self, j: int) -> bool:
        """A cut before chunk j leaves the tokens on both sides as they are: not so after a
        whitespace chunk, as whitespace chunks split by what follows them merge at the end of a text."""
        return j == 0 or j >= len(self.chunk_span) or not self.space[j - 1]

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
            while anchor > 0 and self.space[anchor - 1]:
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
    fix = np.zeros((len(fc.cuts), 2, MAX_FIX), dtype=np.int32)
    for i, (_, _, tail, head) in enumerate(fc.cuts):
        fix[i, 0, :len(tail)] = tail
        fix[i, 1, :len(head)] = head
    arr = lambda xs, width, dt=np.int64: np.array(xs, dtype=dt).reshape(-1, width)   # noqa: E731
    return {"ids": np.array(fc.ids, dtype=np.int32), "chunks": np.array(chunk_toks, dtype=np.int64),
            "ab": arr([(a, b) for a, b, _, _ in fc.cuts], 2),
            "fix_n": arr([(len(t), len(h)) for _, _, t, h in fc.cuts], 2), "fix": fix,
            "lines": arr([l[:3] for l in lines], 3), "content": np.array([l[3] for l in lines], dtype=bool), "blocks": arr([b for b in blocks if min(b) >= 0], 3),
            "nodes": arr([n for n in nodes if min(n) >= 0], 2)}


_WORKER = {}


def _init(tokenizer_file: str, syntax: bool):
    from tokenizers import Tokenizer
    _WORKER["tok"] = Tokenizer.from_file(tokenizer_file)
    _WORKER["cache"] = {}
    _WORKER["syntax"] = syntax


def _work(args):
    text, seed = args
    return _file_tables(text, _WORKER["tok"], _WORKER["cache"], seed, _WORKER["syntax"])


# ---------------------------------------------------------------- the corpus

def build(corpus_jsonl: Path, tokenizer_file: Path, workers: int = 1, seed: int = 0,
          max_files: int | None = None, log=None, syntax: bool | None = None) -> PreTokenized:
    """Tokenise every file of a corpus jsonl with its cut tables; files are kept in corpus order,
    so the result does not depend on `workers`. syntax: block and node cuts from tree-sitter
    (None: when it is installed)."""
    syntax = syntax_available() if syntax is None else syntax
    rows = []
    with open(corpus_jsonl) as f:
        for line in f:
            row = json.loads(line)
            rows.append((row["package"], row["text"]))
            if max_files and len(rows) >= max_files:
                break
    jobs = [(text, seed) for _, text in rows]
    if workers > 1:
        with get_context("fork").Pool(workers, _init, (str(tokenizer_file), syntax)) as pool:
            tables = pool.map(_work, jobs, chunksize=16)
    else:
        _init(str(tokenizer_file), syntax)
        tables = [_work(j) for j in jobs]
    packages = sorted({p for p, _ in rows})
    pkg_index = {p: i for i, p in enumerate(packages)}
    keep = [(pkg, text, t) for (pkg, text), t in zip(rows, tables) if t is not None]
    n_tok = np.cumsum([0] + [len(t["ids"]) for _, _, t in keep])
    n_cut = np.cumsum([0] + [len(t["ab"]) for _, _, t in keep])

    def cat(key, shift=None, dtype=np.int64, width=()):
        """One table for all files; token positions shifted by the file's first token, cut ids by its first cut
        (a missing cut, -1, stays -1)."""
        parts = []
        for f, (_, _, t) in enumerate(keep):
            x = t[key].astype(dtype, copy=False)
            if shift is not None:
                off = (n_tok if shift == "tok" else n_cut)[f]
                x = np.where(x >= 0, x + off, x) if shift == "cut" else x + off
            parts.append(x)
        if not parts:
            return torch.zeros((0, *width), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)
        return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts)))

    ab, fix_n, fix = cat("ab", "tok", width=(2,)), cat("fix_n", width=(2,)), cat("fix", dtype=np.int32, width=(2, MAX_FIX))
    lines, blocks, nodes = cat("lines", "cut", width=(3,)), cat("blocks", "cut", width=(3,)), cat("nodes", "cut", width=(2,))
    content = cat("content", dtype=bool) & (lines >= 0).all(1)          # and every cut of the line usable
    offsets = lambda key: torch.from_numpy(np.cumsum([0] + [len(t[key]) for _, _, t in keep]))   # noqa: E731
    if log and not syntax:
        log("tree-sitter's Python grammar is not installed: no block or node holes (they fall back to lines)")
    if log:
        log(f"pre-tokenized {len(keep)} files: {int(n_tok[-1]):,} tokens, {int(n_cut[-1]):,} cuts, {len(lines):,} lines, "
            f"{len(blocks):,} blocks, {len(nodes):,} nodes")
    col = lambda x, i: x[:, i].contiguous()   # noqa: E731
    return PreTokenized(
        tokens=cat("ids", dtype=np.int32), file_tok=torch.from_numpy(n_tok), file_chars=torch.tensor([len(t) for _, t, _ in keep]),
        file_package=torch.tensor([pkg_index[p] for p, _, _ in keep], dtype=torch.int64),
        file_held=torch.tensor([is_held_out(t) for _, t, _ in keep], dtype=torch.bool), chunk_pos=cat("chunks", "tok"),
        cut_a=col(ab, 0), cut_b=col(ab, 1), cut_tail=fix[:, 0].contiguous(), cut_tail_n=col(fix_n, 0),
        cut_head=fix[:, 1].contiguous(), cut_head_n=col(fix_n, 1),
        line_start=col(lines, 0), line_indent=col(lines, 1), line_end=col(lines, 2), line_content=content,
        file_line=offsets("lines"), block_start=col(blocks, 0), block_line=col(blocks, 1), block_end=col(blocks, 2),
        file_block=offsets("blocks"), node_start=col(nodes, 0), node_end=col(nodes, 1), file_node=offsets("nodes"),
        packages=packages)
