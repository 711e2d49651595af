"""The gateways' swarm: a Kademlia DHT storing outcome packets by 32-byte keyspace address.

``core/``: the sans-IO core (no I/O, clocks, sockets or global random; its ``__init__`` lists the
modules; see docs/swarm.md). Beside it: ``api`` / ``udp`` (asyncio UDP driver, ``UdpSwarm``), ``sim``
(virtual-time simulator), ``store_sqlite`` / ``published`` (SQLite stores), ``keyfile`` (the node key),
``peers`` (the saved peer list), ``cli`` (``qis-swarm``), ``errors``.
"""

from .core.config import SwarmConfig
from .core.events import GetDone, JoinDone, LeaveDone, PutDone, SwarmEvent
from .core.identity import NodeIdentity
from .core.node import SwarmNode
from .core.store import MemoryValueStore, ValueStore
from .errors import SwarmError, SwarmStopped, SwarmUnavailable, SwarmUsageError, WireError

__all__ = [
    "GetDone", "JoinDone", "LeaveDone", "MemoryValueStore", "NodeIdentity", "PutDone", "SwarmConfig",
    "SwarmError", "SwarmEvent", "SwarmNode", "SwarmStopped", "SwarmUnavailable", "SwarmUsageError", "ValueStore",
    "WireError",
]
