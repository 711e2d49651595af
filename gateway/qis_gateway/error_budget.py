"""How many signed error answers a device gets: a token bucket per device (issue 18 point 9).

How it works: every refused board frame from a known device used to be answered on the device's `error`
topic, signed with its secret and queued by the broker at QoS 1 until the board reconnects. A flood of
forged or broken frames (50,000 bad tags) thus became 50,000 queued answers. `ErrorBudget.allow(device,
now_s)` lets `burst` answers through at once and then `per_minute` a minute (a token bucket per device,
the scheme Mosquitto and most MQTT services use for per-client limits); the bridge counts the rest in
`qis_gateway_error_answers_suppressed_total{reason}` instead of answering. The rejection itself is still
counted and (rate-limited, ratelog.py) logged, so nothing is silent. The table is bounded: beyond
`max_devices` the least recently answered device is forgotten (it starts again with a full bucket).
Time is passed in (`now_s`); a clock that goes back refills nothing and takes nothing.
"""

from __future__ import annotations

from collections import OrderedDict

BURST = 5
PER_MINUTE = 3.0
MAX_DEVICES = 10_000


class ErrorBudget:
    def __init__(self, burst: int = BURST, per_minute: float = PER_MINUTE, max_devices: int = MAX_DEVICES) -> None:
        if burst < 1 or per_minute <= 0 or max_devices < 1:
            raise ValueError("burst and max_devices must be at least 1, per_minute above 0")
        self.burst = float(burst)
        self.rate_per_s = per_minute / 60.0
        self.max_devices = max_devices
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # device -> (tokens, at_s)

    def allow(self, device: str, now_s: float) -> bool:
        """Take one token from `device`'s bucket: True when an error answer may be sent now."""
        tokens, at_s = self._buckets.pop(device, (self.burst, now_s))
        tokens = min(self.burst, tokens + max(0.0, now_s - at_s) * self.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[device] = (tokens, max(at_s, now_s))
        if len(self._buckets) > self.max_devices:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
