"""The origin's published-values file commits without an fsync per put (synchronous=NORMAL in WAL), and
what it committed survives a SIGKILL of the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qis_gateway.swarm.published import PublishedValues


def test_no_fsync_per_put_but_committed_values_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "published.sqlite3"
    pv = PublishedValues(path, 1000)
    assert pv.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (FULL = 2 fsynced every put)
    pv.close()
    script = ("import os, signal, sys\n"
              "from qis_gateway.swarm.published import PublishedValues\n"
              "pv = PublishedValues(sys.argv[1], 1000)\n"
              "for i in range(50):\n"
              "    pv.add(bytes([i]) * 32, b'value-%d' % i, 1000.0 + i)\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], timeout=60)
    assert proc.returncode == -9
    pv = PublishedValues(path, 1000)
    assert len(pv) == 50 and pv.count_addresses() == 50
    pv.close()
