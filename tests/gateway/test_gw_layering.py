"""The gateway package's structure, checked on the syntax tree: no import circle among its modules (the
swarm package counts as one node, its inside is its own business), and no module assigns to another
object's private attribute (`x._name = ...` with x other than self/cls)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gateway" / "qis_gateway"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[:2] == ["qis_gateway", "swarm"]:
        return "qis_gateway.swarm"  # one node for the whole swarm package
    return ".".join(parts)


def sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path, tree: ast.Module) -> set[str]:
    """Every qis_gateway module `path` imports, at module level or inside functions."""
    here = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + ["%s.%s" % (module, a.name) for a in node.names]
        else:
            continue
        out.update(n for n in names if n.startswith("qis_gateway"))
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules it imports."""
    trees = sources()
    modules = {module_name(p) for p in trees}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path, tree in trees.items():
        source = module_name(path)
        for name in imported(path, tree):
            while name and name not in modules:  # "pkg.mod.Class" -> "pkg.mod"
                name = name.rpartition(".")[0]
            target = "qis_gateway.swarm" if name.startswith("qis_gateway.swarm") else name
            if target and target != source:
                graph[source].add(target)
    return graph


def test_no_import_circle_in_the_gateway_package() -> None:
    graph = import_graph()
    assert "qis_gateway.commands" in graph["qis_gateway.cli"]  # the graph sees what it should
    assert "qis_gateway.evidence" in graph["qis_gateway.bridge"]
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError("import circle: %s" % " -> ".join(exc.args[1])) from None


def test_the_cli_layer_is_imported_by_nobody_but_itself() -> None:
    graph = import_graph()
    for cli in ("qis_gateway.cli", "qis_gateway.commands"):
        importers = {m for m, targets in graph.items() if cli in targets}
        assert importers <= {"qis_gateway.cli"}, (cli, importers)


def test_no_module_writes_another_objects_private_attributes() -> None:
    found = []
    for path, tree in sources().items():
        if module_name(path) == "qis_gateway.swarm":
            continue  # the swarm core's seams are reworked on their own
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
                name = node.args[1] if len(node.args) > 1 else None
                if isinstance(name, ast.Constant) and str(name.value).startswith("_"):
                    found.append("%s:%d setattr %s" % (path.name, node.lineno, name.value))
                continue
            else:
                continue
            for target in targets:
                for sub in ast.walk(target):
                    if (isinstance(sub, ast.Attribute) and sub.attr.startswith("_") and not sub.attr.startswith("__")
                            and not (isinstance(sub.value, ast.Name) and sub.value.id in ("self", "cls"))):
                        found.append("%s:%d %s" % (path.name, node.lineno, ast.unparse(sub)))
    assert found == []
