"""Rate-limited logging of rejections: at most one line per (device, reason) per interval.

How it works: the first rejection of a (device, reason) pair is logged at once; later ones within
`interval_s` are only counted, and the next line that gets through says how many were suppressed. So a
misbehaving board sending 100 bad frames a second costs one log line a minute, not a flood.
Time is passed in (`now_s`), so tests drive it directly.
"""

from __future__ import annotations

import logging


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float, max_keys: int = 10000) -> None:
        self._log = logger
        self.interval_s = interval_s
        self._max_keys = max_keys
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def reject(self, device: str, reason: str, detail: str, now_s: float) -> bool:
        """Log (or count) one rejection; True when a line was written."""
        key = (device, reason)
        last = self._last.get(key)
        if last is not None and now_s - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) >= self._max_keys and key not in self._last:
            self._last.clear()  # bounded memory under a flood of invented device ids
            self._suppressed.clear()
        self._last[key] = now_s
        skipped = self._suppressed.pop(key, 0)
        more = " (+%d more since last report)" % skipped if skipped else ""
        self._log.warning("rejected frame from %s: %s: %s%s", device, reason, detail, more)
        return True
