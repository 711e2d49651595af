"""The swarm's sans-IO core: a Kademlia node as a state machine (see docs/swarm.md).

Folder rule (tests/swarm/test_core_layering.py checks every module here): no I/O, no clock, no sockets,
no global random. Inputs are method calls with the driver's time (``now_s``), outputs are drained
(datagrams, events, the next timer); randomness comes from the injected ``random.Random``; keys arrive
as ready ``identity.NodeIdentity`` objects. Drivers and storage sit beside this folder: ``udp`` / ``api``
(asyncio UDP), ``sim`` (virtual time), ``store_sqlite`` / ``published`` (SQLite), ``keyfile``, ``peers``,
``cli``.

Modules, leaves first: ``config``, ``events``, ``routing`` (k-buckets), ``store`` (ValueStore and
PublishedSet protocols, in-memory versions), ``wire`` (msgpack datagrams), ``identity`` (Ed25519 id),
``lookup`` (alpha-in-flight iterative lookup), ``policy`` (storage caps, tokens, rate limit),
``requester`` (what an operation may use of its node; ``Pending``), ``rpc`` (requests in flight,
handlers, proofs), ``ops`` (find node / get / put), ``refresh`` (bucket refresh), ``membership`` (join /
leave), ``housekeeping`` (expiry, refresh, republishing, hand-over), ``node`` (``SwarmNode``, the
composition root). The imports form no circle (tests/swarm/test_core_layering.py).
"""
