"""Round-trip time estimates and the request timeouts derived from them (RFC 6298's estimator).

How it works: per peer id, srtt and rttvar (EWMA gains 1/8 and 1/4) in a bounded cache
(``rtt_cache_size``, oldest dropped first), plus a node-wide srtt for peers not measured yet (it starts
from ``rpc_timeout_initial_s / rpc_rtt_multiplier``). A request's timeout is clamp(max(mult * srtt,
srtt + 4 * rttvar), ``rpc_timeout_floor_s``, ``rpc_timeout_cap_s``).
"""

from __future__ import annotations

from .config import SwarmConfig


class RttEstimator:
    __slots__ = ("config", "_rtt", "_srtt")

    def __init__(self, config: SwarmConfig) -> None:
        self.config = config
        self._rtt: dict[bytes, tuple[float, float]] = {}
        self._srtt = config.rpc_timeout_initial_s / max(config.rpc_rtt_multiplier, 1.0)

    def timeout_for(self, node_id: bytes | None) -> float:
        """The timeout a request to ``node_id`` gets now (from its RTT estimate)."""
        cfg = self.config
        est = self._rtt.get(node_id) if node_id is not None else None
        if est is None:
            t = cfg.rpc_rtt_multiplier * self._srtt
        else:
            t = max(cfg.rpc_rtt_multiplier * est[0], est[0] + 4 * est[1])
        return min(cfg.rpc_timeout_cap_s, max(cfg.rpc_timeout_floor_s, t))

    def sample(self, node_id: bytes, sample: float) -> None:
        est = self._rtt.get(node_id)
        if est is None:
            self._rtt[node_id] = (sample, sample / 2)
            if len(self._rtt) > self.config.rtt_cache_size:
                del self._rtt[next(iter(self._rtt))]
        else:
            srtt, var = est
            self._rtt[node_id] = (0.875 * srtt + 0.125 * sample, 0.75 * var + 0.25 * abs(srtt - sample))
        self._srtt = 0.875 * self._srtt + 0.125 * sample
