"""SwarmNode: one Kademlia node as a sans-IO state machine (body in progress)."""

from __future__ import annotations

import random
from collections.abc import Callable

from .config import SwarmConfig
from .events import SwarmEvent
from .identity import NodeIdentity
from .store import ValueStore

Address = tuple[str, int]


class SwarmNode:
    def __init__(
        self,
        identity: NodeIdentity,
        config: SwarmConfig,
        rng: random.Random,
        store: ValueStore,
        validator: Callable[[bytes, bytes], bool] | None = None,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.config = config
        self.store = store
        self.counters: dict[str, int] = {}

    def receive_datagram(self, data: bytes, addr: Address, now_s: float) -> None:
        raise NotImplementedError

    def handle_timer(self, now_s: float) -> None:
        raise NotImplementedError

    def bootstrap(self, addrs: list[Address], now_s: float) -> None:
        raise NotImplementedError

    def start_get(self, address: bytes, limit: int, now_s: float) -> int:
        raise NotImplementedError

    def start_put(self, address: bytes, value: bytes, now_s: float) -> int:
        raise NotImplementedError

    def leave(self, now_s: float) -> None:
        raise NotImplementedError

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        raise NotImplementedError

    def next_event(self) -> SwarmEvent | None:
        raise NotImplementedError

    def get_timer(self) -> float | None:
        raise NotImplementedError
