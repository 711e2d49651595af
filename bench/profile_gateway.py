"""Where a gateway's CPU goes, by component: py-spy samples of a running process, grouped by source file.

    from profile_gateway import Sampler   (bench/bench_gateway_throughput.py --profile)

py-spy (pip install py-spy) samples the process without stopping it (`--nonblocking`, so it works beside
strace), every thread, idle frames left out. Each sample is charged to the innermost frame whose file
belongs to a named component (so time inside sqlite3 called from outbox.py counts as "state/registry
SQLite"); a sample with no such frame is "other". Shares are of all non-idle samples.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path

# (component, substrings of a frame's file), first match from the innermost frame outwards
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("paho + MQTT thread", ("paho/",)),
    ("hand-off (mqtt_client)", ("qis_gateway/mqtt_client.py",)),
    ("state/registry SQLite", ("qis_gateway/outbox.py", "qis_gateway/registry.py", "qis_gateway/sqlite_tx.py")),
    ("frame decode + HMAC", ("qis/messages.py", "qis/hmac256.py", "qis/gwframes.py", "hmac.py", "json/")),
    ("admission (bridge)", ("qis_gateway/bridge.py", "qis/topic", "qis/schema")),
    ("intake", ("qis_gateway/intake.py",)),
    ("answer queue", ("qis_gateway/answers.py",)),
    ("columns", ("qis_gateway/columns.py",)),
    ("synthesis", ("qis_gateway/synthesis.py", "qis_gateway/levelmix.py", "numpy/")),
    ("verified-packet cache", ("qis_gateway/packets.py", "nacl/")),
    ("evidence (lookup glue)", ("qis_gateway/evidence.py",)),
    ("swarm", ("qis_gateway/swarm/", "msgpack/")),
    ("flusher", ("qis_gateway/flusher.py",)),
    ("metrics", ("qis_gateway/metrics.py", "prometheus_client/")),
    ("asyncio loop", ("asyncio/", "selectors.py")),
)


def available() -> bool:
    return shutil.which("py-spy") is not None or (Path(sys.executable).parent / "py-spy").exists()


class Sampler:
    """py-spy record of `pid` for `seconds` (start() then result())."""

    def __init__(self, pid: int, seconds: float, out: Path, rate: int = 250) -> None:
        exe = Path(sys.executable).parent / "py-spy"
        self.out = out
        self.argv = [str(exe if exe.exists() else "py-spy"), "record", "--pid", str(pid), "--duration",
                     str(max(1, int(seconds))), "--rate", str(rate), "--format", "raw", "--nonblocking",
                     "--threads", "--gil", "--output", str(out)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def result(self) -> dict[str, object]:
        if self.proc is None:
            return {}
        _, err = self.proc.communicate(timeout=60)
        if self.proc.returncode != 0 or not self.out.exists():
            return {"error": err.decode(errors="replace").strip()[-300:]}
        return summarise(self.out.read_text())


def component(stack: list[str]) -> str:
    for frame in reversed(stack):  # innermost last in py-spy's collapsed format
        for name, parts in COMPONENTS:
            if any(p in frame for p in parts):
                return name
    return "other"


def summarise(collapsed: str, top: int = 15) -> dict[str, object]:
    """Shares by component and the hottest innermost functions, from py-spy's raw (collapsed) output."""
    by_comp: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = stack_text.split(";")[1:]  # the first entry names the thread
        total += n
        by_comp[component(frames)] += n
        by_leaf[frames[-1] if frames else "?"] += n
    if not total:
        return {"samples": 0}
    return {"samples": total,
            "components_pct": {k: round(100 * v / total, 1) for k, v in by_comp.most_common()},
            "top_functions_pct": {k: round(100 * v / total, 1) for k, v in by_leaf.most_common(top)}}
