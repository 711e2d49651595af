"""Refuse to sign outcome packets while the wall clock is clearly wrong (issue 18 point 10).

A Raspberry Pi has no real-time clock: until network time arrives it boots at the last time it saved
(fake-hwclock) or at its build date, hours or days behind. A packet signed then carries a ``created_s`` in
the past for ever (synthesis weights evidence by recency, so it would count less) and, worse, hides how
stale the rest is. ``SigningClock`` says when not to sign:

- before ``floor_s`` (default: 2026-01-01, before this software existed): the clock was never set;
- earlier than the newest ``created_s`` this gateway signed before, less ``slack_s``: the clock went
  backwards (a reboot without network time after the gateway already signed with a good clock). Only our
  own earlier signing times move this floor, never a peer's packet (a hostile signer could otherwise post
  a far-future time and stop us signing);
- optionally (``require_kernel_sync``) while the kernel reports the clock unsynchronised (``adjtimex``
  state TIME_ERROR: no NTP/chrony/timesyncd discipline yet). Off by default: hosts without an NTP daemon
  would never sign.

Where it is used: the bridge calls ``problem(now_s)`` just before it signs an outcome and
``note_signed(created_s)`` after; it seeds the floor at start with the newest ``created_s`` in its outbox.
A refusal holds the outcome (bridge.py, the state DB's ``held`` table), and ``Bridge.sign_held`` signs it
once the clock is right: not a fault of the board.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

FLOOR_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"


class ClockUnsynchronised(RuntimeError):
    """The wall clock is clearly wrong; do not sign now (the message says why)."""


def kernel_clock_synchronised() -> bool | None:
    """The kernel's view (Linux ``adjtimex``): True, False, or None when it cannot be asked."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError) as exc:
        log.debug("adjtimex unavailable: %s", exc)
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


class SigningClock:
    """Decides whether ``now_s`` (unix seconds) is a plausible time to sign with."""

    def __init__(self, floor_s: float = FLOOR_S, slack_s: float = 600.0, require_kernel_sync: bool = False) -> None:
        self.floor_s = float(floor_s)
        self.slack_s = float(slack_s)
        self.require_kernel_sync = require_kernel_sync
        self.newest_signed_s = 0.0
        self.refused = 0

    def note_signed(self, created_s: float) -> None:
        """Record a time we signed with (or the newest ``created_s`` of our own outbox, at start)."""
        self.newest_signed_s = max(self.newest_signed_s, float(created_s))

    def problem(self, now_s: float) -> str | None:
        """Why ``now_s`` must not be signed with, or None when it may."""
        if now_s < self.floor_s:
            return "the clock reads %.0f, before %.0f: it was never set (no network time yet?)" % (
                now_s, self.floor_s)
        if now_s < self.newest_signed_s - self.slack_s:
            return ("the clock reads %.0f, %.0f s before a packet this gateway already signed: it went back "
                    "(rebooted without network time?)" % (now_s, self.newest_signed_s - now_s))
        if self.require_kernel_sync and kernel_clock_synchronised() is False:
            return "the kernel reports the clock unsynchronised (no NTP yet)"
        return None

    def check(self, now_s: float) -> None:
        """Raise ClockUnsynchronised when ``now_s`` must not be signed with."""
        why = self.problem(now_s)
        if why is not None:
            self.refused += 1
            raise ClockUnsynchronised(why)
