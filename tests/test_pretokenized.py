"""The pre-tokenized corpus: cuts whose two sides are the tokens the product gets for each part alone."""
import json
import sysconfig
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from diffill.model.train import pretokenized as PT
from diffill.model.train.corpus import is_held_out, read_text
from diffill.model.train.fim_data import _char_offsets, _nodes

TOKENIZER = Path(__file__).resolve().parent.parent / "model" / "embedded" / "tokenizer.json"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
FILES = ("bisect.py", "heapq.py", "colorsys.py", "glob.py", "textwrap.py", "shlex.py", "fnmatch.py")


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_file(str(TOKENIZER))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt") / "clean.jsonl"
    path.write_text("".join(json.dumps({"package": f"p{i % 3}", "path": n, "text": read_text(STDLIB / n),
                                        "version": "1", "license": "PSF-2.0"}) + "\n" for i, n in enumerate(FILES)))
    return path


def _enc(tok, s):
    return tok.encode(s, add_special_tokens=False).ids if s else []


def _positions(text):
    """Line starts, positions after the indentation, line ends, and syntax node edges."""
    out, pos = set(), 0
    for line in text.split("\n"):
        out |= {pos, pos + len(line) - len(line.lstrip(" ")), pos + len(line)}
        pos += len(line) + 1
    to_char = _char_offsets(text)
    for node in _nodes(text, None):
        out |= {to_char(node.start_byte), to_char(node.end_byte)}
    return sorted(c for c in out if c <= len(text))


def _excerpt(name, chars=5000):
    text = read_text(STDLIB / name)
    return text[:text.rfind("\n", 0, chars) + 1]


@pytest.mark.parametrize("name", ["shlex.py", "textwrap.py", "colorsys.py"])   # shlex: non-ASCII letters
def test_a_cut_gives_each_side_the_tokens_it_gets_tokenised_on_its_own(tok, name):
    text = _excerpt(name)
    fc = PT._FileCuts(text, tok, {})
    assert fc.ok
    checked = 0
    for c in _positions(text):
        i = fc.cut(c)
        if i < 0:
            continue
        a, b, tail, head = fc.cuts[i]
        assert fc.ids[:a] + tail == _enc(tok, text[:c]), (c, text[max(0, c - 20):c + 20])
        assert head + fc.ids[b:] == _enc(tok, text[c:]), (c, text[max(0, c - 20):c + 20])
        checked += 1
    assert checked > 0.97 * len(_positions(text))      # only cuts needing more than MAX_FIX tokens are left out


def test_listed_chunk_starts_are_cuts_that_need_no_fix(tok):
    text = _excerpt("textwrap.py")
    fc = PT._FileCuts(text, tok, {})
    table = PT._file_tables(text, tok, {}, seed=0)
    starts = {fc.chunk_first_tok[j]: fc.chunk_span[j][0] for j in range(len(fc.chunk_span))}
    for t in table["chunks"][::3]:
        c = starts[t]
        assert _enc(tok, text[:c]) == fc.ids[:t] and _enc(tok, text[c:]) == fc.ids[t:]


def test_files_lie_one_after_another_with_their_lines_blocks_and_nodes(corpus, tok):
    pt = PT.build(corpus, TOKENIZER)
    assert pt.files == len(FILES) and pt.packages == ["p0", "p1", "p2"]
    texts = [json.loads(line)["text"] for line in open(corpus)]
    for f, text in enumerate(texts):
        lo, hi = int(pt.file_tok[f]), int(pt.file_tok[f + 1])
        assert pt.tokens[lo:hi].tolist() == _enc(tok, text)
        assert int(pt.file_line[f + 1] - pt.file_line[f]) == text.count("\n") + 1
        assert pt.file_held[f] == is_held_out(text)
        content = pt.line_content[pt.file_line[f]:pt.file_line[f + 1]].tolist()
        expected = [len(line.strip()) >= 2 for line in text.split("\n")]
        assert all(e for c, e in zip(content, expected) if c) and sum(content) >= 0.97 * sum(expected)
        for table in ("line_start", "line_indent", "line_end"):   # a file's cuts point into that file
            ids = getattr(pt, table)[pt.file_line[f]:pt.file_line[f + 1]]
            ids = ids[ids >= 0]
            assert ((pt.cut_a[ids] >= lo) & (pt.cut_b[ids] <= hi)).all()
    assert (pt.file_block[1:] > pt.file_block[:-1]).all() and (pt.file_node[1:] > pt.file_node[:-1]).all()
    assert torch.equal(pt.chunk_pos, pt.chunk_pos.sort().values)


def test_the_tables_do_not_depend_on_the_number_of_workers(corpus, tmp_path):
    one, two = PT.build(corpus, TOKENIZER, workers=1), PT.build(corpus, TOKENIZER, workers=2)
    one.save(tmp_path / "pt.pt")
    again = PT.PreTokenized.load(tmp_path / "pt.pt")
    for field in ("tokens", "chunk_pos", "cut_a", "cut_b", "cut_tail", "cut_head", "line_start", "block_end", "node_start"):
        assert torch.equal(getattr(one, field), getattr(two, field)), field
        assert torch.equal(getattr(one, field), getattr(again, field)), field
