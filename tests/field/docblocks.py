"""The shell blocks a guide marks for the field test: a line `<!-- field-test -->` right before a ``` fence.

How it works: `marked_blocks(path)` returns the blocks' text in document order; `substitute(text, subs)`
applies the test's (old, new) replacements, plain strings or compiled regular expressions, in order.
"""

from __future__ import annotations

import re
from pathlib import Path

MARK = "<!-- field-test -->"


def marked_blocks(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise ValueError("%s:%d: %s is not followed by a ``` fence" % (path, i + 1, MARK))
            j = i + 2
            body: list[str] = []
            while j < len(lines) and not lines[j].startswith("```"):
                body.append(lines[j])
                j += 1
            if j == len(lines):
                raise ValueError("%s:%d: unterminated fence" % (path, i + 2))
            blocks.append("\n".join(body) + "\n")
            i = j
        i += 1
    return blocks


def substitute(text: str, subs: list[tuple[str | re.Pattern[str], str]]) -> str:
    for old, new in subs:
        text = old.sub(new, text) if isinstance(old, re.Pattern) else text.replace(old, new)
    return text
