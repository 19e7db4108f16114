"""The package shows its data path: one folder per part, imports that run one way, no cycle, small modules,
and a public API whose every name resolves."""

from __future__ import annotations

import ast
from pathlib import Path

import medimg_demo

PKG = Path(medimg_demo.__file__).resolve().parent

#: Lower number = lower layer; a module may import only its own layer or lower ones.
LAYERS = {
    "errors": 0, "notice": 0, "confusable": 0, "cli_files": 0, "settings": 0, "paths": 0, "tasks": 0, "options": 0, "manifest": 1, "treatment": 1,
    "imaging": 2, "models": 3, "explain": 4, "learn": 5, "predict": 5, "feedback": 6, "eval": 6, "batch": 6, "report": 6, "web": 7, "deploy": 7,
    "cli": 8, "cli_predict": 8, "__main__": 9, "__init__": 9,
}
PARTS = ("imaging", "models", "explain", "learn", "eval", "feedback", "web")


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports() -> dict[str, set[str]]:
    """medimg_demo module -> the medimg_demo modules it imports (at any depth of the file)."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        package = package.removesuffix(".__init__")
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("medimg_demo"):
                    out.add(mod)
                    out.update(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("medimg_demo"))
        graph[name.removesuffix(".__init__")] = out
    return graph


def test_every_part_is_a_folder_with_a_docstring() -> None:
    for part in PARTS:
        init = PKG / part / "__init__.py"
        assert init.is_file(), part
        assert ast.get_docstring(ast.parse(init.read_text())), part


def test_imports_run_one_way() -> None:
    graph = _imports()
    wrong = []
    for mod, targets in graph.items():
        for t in targets:
            if t == "medimg_demo" or _part(t) not in LAYERS:
                continue  # a name imported from a package (checked through the package's own module)
            if LAYERS[_part(t)] > LAYERS[_part(mod)]:
                wrong.append(f"{mod} -> {t}")
    assert not wrong, wrong


def test_no_import_cycle_between_parts() -> None:
    graph = _imports()
    edges: dict[str, set[str]] = {}
    for mod, targets in graph.items():
        for t in targets:
            if _part(t) in LAYERS and _part(t) != _part(mod) and _part(mod) not in ("__init__", "__main__"):
                edges.setdefault(_part(mod), set()).add(_part(t))
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in edges.get(node, ()):
            assert seen.get(nxt) != 1, " -> ".join([*stack, node, nxt])
            if nxt not in seen:
                visit(nxt, [*stack, node])
        seen[node] = 2

    for node in list(edges):
        if node not in seen:
            visit(node, [])


def test_only_imaging_reads_dicom() -> None:
    for path in PKG.rglob("*.py"):
        if "pydicom" in path.read_text():
            assert path.parent.name == "imaging", path


def test_modules_stay_small() -> None:
    for path in [*PKG.rglob("*.py"), PKG.parent / "app.py"]:
        n = len(path.read_text().splitlines())
        assert n <= 300, f"{path.relative_to(PKG.parent)} has {n} lines"


def test_public_api_resolves() -> None:
    for name in medimg_demo.__all__:
        assert getattr(medimg_demo, name) is not None, name
