"""FIM training batches made with tensor operations where the pre-tokenized corpus lives (the GPU).

The same kinds of examples as `fim_data.FimExamples` and `loop.make_batch`, drawn in token space
from `pretokenized.PreTokenized`'s cut tables instead of per-file Python:
- a file: package with probability proportional to (its characters)^PACKAGE_ALPHA, then a file of it
  proportional to its length (as `loop.Corpus.draw`); held-out files (`corpus.is_held_out`) only for
  the held-out loss;
- a hole of a kind drawn with `fim_data.KINDS`' weights: `rest_of_line` (cursor after the indentation
  or at a chunk boundary of the line, to its end), `lines` (1 + Exp(LINES_MEAN) whole lines, from the
  line start or after the indentation), `block`, `node`, `chars` (about 1 + Exp(CHARS_MEAN)
  characters between chunk boundaries), `empty`; a kind with no span that fits falls back as
  `fim_data.choose_hole` does: lines, rest_of_line, chars, then empty;
- the canvas length from the list, one per batch; the middle fits it (middle, <eos>, <pad>...);
- the prompt `<|fim_prefix|>` prefix `<|fim_suffix|>` suffix `<|fim_middle|>` with the last
  prefix_tokens and first suffix_tokens tokens, no suffix NO_SUFFIX of the time, left-padded to
  one fixed width.
Cuts fall on pre-tokenizer chunk boundaries or at the stored line and syntax cuts, so a hole never
starts inside a word (fim_data's `chars` and `rest_of_line` may).

Everything random in a batch is drawn from a generator on the device seeded by (seed, step), and
the canvas length from Python's `random` seeded the same way: a batch is a function of its seed and
step. The numbers differ between CPU and CUDA generators.
"""
import math
import random
from dataclasses import dataclass

import torch

from diffill.model.train.corpus import PACKAGE_ALPHA
from diffill.model.train.fim_data import (CANVAS_LENGTHS, CHARS_MEAN, INDENT_CURSOR, KINDS, LINES_MEAN,
                                          MAX_LINES, NO_SUFFIX)
from diffill.model.train.objective import Batch
from diffill.model.train.pretokenized import PreTokenized

KIND_NAMES = list(KINDS)
FALLBACK = ("lines", "rest_of_line", "chars")
TRIES = 4          # spans drawn per row for `block` and `node`; the first that fits is used


@dataclass
class Cuts:
    """One cut per row: the prefix is tokens[..a] + tail, the text after it head + tokens[b..]."""
    a: torch.Tensor
    b: torch.Tensor
    tail: torch.Tensor
    tail_n: torch.Tensor
    head: torch.Tensor
    head_n: torch.Tensor

    def where(self, mask: torch.Tensor, other: "Cuts") -> "Cuts":
        pick = lambda x, y: torch.where(mask.view(-1, *[1] * (x.dim() - 1)), x, y)
        return Cuts(*(pick(getattr(self, k), getattr(other, k)) for k in ("a", "b", "tail", "tail_n", "head", "head_n")))


def file_probabilities(pt: PreTokenized, held: bool, alpha: float = PACKAGE_ALPHA) -> torch.Tensor:
    """P(file) = P(package) * chars(file) / chars(package), P(package) ~ chars(package)^alpha."""
    keep = pt.file_held if held else ~pt.file_held
    chars = pt.file_chars.double() * keep
    pkg_chars = torch.zeros(len(pt.packages), dtype=torch.float64, device=chars.device).index_add_(0, pt.file_package, chars)
    pkg_weight = pkg_chars.pow(alpha) * (pkg_chars > 0)
    p = pkg_weight[pt.file_package] * chars / pkg_chars[pt.file_package].clamp_min(1)
    return (p / p.sum()).float() if p.sum() > 0 else p.float()


class DeviceBatches:
    """`batch(step, batch_size)` -> objective.Batch on pt's device. `fim` gives the special tokens and
    the prefix/suffix budgets (a fim_data.FimExamples)."""

    def __init__(self, pt: PreTokenized, fim, seed: int, canvas_lengths=CANVAS_LENGTHS):
        self.pt, self.seed, self.canvas_lengths = pt, seed, list(canvas_lengths)
        self.device = pt.tokens.device
        self.P, self.S = fim.prefix_tokens, fim.suffix_tokens
        self.width = self.P + self.S + 3
        self.pad, self.eos = fim.pad, fim.eos
        self.fim_prefix, self.fim_suffix, self.fim_middle = fim.fim_prefix, fim.fim_suffix, fim.fim_middle
        self.probs = {False: file_probabilities(pt, False), True: file_probabilities(pt, True)}
        self.kind_weights = torch.tensor(list(KINDS.values()), device=self.device)
        self.g = torch.Generator(device=self.device)
        self.chars_per_token = pt.file_chars.float() / (pt.file_tok[1:] - pt.file_tok[:-1]).clamp_min(1).float()
        self.flat = pt.tokens.long()
        self.zero_fix = torch.zeros(1, pt.cut_tail.shape[1], dtype=torch.long, device=self.device)

    def has_held_out(self) -> bool:
        return bool(self.pt.file_held.any())

    # ------------------------------------------------------------ random draws
    def _u(self, *shape):
        return torch.rand(shape, generator=self.g, device=self.device)

    def _below(self, n: torch.Tensor, *extra) -> torch.Tensor:
        """Uniform integers in [0, n) (0 where n is 0), shape n.shape + extra."""
        u = self._u(*n.shape, *extra)
        n = n.view(*n.shape, *[1] * len(extra))
        return (u * n).long().clamp(min=0).minimum((n - 1).clamp(min=0))

    # ------------------------------------------------------------ cuts
    def _cut(self, ids: torch.Tensor) -> Cuts:
        pt = self.pt
        ids = ids.clamp(min=0)
        return Cuts(pt.cut_a[ids], pt.cut_b[ids], pt.cut_tail[ids].long(), pt.cut_tail_n[ids],
                    pt.cut_head[ids].long(), pt.cut_head_n[ids])

    def _plain(self, t: torch.Tensor) -> Cuts:
        z = torch.zeros_like(t)
        fix = self.zero_fix.expand(len(t), -1)
        return Cuts(t, t, fix, z, fix, z)

    @staticmethod
    def _length(s: Cuts, e: Cuts) -> torch.Tensor:
        return s.head_n + (e.a - s.b) + e.tail_n

    def _fits(self, s: Cuts, e: Cuts, limit: int) -> torch.Tensor:
        n = self._length(s, e)
        return (e.a >= s.b) & (n >= 1) & (n <= limit)

    def _chunk_range(self, lo: torch.Tensor, hi: torch.Tensor):
        """Indices into chunk_pos of the chunk starts in [lo, hi)."""
        return (torch.searchsorted(self.pt.chunk_pos, lo), torch.searchsorted(self.pt.chunk_pos, hi))

    def _random_chunk(self, lo, hi):
        i, j = self._chunk_range(lo, hi)
        k = (i + self._below(j - i)).clamp(max=len(self.pt.chunk_pos) - 1)
        return torch.where(j > i, self.pt.chunk_pos[k], lo), j > i

    # ------------------------------------------------------------ kinds: (start, end, valid)
    def _rest_of_line(self, f, limit):
        pt = self.pt
        first, count = pt.file_line[f], pt.file_line[f + 1] - pt.file_line[f]
        lines = first[:, None] + self._below(count, 8)                            # 8 tries for a line with content
        content = pt.line_content[lines]
        line = lines.gather(1, content.long().argmax(1, keepdim=True)).squeeze(1)
        ok = content.any(1)
        indent, end = self._cut(pt.line_indent[line]), self._cut(pt.line_end[line])
        lo = torch.maximum(indent.b, end.a - limit)
        with_indent = (lo == indent.b) & self._fits(indent, end, limit)
        i, j = self._chunk_range(lo, end.a)
        n = j - i + with_indent.long()
        r = self._below(n)
        take_indent = with_indent & (r == 0)
        k = (i + r - with_indent.long()).clamp(0, len(pt.chunk_pos) - 1)
        start = indent.where(take_indent, self._plain(pt.chunk_pos[k]))
        return start, end, ok & (n > 0) & self._fits(start, end, limit)

    def _lines(self, f, limit):
        pt = self.pt
        first, count = pt.file_line[f], pt.file_line[f + 1] - pt.file_line[f]
        lines = first[:, None] + self._below((count - 1).clamp(min=0), 8)          # never the last line
        content = pt.line_content[lines]
        i = lines.gather(1, content.long().argmax(1, keepdim=True)).squeeze(1)
        ok = content.any(1) & (count > 1)
        k = (1 + (-torch.log1p(-self._u(len(f)) * 0.999999) * LINES_MEAN).long()).clamp(max=MAX_LINES)
        line_start, line_indent = self._cut(pt.line_start[i]), self._cut(pt.line_indent[i])
        start = line_indent.where(self._u(len(f)) < INDENT_CURSOR, line_start)
        steps = torch.arange(1, MAX_LINES + 1, device=self.device)
        last = torch.minimum(i[:, None] + steps, (first + count - 1)[:, None])   # [B, MAX_LINES]
        ends = pt.line_start[last]
        a_end, tail_n = pt.cut_a[ends.clamp(min=0)], pt.cut_tail_n[ends.clamp(min=0)]
        n = start.head_n[:, None] + (a_end - start.b[:, None]) + tail_n
        good = (n <= limit) & (n >= 1) & (a_end >= start.b[:, None]) & (steps <= k[:, None]) & (last > i[:, None])
        pick = torch.where(good, steps, 0).argmax(1)                              # the most lines that fit
        end = self._cut(ends.gather(1, pick[:, None]).squeeze(1))
        return start, end, ok & good.any(1)

    def _spans(self, f, limit, offsets, starts, ends, alt_starts=None):
        count = offsets[f + 1] - offsets[f]
        if len(starts) == 0:
            z = self._plain(self.pt.file_tok[f])
            return z, z, torch.zeros_like(f, dtype=torch.bool)
        idx = (offsets[f][:, None] + self._below(count, TRIES)).clamp(max=len(starts) - 1)   # [B, TRIES]
        s_ids = starts[idx]
        if alt_starts is not None:
            s_ids = torch.where(self._u(*idx.shape) < INDENT_CURSOR, alt_starts[idx], s_ids)
        e_ids = ends[idx]
        s, e = self._cut(s_ids.flatten()), self._cut(e_ids.flatten())
        fits = self._fits(s, e, limit).view(idx.shape) & (count > 0)[:, None]
        pick = fits.long().argmax(1, keepdim=True)
        s_id, e_id = s_ids.gather(1, pick).squeeze(1), e_ids.gather(1, pick).squeeze(1)
        return self._cut(s_id), self._cut(e_id), fits.any(1)

    def _chars(self, f, limit):
        pt = self.pt
        lo, hi = pt.file_tok[f], pt.file_tok[f + 1]
        chars = 1 + (-torch.log1p(-self._u(len(f)) * 0.999999) * CHARS_MEAN)
        length = (chars / self.chars_per_token[f]).round().long().clamp(1, limit)
        start, ok = self._random_chunk(lo, hi)
        target = torch.minimum(start + length, hi)
        j = torch.searchsorted(pt.chunk_pos, target, right=True) - 1          # last chunk start <= target
        end_t = torch.where(target >= hi, hi, pt.chunk_pos[j.clamp(min=0)])
        s, e = self._plain(start), self._plain(end_t)
        return s, e, ok & self._fits(s, e, limit)

    def _empty(self, f):
        lo, hi = self.pt.file_tok[f], self.pt.file_tok[f + 1]
        t, ok = self._random_chunk(lo, hi + 1)     # hi: the end of the file
        t = torch.where(ok, t.minimum(hi), lo)
        c = self._plain(t)
        return c, c

    # ------------------------------------------------------------ assembly
    def _assemble(self, pieces, width: int, right_align: bool, fill: int):
        """Concatenate per-row pieces ("flat", start, n) (tokens of the corpus) or ("small", values [B, m], n)
        into [B, width]; returns (tokens, filled mask)."""
        B = pieces[0][2].shape[0]
        lens = torch.stack([p[2] for p in pieces], 1)                            # [B, n]
        cum = lens.cumsum(1)
        starts = cum - lens
        total = cum[:, -1]
        offset = (width - total) if right_align else torch.zeros_like(total)
        j = torch.arange(width, device=self.device)[None, :] - offset[:, None]   # [B, W]
        piece = (j[:, :, None] >= cum[:, None, :]).sum(-1)
        filled = (j >= 0) & (piece < len(pieces))
        piece = piece.clamp(max=len(pieces) - 1)
        within = (j - starts.gather(1, piece)).clamp(min=0)
        small = [p[1] if p[0] == "small" else torch.zeros(B, 1, dtype=torch.long, device=self.device) for p in pieces]
        widths = torch.tensor([s.shape[1] for s in small], device=self.device)
        buf = torch.cat(small, 1)                                                 # [B, M]
        buf_start = (widths.cumsum(0) - widths)[piece]                            # [B, W]
        is_flat = torch.tensor([p[0] == "flat" for p in pieces], device=self.device)[piece]
        flat_start = torch.stack([p[1] if p[0] == "flat" else torch.zeros(B, dtype=torch.long, device=self.device)
                                  for p in pieces], 1).gather(1, piece)
        from_flat = self.flat[(flat_start + within).clamp(0, len(self.flat) - 1)]
        from_buf = buf.gather(1, (buf_start + within).clamp(max=buf.shape[1] - 1))
        out = torch.where(is_flat, from_flat, from_buf)
        return torch.where(filled, out, torch.full_like(out, fill)), filled

    def _const(self, B, value, n=None):
        v = torch.full((B, 1), value, dtype=torch.long, device=self.device)
        return ("small", v, torch.ones(B, dtype=torch.long, device=self.device) if n is None else n)

    # ------------------------------------------------------------ a batch
    def canvas_length(self, step: int, held_out: bool = False) -> int:
        return random.Random(f"{self.seed}:{step}:{held_out}").choice(self.canvas_lengths)

    def holes(self, step: int, batch_size: int, held_out: bool = False):
        """(files, kind index, start Cuts, end Cuts, canvas length) of one batch."""
        self.g.manual_seed((self.seed * 1_000_003 + step) * 2 + int(held_out))
        C = self.canvas_length(step, held_out)
        limit = C - 1
        B, pt = batch_size, self.pt
        f = torch.multinomial(self.probs[held_out], B, replacement=True, generator=self.g)
        kind = torch.multinomial(self.kind_weights, B, replacement=True, generator=self.g)
        cands = {"rest_of_line": self._rest_of_line(f, limit), "lines": self._lines(f, limit),
                 "block": self._spans(f, limit, pt.file_block, pt.block_start, pt.block_end, pt.block_line),
                 "node": self._spans(f, limit, pt.file_node, pt.node_start, pt.node_end),
                 "chars": self._chars(f, limit)}
        empty = self._empty(f)
        cands["empty"] = (empty[0], empty[1], torch.ones(B, dtype=torch.bool, device=self.device))
        # priority: the drawn kind, then the fallbacks in order, then empty
        prio = torch.full((B, len(KIND_NAMES)), 99, dtype=torch.long, device=self.device)
        for rank, name in enumerate(FALLBACK):
            prio[:, KIND_NAMES.index(name)] = rank + 1
        prio[:, KIND_NAMES.index("empty")] = len(FALLBACK) + 1
        prio.scatter_(1, kind[:, None], 0)
        valid = torch.stack([cands[k][2] for k in KIND_NAMES], 1)
        chosen = torch.where(valid, prio, 1000).argmin(1)
        s, e = cands["empty"][0], cands["empty"][1]
        for i, name in enumerate(KIND_NAMES):
            if name != "empty":
                m = chosen == i
                s, e = cands[name][0].where(m, s), cands[name][1].where(m, e)
        return f, chosen, s, e, C

    def batch(self, step: int, batch_size: int, held_out: bool = False) -> Batch:
        f, kind, s, e, C = self.holes(step, batch_size, held_out)
        B, pt = batch_size, self.pt
        empty = kind == KIND_NAMES.index("empty")
        file_lo, file_hi = pt.file_tok[f], pt.file_tok[f + 1]
        tail_n = s.tail_n.clamp(max=self.P)
        pre_start = torch.maximum(file_lo, s.a - (self.P - tail_n))
        no_suffix = self._u(B) < NO_SUFFIX
        head_n = torch.where(no_suffix, 0, e.head_n.clamp(max=self.S))
        suf_n = torch.where(no_suffix, 0, (file_hi - e.b).clamp(min=0).minimum(self.S - head_n))
        prompt, filled = self._assemble([
            self._const(B, self.fim_prefix), ("flat", pre_start, s.a - pre_start), ("small", s.tail, tail_n),
            self._const(B, self.fim_suffix), ("small", e.head, head_n), ("flat", e.b, suf_n),
            self._const(B, self.fim_middle)], self.width, right_align=True, fill=self.pad)
        zero = torch.zeros(B, dtype=torch.long, device=self.device)
        mid_head = torch.where(empty, zero, s.head_n)
        mid_flat = torch.where(empty, zero, (e.a - s.b).clamp(min=0))
        mid_tail = torch.where(empty, zero, e.tail_n)
        canvas, _ = self._assemble([("small", s.head, mid_head), ("flat", s.b, mid_flat), ("small", e.tail, mid_tail),
                                    self._const(B, self.eos)], C, right_align=False, fill=self.pad)
        return Batch(prompt, ~filled, canvas)
