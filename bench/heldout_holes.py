"""Held-out FIM holes: holes punched into real Python that neither the embedded model's training
corpus nor the public evaluation sets hold.

Sources (both checked against model/embedded/corpus_manifest.json before any hole is cut):
  hypothesis   the installed `hypothesis` package (its vendored code left out): the evaluation set
  lib2to3      the standard library's lib2to3 (the corpus skips it; its tests left out): the
               calibration set (the confidence gate's threshold is chosen on it, never on hypothesis)

Hole kinds, drawn with a fixed seed from every candidate in the source's files:
  line       a whole one-line statement: the cursor at the start of its line, the middle is the line
             with its indentation and line break (HumanEval single-line style)
  line_rest  the rest of a one-line statement from a point inside it: after a token, or inside an
             identifier (a word half typed); the middle ends before the line break
  block      the body of a compound statement (if/for/while/with/try/def ... up to 12 lines): the
             cursor at the start of the body's first line, the middle is the body's lines

Each hole: id, language, prefix, suffix, middle, kind, and `junk`: unrelated code (the start of a
definition from a file half the list away, on a new line), for the trim recovery benchmark.

    .venv/bin/python bench/heldout_holes.py --source hypothesis --per-kind 300   # prints a summary
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "model" / "embedded" / "corpus_manifest.json"
KINDS = ("line", "line_rest", "block")
MAX_MIDDLE_LINES = 12
MAX_MIDDLE_CHARS = 600

_SIMPLE = {
    "expression_statement", "return_statement", "raise_statement", "assert_statement", "pass_statement",
    "break_statement", "continue_statement", "delete_statement", "global_statement", "nonlocal_statement",
    "import_statement", "import_from_statement",
}
_COMPOUND = {
    "if_statement", "for_statement", "while_statement", "with_statement", "try_statement",
    "function_definition", "elif_clause", "else_clause", "except_clause", "finally_clause",
}


def _site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_root(name: str) -> tuple[Path, tuple[str, ...]]:
    """(folder, sub-folders left out) of a source."""
    if name == "hypothesis":
        return _site_packages() / "hypothesis", ("vendor",)
    if name == "lib2to3":
        return _stdlib() / "lib2to3", ("tests",)
    raise ValueError(f"unknown source {name!r}: hypothesis or lib2to3")


def source_version(name: str) -> str:
    if name == "lib2to3":
        return "Python " + sys.version.split()[0]
    from importlib.metadata import version
    return version(name)


def check_held_out(name: str) -> None:
    """Raise when the training corpus holds the source (a package of that name, or stdlib files
    under its folder)."""
    manifest = json.loads(MANIFEST.read_text())
    for p in manifest["packages"]:
        if p["package"].lower() == name.lower():
            raise SystemExit(f"heldout_holes: the training corpus holds {name}: not held out")
        if p["package"] == "cpython-stdlib" and any(f.startswith(name + "/") for f in p["files"]):
            raise SystemExit(f"heldout_holes: the training corpus holds stdlib {name}: not held out")


def source_files(name: str) -> list[Path]:
    root, skip = source_root(name)
    if not root.is_dir():
        raise SystemExit(f"heldout_holes: {root} is not installed")
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(part in skip or part == "__pycache__" for part in rel):
            continue
        files.append(path)
    return files


def _parser():
    from diffill.lsp.code import syntax
    return syntax.parser_for("python")


def _is_docstring(node) -> bool:
    return node.type == "expression_statement" and node.named_child_count == 1 and node.named_children[0].type in (
        "string", "concatenated_string")


def _in_string(leaf) -> bool:
    """Is the point right after `leaf` inside a string (or is the leaf a comment)?"""
    if leaf.type == "comment":
        return True
    node = leaf.parent
    while node is not None:
        if node.type in ("string", "concatenated_string") and leaf.end_byte < node.end_byte:
            return True
        if node.type == "interpolation":
            return False
        node = node.parent
    return False


def _line_start(data: bytes, offset: int) -> int:
    return data.rfind(b"\n", 0, offset) + 1


def _line_end(data: bytes, offset: int) -> int:
    end = data.find(b"\n", offset)
    return len(data) if end < 0 else end


def _leaves(node):
    stack = [node]
    while stack:
        n = stack.pop()
        if n.child_count == 0:
            yield n
        else:
            stack.extend(reversed(n.children))


def _candidates(data: bytes, tree) -> dict[str, list[tuple]]:
    """Per kind, (prefix_end, middle_end, extra) byte offsets of every hole the file allows."""
    out = {k: [] for k in KINDS}
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.has_error:
            continue
        if node.type in _SIMPLE and not _is_docstring(node) and node.start_point[0] == node.end_point[0]:
            start, end = _line_start(data, node.start_byte), _line_end(data, node.end_byte)
            if data[start:node.start_byte].strip() or data[node.end_byte:end].strip():
                continue  # the line holds more than this statement
            text = data[node.start_byte:node.end_byte]
            if len(text) < 4:
                continue
            out["line"].append((start, min(end + 1, len(data)), None))
            for leaf in _leaves(node):
                if _in_string(leaf):
                    continue  # a cursor in a string or comment gets no completion
                if node.start_byte < leaf.end_byte < node.end_byte:
                    out["line_rest"].append((leaf.end_byte, node.end_byte, "token"))
                if leaf.type == "identifier" and leaf.end_byte - leaf.start_byte >= 3:
                    out["line_rest"].append((leaf.start_byte + 1 + (leaf.end_byte - leaf.start_byte - 1) // 2,
                                             node.end_byte, "word"))
        if node.type in _COMPOUND:
            body = node.child_by_field_name("body") or next((c for c in node.children if c.type == "block"), None)
            if body is None or body.named_child_count == 0 or body.start_point[0] == node.start_point[0]:
                continue
            first = body.named_children[0]
            if _is_docstring(first):
                continue
            start, end = _line_start(data, body.start_byte), _line_end(data, body.end_byte)
            if data[start:body.start_byte].strip():
                continue  # the body starts on the header's last line
            lines = data[start:end].count(b"\n") + 1
            if lines > MAX_MIDDLE_LINES or end - start > MAX_MIDDLE_CHARS:
                continue
            out["block"].append((start, min(end + 1, len(data)), None))
    return out


@lru_cache(maxsize=None)
def _files(name: str) -> tuple[tuple[str, bytes], ...]:
    root, _ = source_root(name)
    return tuple((str(p.relative_to(root)), p.read_bytes()) for p in source_files(name))


def _junk(files, i: int) -> str:
    """Unrelated code: from the first definition at column 0 of a file half the list away."""
    for step in range(len(files) // 2, len(files) + len(files) // 2):
        _, data = files[(i + step) % len(files)]
        for marker in (b"\ndef ", b"\nclass "):
            at = data.find(marker)
            if at >= 0:
                return "\n" + data[at + 1:at + 1 + 2000].decode("utf-8", "replace")
    return "\n"


def holes(name: str = "hypothesis", per_kind: int = 300, seed: int = 0, take: int | None = None) -> list[dict]:
    """`per_kind` holes of each kind from the source, the same for the same arguments; `take`: only
    the first that many of each kind (in file order) of that same draw."""
    check_held_out(name)
    parser = _parser()
    files = _files(name)
    pool: dict[str, list[tuple[int, tuple]]] = {k: [] for k in KINDS}
    for i, (_, data) in enumerate(files):
        tree = parser.parse(data)
        for kind, cands in _candidates(data, tree).items():
            pool[kind].extend((i, c) for c in cands)
    rng = random.Random(seed)
    out = []
    for kind in KINDS:
        chosen = sorted(rng.sample(range(len(pool[kind])), min(per_kind, len(pool[kind]))))
        for j in chosen:
            i, (a, b, extra) = pool[kind][j]
            rel, data = files[i]
            try:
                prefix, middle, suffix = (data[:a].decode("utf-8"), data[a:b].decode("utf-8"),
                                          data[b:].decode("utf-8"))
            except UnicodeDecodeError:
                continue
            out.append({"id": f"{name}/{rel}@{a}:{b}", "kind": kind, "cursor": extra or kind, "language": "python",
                        "prefix": prefix, "suffix": suffix, "middle": middle, "junk": _junk(files, i)})
    if take is not None:
        out = [h for kind in KINDS for h in [x for x in out if x["kind"] == kind][:take]]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="hypothesis", choices=("hypothesis", "lib2to3"))
    ap.add_argument("--per-kind", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    hs = holes(args.source, args.per_kind, args.seed)
    summary = {k: sum(1 for h in hs if h["kind"] == k) for k in KINDS}
    print(json.dumps({"source": args.source, "version": source_version(args.source), "files": len(_files(args.source)),
                      "holes": summary, "word_cursors": sum(1 for h in hs if h["cursor"] == "word")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
