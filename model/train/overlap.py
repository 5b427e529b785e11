"""N-gram overlap between the training corpus and the evaluation data (decontamination).

An evaluation document is a whole program as the benchmark sees it (prefix + middle + suffix, or
the runnable program with the reference filled in). Text is split into whitespace-separated words
and every run of N words (N = 13 by default, as in the GPT-3 contamination study) is hashed.
A corpus file that shares any N-gram with any evaluation document is contaminated and dropped.
`diffill train` runs `check` when it builds the corpus and ships the report with the model.
"""
import gzip
import json
import zlib
from pathlib import Path

import numpy as np

MULT = np.uint64(0x9E3779B97F4A7C15)


def word_hashes(text: str) -> np.ndarray:
    words = text.split()
    return np.fromiter((zlib.crc32(w.encode("utf-8", "replace")) for w in words), dtype=np.uint64, count=len(words))


def ngram_hashes(text: str, n: int = 13) -> np.ndarray:
    """64-bit hashes of every run of n words, order-sensitive (polynomial rolling hash)."""
    w = word_hashes(text)
    if len(w) < n:
        return np.zeros(0, dtype=np.uint64)
    count = len(w) - n + 1
    acc = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            acc = acc * MULT + w[k:k + count] + np.uint64(k + 1)
    return acc


def _jsonl_gz(path: Path):
    with gzip.open(path, "rt") as f:
        for line in f:
            yield json.loads(line)


def eval_documents(evaldata: Path):
    """(benchmark, task_id, text) for every evaluation program under evaldata."""
    for path in sorted((evaldata / "humaneval-infilling").glob("*.jsonl*")):
        rows = _jsonl_gz(path) if path.suffix == ".gz" else (json.loads(l) for l in open(path))
        for row in rows:
            if "prompt" in row and "canonical_solution" in row:
                yield "humaneval-infilling", row["task_id"], row["prompt"] + row["canonical_solution"] + row.get("suffix", "")
    for path in sorted((evaldata / "safim").glob("*.jsonl.gz")):
        for row in _jsonl_gz(path):
            program = row["eval_prompt"].replace("{{completion}}", row["ground_truth"])
            yield f"safim/{path.name.split('.')[0]}", row["task_id"], program
    for path in sorted((evaldata / "santacoder-fim").glob("*.jsonl.gz")):
        for row in _jsonl_gz(path):
            yield "santacoder-fim", row["name"], row["prompt"] + row["canonical_solution"] + row["suffix"]


def eval_index(evaldata: Path, n: int) -> tuple[np.ndarray, list]:
    """Sorted unique n-gram hashes of all evaluation documents, and the list of documents."""
    docs, parts, seen = [], [], set()
    for bench, task, text in eval_documents(evaldata):
        key = zlib.crc32(text.encode())
        if key in seen:
            continue
        seen.add(key)
        docs.append((bench, task, text))
        parts.append(ngram_hashes(text, n))
    return np.unique(np.concatenate(parts)), docs


def contains_any(sorted_hashes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Boolean mask: which of query are in sorted_hashes."""
    if len(query) == 0 or len(sorted_hashes) == 0:
        return np.zeros(len(query), dtype=bool)
    idx = np.searchsorted(sorted_hashes, query).clip(max=len(sorted_hashes) - 1)
    return sorted_hashes[idx] == query


def check(corpus_jsonl: Path, evaldata: Path, out_jsonl: Path | None = None, n: int = 13) -> dict:
    """Drop corpus files that share an n-gram with evaluation data; report both directions."""
    eval_hashes, docs = eval_index(evaldata, n)
    hit_hashes, dropped, kept, total = [], [], 0, 0
    out = open(out_jsonl, "w") if out_jsonl else None
    try:
        with open(corpus_jsonl) as f:
            for line in f:
                src = json.loads(line)
                total += 1
                h = ngram_hashes(src["text"], n)
                hit = contains_any(eval_hashes, h)
                if hit.any():
                    hit_hashes.append(np.unique(h[hit]))
                    dropped.append({"package": src["package"], "path": src["path"], "shared_ngrams": int(np.unique(h[hit]).size)})
                    continue
                kept += 1
                if out:
                    out.write(line)
    finally:
        if out:
            out.close()
    hits = np.unique(np.concatenate(hit_hashes)) if hit_hashes else np.zeros(0, dtype=np.uint64)
    per_bench: dict[str, list[int]] = {}
    for bench, _, text in docs:
        touched = bool(contains_any(hits, ngram_hashes(text, n)).any())
        row = per_bench.setdefault(bench, [0, 0])
        row[0] += 1
        row[1] += touched
    return {
        "n": n,
        "corpus_files": total,
        "corpus_files_dropped": len(dropped),
        "corpus_files_kept": kept,
        "eval_documents": len(docs),
        "eval_ngrams": int(eval_hashes.size),
        "eval_ngrams_found_in_corpus": int(hits.size),
        "eval_ngram_overlap": float(hits.size / max(eval_hashes.size, 1)),
        "eval_documents_touched": {b: {"documents": d, "sharing_any_ngram": t} for b, (d, t) in sorted(per_bench.items())},
        "dropped": dropped,
    }

