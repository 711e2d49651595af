"""The long run (`make hil-soak`, not part of `make test`): hours of field life compressed into minutes.

8 gateways, 10 emulated boards at 2 sites reading once a second for QIS_SOAK_READINGS readings (default 600,
about 10 minutes); every 2 minutes a site broker restarts, and half way one site gateway is SIGKILLed and
restarted. At the end: every reading answered in order, every outcome stored at every level, and the site
gateways' memory did not keep growing (RSS at the end within 1.5x of RSS after warm-up).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hil_checks import assert_boards_finish, assert_every_reading_answered, outcomes_stored, wait_answered
from qis_gateway.harness.system import LocalSystem

SOAK_READINGS = int(os.environ.get("QIS_SOAK_READINGS", "600"))
# One reading a second plus warm-up and drain: the suite's 300 s default timeout would cut it short.
pytestmark = [pytest.mark.hil, pytest.mark.soak, pytest.mark.timeout(2 * SOAK_READINGS + 600)]
LEVELS = 4


def rss_kb(pid: int) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_soak(make_system: Callable[..., LocalSystem]) -> None:
    n = SOAK_READINGS
    system = make_system(gateways=8, sites=2, boards=10, readings=n, interval_s=1.0, summary_timeout_s=2.0)
    system.start()
    system.start_boards()
    obs = system.observers[0]
    time.sleep(30)
    warm = {i: rss_kb(system.procs.procs["gw%d" % i].pid) for i in (0, 1)}
    started = time.monotonic()
    killed = False
    samples: list[tuple[int, int]] = []  # (seconds after warm-up, gw0 RSS KiB), one a minute: the curve
    while any(system.procs.alive("board-" + b.device) for b in system.boards):
        time.sleep(5)
        elapsed = time.monotonic() - started
        if int(elapsed) // 60 != int(elapsed - 5) // 60:
            samples.append((int(elapsed), rss_kb(system.procs.procs["gw0"].pid)))
        if int(elapsed) // 120 != int(elapsed - 5) // 120:
            site = int(elapsed // 120) % 2
            system.gateways[site].broker.restart()
        if not killed and elapsed > n / 2:
            system.procs.kill("gw1")
            time.sleep(3)
            system.start_gateway(1)
            system.wait_healthy(1)
            warm[1] = 0  # a new process: measure it from here
            killed = True
    assert_boards_finish(system, None, 60)
    for site in (0, 1):
        boards = [b for b in system.boards if b.gateway == site]
        assert wait_answered(system, boards, n, 120), "site %d: readings unanswered" % site
        for board in boards:
            assert_every_reading_answered(system, board, n)
        expected = len(boards) * n * LEVELS
        assert obs.wait_until(outcomes_stored(system, site, expected), 120), (site, system.gateway_status(site))
    end = rss_kb(system.procs.procs["gw0"].pid)
    print("soak gw0 RSS KiB: warm-up %d, end %d (%.2fx); per minute %s" % (warm[0], end, end / warm[0], samples))
    # The bounded caches (docs/gateway.md "Memory") level off at ~1.3x the warm-up RSS.
    assert end < 1.5 * warm[0], (warm, end, samples)
