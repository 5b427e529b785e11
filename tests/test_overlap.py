"""Decontamination: corpus files sharing a 13-gram with evaluation programs are dropped."""
import gzip
import json

import numpy as np

from diffill.model.train.overlap import check, contains_any, ngram_hashes

SOLUTION = ('def has_close_elements(numbers, threshold):\n    for idx, elem in enumerate(numbers):\n'
            '        for idx2, elem2 in enumerate(numbers):\n            if idx != idx2:\n'
            '                distance = abs(elem - elem2)\n                if distance < threshold:\n'
            '                    return True\n    return False\n')


def _evaldata(root):
    he = root / "humaneval-infilling"
    he.mkdir(parents=True)
    row = {"task_id": "SingleLineInfilling/HumanEval/0/L0", "prompt": SOLUTION[:60],
           "canonical_solution": SOLUTION[60:120], "suffix": SOLUTION[120:], "test": "", "entry_point": "f"}
    with gzip.open(he / "HumanEval-SingleLineInfilling.jsonl.gz", "wt") as f:
        f.write(json.dumps(row) + "\n")
    (root / "safim").mkdir()
    with gzip.open(root / "safim" / "block_completion.jsonl.gz", "wt") as f:
        f.write(json.dumps({"task_id": "b0", "eval_prompt": "import sys\n{{completion}}\n",
                            "ground_truth": "print(sum(int(x) for x in sys.stdin.read().split()) * 2 + 1 - 1)"}) + "\n")
    (root / "santacoder-fim").mkdir()
    with gzip.open(root / "santacoder-fim" / "santacoder-fim-task.jsonl.gz", "wt") as f:
        f.write(json.dumps({"name": "s0", "prompt": "x = 1\n", "canonical_solution": "y = 2", "suffix": "\n"}) + "\n")
    return root


def test_ngram_hashes_are_order_sensitive_and_whitespace_insensitive():
    a = ngram_hashes("a b c d", n=3)
    assert len(a) == 2
    assert (ngram_hashes("a  b\n c\td", n=3) == a).all()
    assert not (ngram_hashes("b a c d", n=3) == a).all()
    assert len(ngram_hashes("a b", n=3)) == 0


def test_contains_any():
    s = np.array([1, 5, 9], dtype=np.uint64)
    assert contains_any(s, np.array([5, 6, 9, 10], dtype=np.uint64)).tolist() == [True, False, True, False]


def test_contaminated_file_is_dropped_and_reported(tmp_path):
    ev = _evaldata(tmp_path / "eval")
    clean = "def unrelated(a, b):\n    return sorted(set(a) | set(b), key=str)\n" * 3
    dirty = "# copied\n" + SOLUTION + "\nprint('x')\n"
    corpus = tmp_path / "files.jsonl"
    corpus.write_text("".join(json.dumps({"package": "p", "path": p, "text": t, "version": "1", "license": "MIT"}) + "\n"
                              for p, t in [("clean.py", clean), ("dirty.py", dirty)]))
    out = tmp_path / "clean.jsonl"
    report = check(corpus, ev, out)
    assert [d["path"] for d in report["dropped"]] == ["dirty.py"]
    assert [json.loads(l)["path"] for l in out.read_text().splitlines()] == ["clean.py"]
    assert report["eval_documents_touched"]["humaneval-infilling"] == {"documents": 1, "sharing_any_ngram": 1}
    assert report["eval_documents_touched"]["safim/block_completion"]["sharing_any_ngram"] == 0
    assert 0 < report["eval_ngram_overlap"] <= 1
