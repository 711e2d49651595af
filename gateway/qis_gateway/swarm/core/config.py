"""Tunables of a swarm node (one frozen dataclass; defaults fit loopback and a LAN of Raspberry Pis).

Times are seconds of the driver's clock (the core never reads one). Setting ``rate_limit_per_s`` to 0
disables the per-source limit (the simulator does; real nodes keep it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class ConfigError(ValueError):
    """A SwarmConfig field is out of range."""


@dataclass(frozen=True)
class SwarmConfig:
    # Kademlia paper §2: bucket size / replication k and lookup parallelism alpha.
    k: int = 20
    alpha: int = 3
    # Largest datagram we send and accept (fits a 1500-byte Ethernet MTU with IP/UDP headers).
    max_datagram: int = 1400
    # Per-peer adaptive RPC timeout: clamp(rtt_multiplier * smoothed RTT, floor, cap); peers never
    # measured use the node-wide smoothed RTT, starting from rpc_timeout_initial_s.
    rpc_timeout_floor_s: float = 0.02
    rpc_timeout_cap_s: float = 1.0
    rpc_timeout_initial_s: float = 0.25
    rpc_rtt_multiplier: float = 3.0
    rpc_retries: int = 1
    # Values: expiry after value_ttl_s unless re-stored; the origin re-stores every republish_interval_s.
    value_ttl_s: float = 86400.0
    republish_interval_s: float = 43200.0
    # Buckets with no lookup inside their range for this long get a refresh lookup (Kademlia §2.3).
    refresh_interval_s: float = 900.0
    # Store caps; the eviction rules are in storage_policy.py / docs/swarm.md.
    max_values_per_address: int = 256
    max_values_per_node: int = 100_000
    max_value_bytes: int = 512
    # Storage fairness (storage_policy.py; needs the gateway's signer_of): the first signer at an address
    # holds at most max_values_per_signer values there, a later one signer_quota_share of the values of
    # the signers seen before it, within [min_values_per_signer, max_values_per_signer]. A signer new at
    # an address is admitted from one source IP at most new_signer_burst times at once, then one per
    # new_signer_interval_s, and over all addresses new_signers_per_source_burst, then
    # new_signers_per_source_per_s; the admission tables hold admission_table_size entries each.
    max_values_per_signer: int = 32
    min_values_per_signer: int = 8
    signer_quota_share: float = 0.5
    new_signer_burst: float = 4.0
    new_signer_interval_s: float = 60.0
    new_signers_per_source_burst: float = 256.0
    new_signers_per_source_per_s: float = 4.0
    admission_table_size: int = 16384
    # Per-source token bucket over all incoming datagrams; key "ip" (deployments) or "addr" (ip, port).
    rate_limit_per_s: float = 500.0
    rate_limit_burst: float = 1000.0
    rate_limit_key: str = "ip"
    # Proven sources (an id proof checked from that address) keep their own bucket, at most
    # rate_limit_max_sources of them; all others share rate_limit_slots hashed buckets and, together,
    # rate_limit_unproven_per_s (policy.RateLimiter; 0 = no shared cap).
    rate_limit_max_sources: int = 4096
    rate_limit_slots: int = 4096
    rate_limit_unproven_per_s: float = 2000.0
    # A proven source refused by its bucket gets a BUSY answer, at most one per this interval.
    rate_limit_busy_interval_s: float = 0.05
    # STORE tokens (BEP 5): MAC of the source address under a secret rotated every token_lifetime_s / 2;
    # a token stays valid for token_lifetime_s.
    token_lifetime_s: float = 600.0
    # Routing table: replacement cache per bucket; a full bucket pings its least-recently-seen contact at
    # most once per evict_ping_interval_s; a contact is dropped after contact_max_failures failed RPCs.
    replacement_cache_size: int = 8
    evict_ping_interval_s: float = 60.0
    contact_max_failures: int = 2
    # Caches bounding per-peer state: measured RTTs and proven (addr -> node id) bindings for peers that
    # are not in the routing table.
    rtt_cache_size: int = 1024
    proof_cache_size: int = 1024
    # Outstanding challenges to requesters (each answered by a PROOF within 30 s or dropped).
    challenge_cache_size: int = 1024
    # Address validation before answers larger than 3x their request (QUIC's rule): validated IPs are
    # kept in two bitmaps of 2**address_validation_bits bits (policy.ValidatedAddresses; 2 KB each).
    address_validation_bits: int = 14
    # A get ends once this many holders have delivered every value they hold (all pages) and no
    # answered holder reported more values than collected, or when the lookup is exhausted.
    get_quorum: int = 2
    # Pages of one holder a get keeps in flight (get.py): an address of 256 packets is ~50 pages.
    get_page_window: int = 8
    # Every get, put and node lookup finishes by this long after it started, with what it has then
    # (a put's node lookup by half of it); nothing is sent for it afterwards (ops.py, deadlines.py).
    op_deadline_s: float = 5.0
    # Join: after the self-lookup, refresh up to this many buckets farther than the closest neighbour
    # (Kademlia §2.3 refreshes all of them; 0 = none).
    join_refresh_buckets: int = 256
    # Housekeeping period (expiry, token rotation, refresh checks).
    maintenance_interval_s: float = 10.0
    # A swarm of one: own values put while the routing table was empty are kept locally and handed to
    # peers once some appear, up to handover_per_tick addresses per maintenance tick; at most
    # handover_max_addresses are remembered (beyond that, the oldest wait for the republishing pass).
    handover_per_tick: int = 32
    handover_max_addresses: int = 10_000
    # Isolation (a burst of our own, or peers that shed our requests): a request that times out counts
    # against its contact only while the table holds more than contact_floor contacts and some other peer
    # has answered us since it was sent (when every request times out, the fault is most likely ours), or
    # once nobody at all has answered for isolation_grace_s (then the peers are most likely gone).
    # Below rejoin_below contacts the node joins again through its bootstrap addresses and the contacts
    # it lost lately, every rejoin_interval_s while the table stays that low (a PING per seed and a
    # lookup of our own id: cheap, and nothing is sent when there is no seed).
    contact_floor: int = 2
    isolation_grace_s: float = 10.0
    rejoin_below: int = 2
    rejoin_interval_s: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise ConfigError("SwarmConfig.%s must be >= 0, got %r" % (f.name, value))
        if self.k < 1 or self.alpha < 1:
            raise ConfigError("SwarmConfig.k and .alpha must be >= 1")
        if self.max_datagram < 512:
            raise ConfigError("SwarmConfig.max_datagram must be >= 512 bytes")
        if self.max_value_bytes > self.max_datagram - 200:
            raise ConfigError("SwarmConfig.max_value_bytes must leave 200 bytes of the datagram for headers")
        if self.rate_limit_key not in ("ip", "addr"):
            raise ConfigError("SwarmConfig.rate_limit_key must be 'ip' or 'addr'")
        if self.rpc_timeout_floor_s <= 0 or self.rpc_timeout_cap_s < self.rpc_timeout_floor_s:
            raise ConfigError("SwarmConfig needs 0 < rpc_timeout_floor_s <= rpc_timeout_cap_s")
        if self.op_deadline_s <= 0:
            raise ConfigError("SwarmConfig.op_deadline_s must be > 0")
        if self.get_quorum < 1:
            raise ConfigError("SwarmConfig.get_quorum must be >= 1")
        if self.get_page_window < 1:
            raise ConfigError("SwarmConfig.get_page_window must be >= 1")
