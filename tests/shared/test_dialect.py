"""shared/qis is written in the dialect both runtimes share (design rule 6, docs/design.md) and stays sans-IO
(rule 1). Checked on the syntax tree, so a slip fails here rather than on a board."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.micropython import ROOT

SHARED = sorted((ROOT / "shared" / "qis").rglob("*.py"))
FORBIDDEN_IMPORTS = {"typing", "dataclasses", "enum", "abc", "asyncio", "socket", "time", "random", "logging",
                     "functools", "itertools", "hmac", "datetime", "base64"}


@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.name)
def test_shared_module_uses_the_common_dialect(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            problems.append("line %d: f-string (use %% formatting)" % node.lineno)
        elif isinstance(node, ast.Assert):
            problems.append("line %d: assert used for validation" % node.lineno)
        elif isinstance(node, ast.Import):
            problems += ["line %d: imports %s" % (node.lineno, a.name) for a in node.names
                         if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_IMPORTS:
            problems.append("line %d: imports from %s" % (node.lineno, node.module))
        elif isinstance(node, (ast.AnnAssign,)) or (isinstance(node, ast.FunctionDef) and node.returns):
            problems.append("line %d: annotations (MicroPython ignores them; keep shared code plain)" % node.lineno)
    assert problems == []


def test_there_are_shared_modules_to_check() -> None:
    assert {p.name for p in SHARED} >= {"fingerprint.py", "schema.py", "messages.py", "topics.py", "hmac256.py"}
