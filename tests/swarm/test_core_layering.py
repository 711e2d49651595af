"""Layering, checked on the syntax tree (issue 15 part 3):
- the folder rule: every module in ``swarm/core/`` is sans-IO (no I/O, no clock, no sockets, no global
  random) and imports nothing from the swarm package outside ``core/`` except ``errors``;
- no import circle inside ``swarm/`` (TYPE_CHECKING and function-level imports count too);
- no module of ``gateway/qis_gateway`` writes another object's private attributes, and no swarm module
  reads them (state has one owner, reached through its methods)."""

from __future__ import annotations

import ast
from pathlib import Path

import qis_gateway
import qis_gateway.swarm as swarm_pkg

SWARM = Path(swarm_pkg.__file__).parent
CORE = SWARM / "core"
GATEWAY = Path(qis_gateway.__file__).parent
# Modules whose import means I/O, a clock, sockets, processes or threads.
FORBIDDEN_MODULES = {
    "asyncio", "socket", "time", "selectors", "threading", "subprocess", "multiprocessing", "os", "io", "pathlib",
    "shutil", "tempfile", "sqlite3", "datetime", "signal", "select", "urllib", "http", "secrets", "resource",
}
FORBIDDEN_CALLS = {"open", "print", "input"}
ALLOWED_OUTSIDE_CORE = {"errors"}  # swarm/errors.py: exception classes only


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root in FORBIDDEN_MODULES:
                    bad.append("import %s" % alias.name)
                if root == "qis_gateway":
                    bad.append("import %s (the core imports its neighbours relatively)" % alias.name)
                if alias.name == "random" and alias.asname is not None:
                    bad.append("import random as %s" % alias.asname)
        elif isinstance(node, ast.ImportFrom):
            root = (node.module or "").split(".")[0]
            if node.level == 0 and root in FORBIDDEN_MODULES:
                bad.append("from %s import ..." % node.module)
            if node.level == 0 and root == "random":
                bad.append("from random import ... (global random state)")
            if node.level == 0 and root == "qis_gateway":
                bad.append("from %s import ... (the core imports its neighbours relatively)" % node.module)
            if node.level >= 2 and (node.level > 2 or root not in ALLOWED_OUTSIDE_CORE):
                bad.append("from %s%s import ... (outside core/)" % ("." * node.level, node.module or ""))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            if node.attr != "Random":  # random.Random (the injected type) is fine; random.random() is not
                bad.append("random.%s" % node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            bad.append("%s()" % node.func.id)
    return bad


def test_every_core_module_is_sans_io() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 15  # the folder holds the core, not a stray file or two
    bad = {p.name: _violations(p) for p in modules if _violations(p)}
    assert bad == {}


def test_the_folder_checker_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nimport random\nfrom asyncio import sleep\nfrom pathlib import Path\n"
                   "from ..udp import SwarmDriver\nfrom ..errors import WireError\nimport qis_gateway.swarm.api\n"
                   "x = random.random()\nopen('f')\n")
    found = _violations(bad)
    assert "import time" in found and "random.random" in found and any("asyncio" in f for f in found)
    assert any("pathlib" in f for f in found) and "open()" in found
    assert any("..udp" in f for f in found) and not any("..errors" in f for f in found)
    assert any("qis_gateway.swarm.api" in f for f in found)


def _module_name(path: Path) -> str:
    rel = path.relative_to(GATEWAY.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Modules (dotted names) ``path`` imports, relative imports resolved, ``from X import name`` counted
    as ``X.name`` when that is a module."""
    this = _module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update("%s.%s" % (module, alias.name) for alias in node.names)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _swarm_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SWARM.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # a package's __init__ is not a dependency of its modules here (Python imports it first anyway)
        graph[name] = {m for m in _imports(path) if m in files and m != name and not name.startswith(m + ".")}
    return graph


def test_no_import_circle_inside_the_swarm_package() -> None:
    graph = _swarm_graph()
    assert "qis_gateway.swarm.core.node" in graph and graph["qis_gateway.swarm.core.ops"]
    assert _cycle(graph) is None


def test_the_circle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _private_uses(path: Path) -> list[tuple[str, int, str]]:
    """(kind, line, expression) for every ``x._name`` where x is not ``self``/``cls``: kind W for a write
    (assignment, augmented assignment or del, also of an item: ``x._name[k] = v``), R for a read."""
    tree = ast.parse(path.read_text())
    item_written = {id(n.value) for n in ast.walk(tree)
                    if isinstance(n, ast.Subscript) and isinstance(n.ctx, (ast.Store, ast.Del))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            written = isinstance(node.ctx, (ast.Store, ast.Del)) or id(node) in item_written
            out.append(("W" if written else "R", node.lineno, ast.unparse(node)))
    return sorted(out, key=lambda u: u[1])


def test_no_module_writes_another_objects_private_attributes() -> None:
    writes = {str(p.relative_to(GATEWAY)): [u for u in _private_uses(p) if u[0] == "W"]
              for p in GATEWAY.rglob("*.py")}
    assert {k: v for k, v in writes.items() if v} == {}


def test_swarm_modules_read_no_other_objects_private_attributes() -> None:
    reads = {str(p.relative_to(SWARM)): _private_uses(p) for p in SWARM.rglob("*.py")}
    assert {k: v for k, v in reads.items() if v} == {}


def test_the_private_checker_sees_reads_and_writes(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("node._maint_s = 1\nnode._counters['x'] += 1\ny = node._pending\nself._mine = 2\nz = a.__dict__\n")
    assert _private_uses(src) == [("W", 1, "node._maint_s"), ("W", 2, "node._counters"), ("R", 3, "node._pending")]
