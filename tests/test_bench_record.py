"""bench/record.py: a results file names the commit its run started from, and says so when the
checkout moved while it ran (a long benchmark outlives commits)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def record(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import record as module
    finally:
        sys.path.remove(str(ROOT / "bench"))
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-qm", "one")
    monkeypatch.setattr(module, "ROOT", repo)
    monkeypatch.setattr(module, "_STARTED_AT", module._checkout())  # as at the script's start
    return module, repo


def test_the_commit_is_the_one_the_run_started_from_and_a_later_one_is_named_apart(record, tmp_path):
    module, repo = record
    started = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-qam", "two")
    js, md = module.write_results("demo", {"x": 1}, "body", "Demo", argv=[], out_dir=tmp_path / "out")
    prov = json.loads(js.read_text())["provenance"]
    assert prov["commit"] == started
    assert prov["commit_at_end"] == git(repo, "rev-parse", "HEAD") != started
    assert f"at commit `{started}` (the checkout was at `{prov['commit_at_end']}` when it ended)" in md.read_text()


def test_a_run_on_an_unchanged_checkout_names_one_commit_and_uncommitted_changes_are_marked(record, tmp_path):
    module, repo = record
    prov = module.provenance([])
    assert prov["commit"] == git(repo, "rev-parse", "HEAD") and "commit_at_end" not in prov
    (repo / "a.txt").write_text("edited\n")
    assert module.provenance([])["commit_at_end"] == git(repo, "rev-parse", "HEAD") + "+changes"


def test_new_figures_in_bench_results_are_not_a_change_to_the_code(record):
    module, repo = record
    results = repo / "bench" / "results"
    results.mkdir(parents=True)
    (results / "x.md").write_text("old\n")
    git(repo, "add", "bench")
    git(repo, "commit", "-qm", "results")
    (results / "x.md").write_text("new figures\n")
    assert module._checkout() == git(repo, "rev-parse", "HEAD")
