"""shared/qis is written in the dialect both runtimes share (design rule 6, docs/design.md) and stays sans-IO
(rule 1). Checked on the syntax tree, so a slip fails here rather than on a board."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.micropython import ROOT

SHARED = sorted((ROOT / "shared" / "qis").rglob("*.py"))
BOARD = SHARED + sorted((ROOT / "device" / "qis_device").rglob("*.py"))
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


@pytest.mark.parametrize("path", BOARD, ids=lambda p: p.name)
def test_board_code_can_be_frozen_into_firmware(path: Path) -> None:
    """MicroPython's compiler folds math.inf/math.nan (and float("inf")) into constants, which its freezer
    (tools/mpy-tool.py, run by every firmware build with firmware/manifest.py) writes as C `inf`/`nan`:
    the firmware then fails to compile. Board code must not contain them."""
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("inf", "nan") and isinstance(node.value, ast.Name)
                and node.value.id == "math"):
            problems.append("line %d: math.%s" % (node.lineno, node.attr))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
              and node.args and isinstance(node.args[0], ast.Constant)
              and str(node.args[0].value).lower().lstrip("+-") in ("inf", "infinity", "nan")):
            problems.append("line %d: float(%r)" % (node.lineno, node.args[0].value))
    assert problems == []
