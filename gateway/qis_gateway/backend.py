"""The swarm as the bridge sees it: a `Swarm` protocol, so another DHT (issue 9: OpenDHT) can stand in.

How it works: the bridge only calls the six methods below. `put` returns the replica count; `put_many`
stores several values at one address with one operation where the backend can (our Kademlia: one
lookup, STOREs paged to each closest node; OpenDHT: its puts run side by side) and returns the fewest
replicas any of them got; `get` returns a `LookupResult` (values, hops, messages, elapsed_ms, first_ms).
`put_many(swarm, address, values)` here calls the backend's own, or puts one value at a time, side by
side, for a backend without it. Every backend raises the swarm
package's exceptions (`qis_gateway.swarm.errors`), and callers sort them by type:

- `is_unavailable(exc)`: `SwarmUnavailable` (no peer answered) or `SwarmStopped` (not running): an
  outage; the outbox keeps the packet and retries, a lookup answers with what it has.
- `SwarmUsageError` (a value the node's own validator refuses, e.g. a permissioned gateway whose own key
  is not in `trusted_keys`; a bad address length): a local fault that no retry can mend. It is reported
  loudly and never retried.
- anything else is our bug and propagates.

`make_swarm` builds the configured backend: our own Kademlia node (`qis_gateway.swarm.api.UdpSwarm`, the
default) or OpenDHT (`qis_gateway.swarm_opendht.OpenDhtSwarm`, an optional extra).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from qis_gateway.config import SwarmSettings
from qis_gateway.packets import value_signer
from qis_gateway.swarm import SwarmConfig, SwarmStopped, SwarmUnavailable
from qis_gateway.swarm.api import LookupResult, UdpSwarm

__all__ = ["LookupResult", "Swarm", "is_unavailable", "make_swarm", "make_udp_swarm", "put_many", "values_per_signer"]


@runtime_checkable
class Swarm(Protocol):
    async def start(self) -> None: ...

    async def stop(self, graceful: bool = True) -> None: ...

    async def put(self, address: bytes, value: bytes) -> int: ...

    async def put_many(self, address: bytes, values: list[bytes]) -> int: ...

    async def get(self, address: bytes, limit: int = 200) -> LookupResult: ...

    def status(self) -> dict[str, Any]: ...


async def put_many(swarm: Any, address: bytes, values: list[bytes]) -> int:
    """`swarm.put_many`, or for a backend without one its puts side by side (the fewest replicas; the
    first error raised once all have ended: a retry puts them all again, which replicas take as no-ops)."""
    own = getattr(swarm, "put_many", None)
    if own is not None:
        return int(await own(address, values))
    results = await asyncio.gather(*(swarm.put(address, v) for v in values), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return min((int(r) for r in results), default=0)  # type: ignore[arg-type]


def values_per_signer(swarm: Any) -> int | None:
    """How many values of one signer the swarm's holders keep per address (its newest), or None for a
    backend without a per-signer quota (OpenDHT, test doubles, a node without `signer_of`)."""
    if not isinstance(swarm, UdpSwarm) or swarm.signer_of is None:
        return None
    config = swarm.config or SwarmConfig()  # before start() a node without its own config uses the defaults
    return int(min(config.max_values_per_signer, config.max_values_per_address))


def is_unavailable(exc: BaseException) -> bool:
    """True for an outage (retry later): `SwarmUnavailable` or `SwarmStopped`, never a usage error."""
    return isinstance(exc, (SwarmUnavailable, SwarmStopped))


def make_udp_swarm(listen: tuple[str, int], data_dir: Path, bootstrap: Iterable[tuple[str, int]],
                   validator: Callable[[bytes, bytes], bool] | None, rate_limit_per_s: float = 0.0) -> Swarm:
    """Our Kademlia node on UDP; `rate_limit_per_s` 0 keeps the swarm's own default."""
    config = dataclasses.replace(SwarmConfig(), rate_limit_per_s=rate_limit_per_s) if rate_limit_per_s > 0 else None
    # signer_of: the holder's per-signer quota and new-signer pacing (swarm/core/storage_policy.py).
    return UdpSwarm(listen, data_dir, bootstrap=bootstrap, config=config, validator=validator,
                    signer_of=value_signer)


def make_swarm(settings: SwarmSettings, data_dir: Path, validator: Callable[[bytes, bytes], bool] | None) -> Swarm:
    """The swarm backend named in `[swarm] backend` ("kademlia" or "opendht")."""
    if settings.backend == "kademlia":
        return make_udp_swarm(settings.listen, data_dir, settings.bootstrap, validator, settings.rate_limit_per_s)
    if settings.backend == "opendht":
        from qis_gateway.swarm_opendht import OpenDhtSwarm

        return OpenDhtSwarm(settings.listen, data_dir, list(settings.bootstrap), validator,
                            rate_limit_per_s=settings.rate_limit_per_s, network_id=settings.opendht_network)
    raise ValueError("unknown swarm backend %r (kademlia or opendht)" % settings.backend)
