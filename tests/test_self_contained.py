"""The repository is self-contained: code and docs cite only files it holds.

Users get this repository, not the team's notes beside it, so a comment or a doc that points at the
team's design notes, contract or research files, or at a shared folder outside the checkout, sends them
nowhere. Every `docs/<name>.md` a file names must exist too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOREIGN = re.compile(r"DESIGN\.md|contracts\.md|research/[\w-]+\.md|\.\./shared/(?!qis/)")
DOC_REF = re.compile(r"\bdocs/([\w-]+\.md)")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    files = []
    for name in out.splitlines():
        path = ROOT / name
        if path.suffix in {".py", ".md", ".toml", ".json", ".sh", ".service", ".txt", ""} and path.is_file():
            files.append(path)
    return files


def test_no_file_cites_the_team_folder() -> None:
    hits = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if FOREIGN.search(line):
                hits.append("%s:%d: %s" % (path.relative_to(ROOT), number, line.strip()))
    assert not hits, "cites files outside the repository:\n" + "\n".join(hits)


def test_every_cited_doc_exists() -> None:
    missing = []
    for path in _tracked_text_files():
        for name in DOC_REF.findall(path.read_text(errors="replace")):
            if not (ROOT / "docs" / name).is_file():
                missing.append("%s -> docs/%s" % (path.relative_to(ROOT), name))
    assert not missing, "\n".join(sorted(set(missing)))
