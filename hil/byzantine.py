"""A Byzantine swarm member for the HIL suite: joins the swarm and stores bad outcome packets at every
address a machine class can have, then stays up serving them until SIGTERM.

    python hil/byzantine.py --backend kademlia --bootstrap 127.0.0.1:PORT --data DIR \
        --honest-key gw0/gateway.key --machine-class pump

Kinds of packet, all labelled "BYZ-<kind>" so a test can look for them in summaries:
  untrusted     validly signed by this node's own key (refused under a trust list)
  tampered      signed by an honest gateway's key, then one byte of the label changed
  unsigned      an honest-looking packet whose signature is all zeros
  key-swapped   signed by this node, then the honest gateway's public key written in
  misaddressed  a genuine packet signed by the honest key for another address, stored here
It prints "BYZ-READY <stored>" once every put has been tried.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import time
from pathlib import Path

from qis.schema import load_schema
from qis_gateway.keys import load_signing_key
from qis_gateway.packets import OutcomePacket, encode

SCHEMA = Path(__file__).resolve().parents[1] / "shared" / "qis" / "schemas" / "machine_health.json"
SIG = 64
KEY_AT = -(SIG + 32)


def bad_packets(address: bytes, other: bytes, honest, byz) -> list[bytes]:  # noqa: ANN001
    now = int(time.time())

    def pkt(label: str, at: bytes = address) -> OutcomePacket:
        return OutcomePacket(at, "machine-health/1", now, (90, 40, -30), label, value=99.0, weight=1.0)

    tampered = bytearray(encode(pkt("BYZ-tampered"), honest))
    tampered[tampered.index(b"BYZ-tampered") + 4] ^= 0x01
    unsigned = bytearray(encode(pkt("BYZ-unsigned"), honest))
    unsigned[-SIG:] = bytes(SIG)
    swapped = bytearray(encode(pkt("BYZ-key-swapped"), byz))
    swapped[KEY_AT:-SIG] = bytes(honest.verify_key)
    return [encode(pkt("BYZ-untrusted"), byz), bytes(tampered), bytes(unsigned), bytes(swapped),
            encode(pkt("BYZ-misaddressed", other), honest)]


def all_addresses(machine_class: str) -> list[bytes]:
    schema = load_schema(str(SCHEMA))
    bands = {c.name: c.labels for c in schema.categorical if c.kind == "bands"}
    out: list[bytes] = []
    for combo in itertools.product(*bands.values()):
        fields = {"schema": schema.schema_id, "machine_class": machine_class, **dict(zip(bands, combo, strict=True))}
        for address in schema.level_addresses(fields):
            if address not in out:
                out.append(address)
    return out


async def main(args: argparse.Namespace) -> int:
    import nacl.signing

    host, port = args.bootstrap.rsplit(":", 1)
    boot = [(host, int(port))]
    if args.backend == "opendht":
        from qis_gateway.swarm_opendht import OpenDhtSwarm
        swarm = OpenDhtSwarm(("127.0.0.1", 0), Path(args.data), boot, validator=None)
    else:
        from qis_gateway.swarm.api import UdpSwarm
        swarm = UdpSwarm(("127.0.0.1", 0), Path(args.data), boot, validator=None)
    await swarm.start()
    honest = load_signing_key(Path(args.honest_key))
    byz = nacl.signing.SigningKey.generate()
    addresses = all_addresses(args.machine_class)
    tried = 0
    for i, address in enumerate(addresses):
        other = addresses[(i + 1) % len(addresses)]
        for data in bad_packets(address, other, honest, byz):
            try:
                await swarm.put(address, data)
            except Exception:  # honest nodes refuse; the value stays in this node's own store
                pass
            tried += 1
    print("BYZ-READY %d" % tried, json.dumps({"addresses": len(addresses)}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await swarm.stop(graceful=False)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="kademlia")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--honest-key", required=True)
    parser.add_argument("--machine-class", default="pump")
    sys.exit(asyncio.run(main(parser.parse_args())))
