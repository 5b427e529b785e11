"""The layout's rule: dependencies go one way.

    server side (lsp/server -> lsp/pipeline -> lsp/code) -> wire (lsp/wire) <- worker (model/worker)
    worker -> engine (model/engine) -> kernels;  GPU fast path (model/gpu) -> engine;  training -> engine
    the CLI (lsp/cli) may import anything

Every import counts, those inside functions too. The server side never imports torch.
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"lsp": "diffill.lsp", "model": "diffill.model", "kernels": "diffill.kernels"}
ALLOWED = {
    "lsp.code": set(),
    "lsp.pipeline": {"lsp.code"},
    "lsp.wire": set(),
    "lsp.server": {"lsp.pipeline", "lsp.code", "lsp.wire"},
    "lsp.cli": None,  # anything
    "model.engine": {"kernels", "lsp.wire"},  # lsp.wire.prompt_format: the prompt text shared with the remote client
    "model.gpu": {"model.engine", "kernels"},
    "model.worker": {"lsp.wire", "model.engine", "model.gpu"},
    "model.train": {"model.engine", "kernels"},
    "kernels": set(),
}
SERVER_SIDE = ("lsp.code", "lsp.pipeline", "lsp.wire", "lsp.server")


def package_of(module: str) -> str | None:
    """'diffill.lsp.code.trim.x' -> 'lsp.code'; 'diffill.kernels.quant' -> 'kernels'."""
    parts = module.split(".")
    if parts[0] != "diffill" or len(parts) < 2:
        return None
    if parts[1] == "kernels":
        return "kernels"
    package = ".".join(parts[1:3])
    if parts[1] == "model" and package not in ALLOWED:
        return "model.engine"  # diffill.model and its lazy names (load_model, ...) are the engine's
    return package if package in ALLOWED else None


def modules():
    for folder, dotted in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if {"examples", "embedded"} & set(path.relative_to(ROOT).parts):
                continue  # data: the demo's example file, the shipped checkpoint
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([dotted, *parts]), path.name == "__init__.py"


def imports(path: Path, module: str, is_package: bool):
    """Every module `path` imports, absolute, with the line it is on."""
    tree = ast.parse(path.read_text(), str(path))
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, node.lineno
            for alias in node.names:  # `from diffill.lsp.code import syntax` imports a module too
                yield f"{target}.{alias.name}", node.lineno


def edges():
    for path, module, is_package in modules():
        source = package_of(module) or module.split(".", 1)[1]
        for target, line in imports(path, module, is_package):
            yield path, line, source, target


def test_every_module_lives_in_a_package_of_the_layout():
    unplaced = [m for _, m, _ in modules() if package_of(m) not in ALLOWED
                and m not in ("diffill.lsp", "diffill.model")]
    assert unplaced == []


def test_packages_import_only_what_the_layout_allows():
    wrong = []
    for path, line, source, target in edges():
        allowed = ALLOWED.get(source)
        dest = package_of(target)
        if allowed is None or dest is None or dest == source:
            continue
        if dest not in allowed:
            wrong.append(f"{path.relative_to(ROOT)}:{line}: {source} imports {target}")
    assert wrong == []


def test_there_is_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for _, _, source, target in edges():
        dest = package_of(target)
        if dest is not None and dest != source and source != "lsp.cli":
            graph.setdefault(source, set()).add(dest)
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("cycle: " + " -> ".join(trail + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            visit(nxt, trail + [node])
        state[node] = 2

    for node in list(graph):
        visit(node, [])


def test_the_kernels_import_nothing_of_ours():
    ours = [(str(p.relative_to(ROOT)), line, t) for p, line, s, t in edges()
            if s == "kernels" and package_of(t) not in (None, "kernels")]
    assert ours == []


def test_the_server_side_never_imports_torch_not_even_inside_a_function():
    found = [f"{p.relative_to(ROOT)}:{line}: {t}" for p, line, s, t in edges()
             if s in SERVER_SIDE and t.split(".")[0] in ("torch", "triton", "transformers", "safetensors")]
    assert found == []


def test_importing_every_module_of_lsp_leaves_torch_unloaded():
    names = [m for _, m, _ in modules() if m.startswith("diffill.lsp") and not m.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
