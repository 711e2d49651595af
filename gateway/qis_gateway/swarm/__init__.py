"""The gateways' swarm: a Kademlia DHT storing outcome packets by 32-byte keyspace address.

Sans-IO core (no sockets, clocks or global random; see docs/swarm.md):
``identity`` (Ed25519 key, node id = SHA-256 of the public key), ``config`` (SwarmConfig), ``store``
(ValueStore protocol, MemoryValueStore), ``events``, ``wire`` (msgpack datagrams), ``routing`` (k-buckets),
``lookup`` (alpha-in-flight iterative lookup), ``ops`` (get / put / join / leave), ``rpc`` (handlers),
``node`` (SwarmNode). Drivers: ``sim`` (virtual-time simulator), ``udp`` / ``api`` (asyncio UDP).
"""

from .config import SwarmConfig
from .errors import SwarmError, SwarmStopped, SwarmUnavailable, SwarmUsageError, WireError
from .events import GetDone, JoinDone, LeaveDone, PutDone, SwarmEvent
from .identity import NodeIdentity
from .node import SwarmNode
from .store import MemoryValueStore, ValueStore

__all__ = [
    "GetDone", "JoinDone", "LeaveDone", "MemoryValueStore", "NodeIdentity", "PutDone", "SwarmConfig",
    "SwarmError", "SwarmEvent", "SwarmNode", "SwarmStopped", "SwarmUnavailable", "SwarmUsageError", "ValueStore",
    "WireError",
]
