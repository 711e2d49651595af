"""Layering: the sans-IO core never imports asyncio/socket/time and never uses the global random."""

from __future__ import annotations

import ast
from pathlib import Path

import qis_gateway.swarm as swarm_pkg

CORE = ["__init__", "identity", "config", "store", "events", "wire", "routing", "lookup", "node", "ops", "rpc",
        "maintain", "policy", "storage_policy", "errors"]
FORBIDDEN_MODULES = {"asyncio", "socket", "time", "selectors", "threading", "subprocess"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    bad.append("import %s" % alias.name)
                if alias.name == "random" and alias.asname is not None:
                    bad.append("import random as %s" % alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if node.level == 0 and root in FORBIDDEN_MODULES:
                bad.append("from %s import ..." % node.module)
            if node.level == 0 and root == "random":
                bad.append("from random import ... (global random state)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            if node.attr != "Random":  # random.Random (the injected type) is fine; random.random() is not
                bad.append("random.%s" % node.attr)
    return bad


def test_core_modules_are_sans_io() -> None:
    pkg = Path(swarm_pkg.__file__).parent
    checked = 0
    for name in CORE:
        path = pkg / (name + ".py")
        assert path.exists(), path
        assert _violations(path) == [], (name, _violations(path))
        checked += 1
    assert checked == len(CORE)


def test_the_checker_catches_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nimport random\nfrom asyncio import sleep\nx = random.random()\n")
    found = _violations(bad)
    assert "import time" in found and "random.random" in found and any("asyncio" in f for f in found)
