"""The swarm as the bridge sees it: a `Swarm` protocol, so another DHT (issue 9: OpenDHT) can stand in.

How it works: the bridge only calls the five methods below. `put` returns the replica count and raises
an exception whose class name is `SwarmUnavailable` (any backend's) when no peer took the value, so the
outbox keeps the packet and retries; `get` returns an object with `values`, `hops`, `messages`,
`elapsed_ms` (the UdpSwarm `LookupResult` shape). `make_swarm` builds the configured backend: our own
Kademlia node (`qis_gateway.swarm.api.UdpSwarm`, the default) or OpenDHT
(`qis_gateway.swarm_opendht.OpenDhtSwarm`, an optional extra).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LookupLike(Protocol):
    values: tuple[bytes, ...]
    hops: int
    messages: int
    elapsed_ms: float


@runtime_checkable
class Swarm(Protocol):
    async def start(self) -> None: ...

    async def stop(self, graceful: bool = True) -> None: ...

    async def put(self, address: bytes, value: bytes) -> int: ...

    async def get(self, address: bytes, limit: int = 200) -> Any: ...  # LookupLike

    def status(self) -> dict[str, Any]: ...


def is_unavailable(exc: BaseException) -> bool:
    """True for a backend's 'no peer answered / not running' error (retry later), by class name so the
    bridge need not import every backend."""
    return any(cls.__name__ in ("SwarmUnavailable", "SwarmStopped", "SwarmError") for cls in type(exc).__mro__)


def make_udp_swarm(listen: tuple[str, int], data_dir: Path, bootstrap: list[tuple[str, int]],
                   validator: Callable[[bytes, bytes], bool] | None, rate_limit_per_s: float = 0.0) -> Swarm:
    """Our Kademlia node on UDP, configured from the gateway settings."""
    from qis_gateway.swarm.api import UdpSwarm

    config = None
    if rate_limit_per_s > 0:
        import dataclasses

        from qis_gateway.swarm.config import SwarmConfig

        config = dataclasses.replace(SwarmConfig(), rate_limit_per_s=rate_limit_per_s)
    from qis_gateway.packets import value_signer

    # signer_of: the holder's per-signer quota and new-signer pacing (swarm/storage_policy.py).
    return UdpSwarm(listen, data_dir, bootstrap=bootstrap, config=config, validator=validator,
                    signer_of=value_signer)


def make_swarm(backend: str, listen: tuple[str, int], data_dir: Path, bootstrap: list[tuple[str, int]],
               validator: Callable[[bytes, bytes], bool] | None, rate_limit_per_s: float = 0.0,
               opendht_network: int | None = None) -> Swarm:
    """The swarm backend named in `[swarm] backend` ("kademlia" or "opendht")."""
    if backend == "kademlia":
        return make_udp_swarm(listen, data_dir, bootstrap, validator, rate_limit_per_s)
    if backend == "opendht":
        from qis_gateway.swarm_opendht import DEFAULT_NETWORK_ID, OpenDhtSwarm

        return OpenDhtSwarm(listen, data_dir, bootstrap, validator, rate_limit_per_s=rate_limit_per_s,
                            network_id=DEFAULT_NETWORK_ID if opendht_network is None else opendht_network)
    raise ValueError("unknown swarm backend %r (kademlia or opendht)" % backend)
