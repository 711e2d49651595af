"""Forged-source flood for the adversarial suite (run as a separate process, so it competes for CPU as a
real attacker's traffic would not, and the node under test runs its own loop undisturbed).

    python flood.py HOST PORT SOURCES RATE SECONDS

Sends valid FIND_NODE requests (fresh nonce, random sender id: each one asks the node for a signed
proof) from SOURCES distinct loopback addresses 127.x.y.z, round robin, at RATE datagrams/s for SECONDS.
Prints one JSON line {"sent": n, "seconds": s}.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from qis_gateway.swarm.core import wire


def _sources(n: int) -> list[str]:
    out = []
    i = 1 << 16  # 127.1.0.0 upwards: never 127.0.0.x, where the honest nodes live
    while len(out) < n:
        a, b, c = (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF
        i += 1
        if c not in (0, 255):
            out.append("127.%d.%d.%d" % (a, b, c))
    return out


def main(host: str, port: int, sources: int, rate: float, seconds: float) -> None:
    socks = []
    for ip in _sources(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, 0))
        s.setblocking(False)
        socks.append(s)
    msgs = [wire.encode(wire.FindNode(i, os.urandom(32), os.urandom(16), os.urandom(32))) for i in range(len(socks))]
    dst = (host, port)
    sent = 0
    start = time.monotonic()
    end = start + seconds
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * rate)
        while sent < due:
            try:
                socks[i].sendto(msgs[i], dst)
            except OSError:  # ICMP errors from the node's answers to forged sources land here
                pass
            sent += 1
            i = (i + 1) % len(socks)
        time.sleep(0.002)
    print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
