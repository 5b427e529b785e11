"""The training corpus: license policy, path and text filters, duplicate removal."""
import importlib.metadata
from pathlib import Path

from diffill.model.train import corpus
from diffill.model.train.corpus import NearDuplicates, Source, deduplicate, is_permissive, keep_path, keep_text, license_of


def test_permissive_licenses_are_accepted():
    for lic in ["MIT", "BSD-3-Clause", "Apache-2.0", "PSF-2.0", "Apache 2.0 License", "BSD",
                "Apache-2.0 OR BSD-2-Clause", "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0",
                "Apache-2.0 AND Apache-2.0 WITH LLVM-exception AND BSD-2-Clause AND BSL-1.0 AND MIT",
                "Python Software Foundation License"]:
        assert is_permissive(lic), lic


def test_copyleft_unknown_and_other_principal_licenses_are_refused():
    for lic in ["MPL-2.0", "MPL-2.0 AND MIT", "GPL-3.0-or-later", "LGPLv3", "", "Proprietary", "ISC License",
                "Unknown"]:
        assert not is_permissive(lic), lic


def test_license_is_read_from_installed_metadata():
    assert license_of(importlib.metadata.metadata("pytest")) == "MIT"
    assert not is_permissive(license_of(importlib.metadata.metadata("hypothesis")))


def test_vendored_and_test_files_are_skipped():
    assert keep_path(Path("json/decoder.py"))
    assert not keep_path(Path("pip/_vendor/rich/text.py"))
    assert not keep_path(Path("test/test_json.py"))
    assert not keep_path(Path("networkx/algorithms/tests/test_cycles.py"))
    assert not keep_path(Path("pkg/test_utils.py"))
    assert not keep_path(Path("pkg/conftest.py"))


def test_text_filter_keeps_code_and_drops_broken_or_generated_files():
    code = "def add(a, b):\n    return a + b\n\n\nclass Box:\n    size = 3\n\n    def grow(self):\n        self.size += 1\n"
    assert keep_text(code)
    assert not keep_text("def broken(:\n    pass\n" * 5)            # does not parse
    assert not keep_text("TABLE = [" + "1, " * 500 + "]\n")           # one huge line
    assert not keep_text("x = 1\n")                                   # too small


def test_stdlib_is_found_through_sysconfig():
    first = next(corpus.stdlib_sources())
    package, version, license, root, rel = first
    assert package == "cpython-stdlib" and license == "PSF-2.0"
    assert (root / rel).is_file() and rel.suffix == ".py"


def _src(text, path="a.py"):
    return Source("pkg", "1", "MIT", path, text)


def test_exact_and_near_duplicates_are_dropped_first_copy_kept():
    body = "\n".join(f"def function_{i}(x):\n    return x * {i} + helper(x, {i})\n" for i in range(40))
    near = body.replace("return x * 7 +", "return x * 8 +")
    other = "\n".join(f"class Thing{i}:\n    value = compute({i}, 'abc')\n" for i in range(40))
    stats = {"exact_duplicates": 0, "near_duplicates": 0}
    kept = list(deduplicate([_src(body, "a.py"), _src(body + "\n\n", "b.py"), _src(near, "c.py"),
                             _src(other, "d.py")], stats))
    assert [s.path for s in kept] == ["a.py", "d.py"]
    assert stats == {"exact_duplicates": 1, "near_duplicates": 1}


def test_minhash_estimates_jaccard():
    nd = NearDuplicates()
    a = " ".join(f"w{i}" for i in range(400))
    b = " ".join(f"w{i}" for i in range(200)) + " " + " ".join(f"z{i}" for i in range(200))
    sa, sb = nd.signature(a), nd.signature(b)
    assert (sa == nd.signature(a)).all()
    # true shingle Jaccard is about 1/3
    assert 0.15 < (sa == sb).mean() < 0.55


def test_manifest_counts_files_and_tokens_per_package():
    srcs = [Source("b", "2", "MIT", "x.py", "a b c"), Source("a", "1", "BSD", "y.py", "d e"),
            Source("b", "2", "MIT", "z.py", "f")]
    m = corpus.manifest(srcs, lambda t: len(t.split()))
    assert [p["package"] for p in m["packages"]] == ["a", "b"]
    assert m["packages"][1] == {"package": "b", "version": "2", "license": "MIT", "files": ["x.py", "z.py"], "tokens": 4}
    assert m["total_files"] == 3 and m["total_tokens"] == 6


def test_a_build_in_worker_processes_keeps_the_same_files_in_the_same_order(tmp_path):
    one = corpus.build(tmp_path / "one", include_packages=False, max_files=120)
    two = corpus.build(tmp_path / "two", include_packages=False, max_files=120, workers=2)
    assert one == two and one["kept_files"] == 120
    assert (tmp_path / "one" / "files.jsonl").read_text() == (tmp_path / "two" / "files.jsonl").read_text()
