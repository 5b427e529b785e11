"""The training corpus of the embedded model: permissively licensed Python found on this machine.

Sources, nothing downloaded:
- CPython's standard library (PSF-2.0), located through `sysconfig`;
- installed distributions whose license metadata is permissive: every license term is from the
  permissive family below and the principal (first) term is MIT, BSD, Apache or PSF.

Filters, in order: vendored copies (other licenses), tests and test data, files that do not parse,
generated-looking files (huge, very long lines); then exact duplicates (whitespace-normalised hash)
and near duplicates (MinHash over word 5-grams, Jaccard >= 0.8); the first copy seen is kept and
sources are visited in a fixed order (stdlib, then distributions by name), so the result is
reproducible. Decontamination against the evaluation data is `overlap.py`'s job.

`diffill train` builds the corpus when it is missing (`build`) and writes the provenance manifest
(`write_manifest`) beside the model it exports.
"""
import ast
import hashlib
import importlib.metadata
import json
import re
import sys
import sysconfig
import warnings
import zlib
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

PRINCIPAL = ("MIT", "BSD", "APACHE", "PSF", "PYTHON")
PERMISSIVE = PRINCIPAL + ("0BSD", "ISC", "ZLIB", "CC0", "BSL-1.0", "CNRI", "LLVM-EXCEPTION", "HPND", "UNLICENSE")
NOT_PERMISSIVE = ("GPL", "MPL", "EPL", "CDDL", "PROPRIETARY", "COMMERCIAL", "SSPL", "AGPL")
SKIP_DISTRIBUTIONS = {"diffill"}            # the project itself
SKIP_PARTS = {"_vendor", "vendor", "vendored", "_vendored", "test", "tests", "testing_data", "idle_test",
              "site-packages", "lib2to3", "turtledemo", "__pycache__"}
MAX_BYTES = 200_000
MAX_LINE = 300
MIN_BYTES = 64
HOLDOUT = 100                 # one file in HOLDOUT (by the CRC of its text) is held out of training
PACKAGE_ALPHA = 0.5           # training draws a package with probability proportional to (its bytes)^alpha


@dataclass
class Source:
    package: str
    version: str
    license: str
    path: str                     # relative to the package's install root
    text: str


# ---------------------------------------------------------------- licenses

def license_of(meta) -> str:
    """The license string of a distribution's metadata: SPDX expression, License field or classifiers."""
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) < 60:
        return field
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return " AND ".join(classifiers) or field[:60]


def is_permissive(license: str) -> bool:
    """True when every term is permissive and the first one is MIT, BSD, Apache or PSF."""
    terms = [t.strip(" ()").upper() for t in re.split(r"\bAND\b|\bOR\b|,|;", license, flags=re.I) if t.strip(" ()")]
    if not terms:
        return False
    if any(bad in t for t in terms for bad in NOT_PERMISSIVE):
        return False
    if not any(t.startswith(p) or p in t for p in PRINCIPAL for t in terms[:1]):
        return False
    return all(any(p in t for p in PERMISSIVE) for t in terms)


# ---------------------------------------------------------------- sources

def stdlib_sources():
    root = Path(sysconfig.get_paths()["stdlib"])
    version = ".".join(map(str, sys.version_info[:3]))
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        yield "cpython-stdlib", version, "PSF-2.0", root, rel


def distribution_sources(skipped: list):
    dists = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in SKIP_DISTRIBUTIONS:
            dists.setdefault(name.lower(), dist)
    for key in sorted(dists):
        dist = dists[key]
        name, version = dist.metadata["Name"], dist.version
        license = license_of(dist.metadata)
        if not is_permissive(license):
            skipped.append({"package": name, "version": version, "license": license})
            continue
        root = Path(dist.locate_file(""))
        for f in sorted(dist.files or [], key=str):
            if str(f).endswith(".py") and not str(f).startswith(".."):
                yield name, version, license, root, Path(str(f))


def keep_path(rel: Path) -> bool:
    parts = set(rel.parts[:-1])
    name = rel.name
    if parts & SKIP_PARTS or any(p.startswith("test_") or p.endswith("_tests") for p in rel.parts[:-1]):
        return False
    return not (name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py")


def keep_text(text: str) -> bool:
    size = len(text.encode("utf-8", "replace"))
    if not MIN_BYTES <= size <= MAX_BYTES:
        return False
    lines = text.splitlines()
    if max(map(len, lines), default=0) > MAX_LINE or sum(map(len, lines)) / max(len(lines), 1) > 90:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def read_text(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return text.replace("\r\n", "\n").replace("\t", "    ") if "\x00" not in text else None


def _load(job) -> Source | None:
    package, version, license, root, rel = job
    text = read_text(root / rel)
    return Source(package, version, license, rel.as_posix(), text) if text is not None and keep_text(text) else None


def _load_and_sign(job):
    """A worker's share of `build`: the file read and filtered, with its duplicate keys."""
    src = _load(job)
    if src is None:
        return None
    near = _WORKER.get("near") or _WORKER.setdefault("near", NearDuplicates())
    return src, exact_key(src.text), near.signature(src.text)


_WORKER: dict = {}


def _jobs(skipped: list, include_stdlib: bool, include_packages: bool):
    streams = []
    if include_stdlib:
        streams.append(stdlib_sources())
    if include_packages:
        streams.append(distribution_sources(skipped))
    for stream in streams:
        for job in stream:
            if keep_path(job[4]):
                yield job


def iter_sources(skipped: list, include_stdlib: bool = True, include_packages: bool = True):
    for job in _jobs(skipped, include_stdlib, include_packages):
        src = _load(job)
        if src is not None:
            yield src


# ---------------------------------------------------------------- deduplication

def exact_key(text: str) -> bytes:
    normal = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return hashlib.sha1(normal.encode()).digest()


class NearDuplicates:
    """MinHash (num_perm hashes of word 5-grams) with banded LSH; `seen(text)` is True for a near copy."""

    def __init__(self, num_perm: int = 64, bands: int = 16, threshold: float = 0.8, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 31, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 31, num_perm, dtype=np.uint64)
        self.bands, self.rows, self.threshold = bands, num_perm // bands, threshold
        self.buckets: list[dict] = [{} for _ in range(bands)]
        self.signatures: list[np.ndarray] = []

    def signature(self, text: str) -> np.ndarray | None:
        words = text.split()
        if len(words) < 5:
            return None
        shingles = {" ".join(words[i:i + 5]) for i in range(len(words) - 4)}
        h = np.fromiter((zlib.crc32(s.encode()) for s in shingles), dtype=np.uint64, count=len(shingles))
        # (a * h + b) mod 2^32-ish universal hashing, min over shingles, per permutation
        return (((h[None, :] * self.a[:, None]) + self.b[:, None]) & np.uint64(0xFFFFFFFF)).min(axis=1)

    def seen(self, text: str, sig: np.ndarray | None = None) -> bool:
        """sig: the text's signature when already computed (by a worker of `build`)."""
        sig = self.signature(text) if sig is None else sig
        if sig is None:
            return False
        keys = [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]
        candidates = {j for band, key in zip(self.buckets, keys) for j in band.get(key, ())}
        if any((self.signatures[j] == sig).mean() >= self.threshold for j in candidates):
            return True
        index = len(self.signatures)
        self.signatures.append(sig)
        for band, key in zip(self.buckets, keys):
            band.setdefault(key, []).append(index)
        return False


def deduplicate(sources, stats: dict):
    """Yield sources that are neither exact nor near duplicates of an earlier one."""
    yield from _deduplicate(((src, exact_key(src.text), None) for src in sources), stats)


def _deduplicate(keyed, stats: dict):
    """deduplicate over (source, exact key, MinHash signature or None)."""
    exact, near = set(), NearDuplicates()
    for src, key, sig in keyed:
        if key in exact:
            stats["exact_duplicates"] += 1
            continue
        exact.add(key)
        if near.seen(src.text, sig):
            stats["near_duplicates"] += 1
            continue
        yield src


def is_held_out(text: str, holdout: int = HOLDOUT) -> bool:
    """The files kept for the held-out loss: a function of the text alone, the same in every run."""
    return zlib.crc32(text.encode()) % holdout == 0


# ---------------------------------------------------------------- output

def build(out: Path, include_stdlib: bool = True, include_packages: bool = True,
          max_files: int | None = None, workers: int = 1) -> dict:
    """Collect, filter and deduplicate; write out/files.jsonl and out/collect_stats.json (the first
    max_files kept files when given: a small corpus for rehearsals). With workers > 1 the files are
    read, parsed and signed in that many processes; the result is the same (same order, same
    duplicate decisions)."""
    out.mkdir(parents=True, exist_ok=True)
    stats = {"exact_duplicates": 0, "near_duplicates": 0, "kept_files": 0, "kept_bytes": 0, "skipped_distributions": []}
    skipped = stats["skipped_distributions"]
    pool = get_context("fork").Pool(workers) if workers > 1 else None
    if pool is not None:
        keyed = (k for k in pool.imap(_load_and_sign, _jobs(skipped, include_stdlib, include_packages), chunksize=8) if k)
        sources = _deduplicate(keyed, stats)
    else:
        sources = deduplicate(iter_sources(skipped, include_stdlib, include_packages), stats)
    with open(out / "files.jsonl", "w") as f:
        for src in sources:
            f.write(json.dumps(src.__dict__) + "\n")
            stats["kept_files"] += 1
            stats["kept_bytes"] += len(src.text.encode())
            if max_files and stats["kept_files"] >= max_files:
                break
    if pool is not None:
        pool.terminate()
    (out / "collect_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def read_corpus(path: Path):
    """Sources from a files.jsonl written by `build`."""
    with open(path) as f:
        for line in f:
            yield Source(**json.loads(line))


def manifest(sources, count_tokens) -> dict:
    """Per-package provenance: package, version, license, files (relative paths) and token count."""
    packages: dict[str, dict] = {}
    for src in sources:
        entry = packages.setdefault(src.package, {"package": src.package, "version": src.version,
                                                  "license": src.license, "files": [], "tokens": 0})
        entry["files"].append(src.path)
        entry["tokens"] += count_tokens(src.text)
    rows = sorted(packages.values(), key=lambda e: e["package"].lower())
    return {"packages": rows, "total_files": sum(len(e["files"]) for e in rows),
            "total_tokens": sum(e["tokens"] for e in rows)}


def write_manifest(corpus_jsonl: Path, tokenizer_file: Path, out: Path) -> dict:
    """The committed provenance file: per package, its version, license, files and token count."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    m = manifest(read_corpus(corpus_jsonl), lambda text: len(tok.encode(text, add_special_tokens=False).ids))
    m["sources"] = "CPython standard library and installed distributions with permissive license metadata"
    m["filters"] = {"skipped_dirs": sorted(SKIP_PARTS), "max_bytes": MAX_BYTES, "max_line": MAX_LINE,
                    "near_duplicate": "MinHash of word 5-grams, 64 hashes, Jaccard >= 0.8"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(m, indent=1) + "\n")
    return m

