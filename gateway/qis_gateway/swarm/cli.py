"""`qis-swarm`: run a swarm node, the simulator, or the UDP benchmark.

    qis-swarm node --listen HOST:PORT [--bootstrap HOST:PORT ...] --data DIR
        A standalone node until SIGTERM/SIGINT (= graceful leave). Prints one JSON line
        {"event": "listening", "address": [host, port], "node_id": hex} on stdout once bound, logs to stderr.
    qis-swarm simulate --nodes N --lookups L --seed S [--churn F] [--loss P] [--kill-after-store F] --json
        In-process simulator (swarm-core's sim.run_simulation); prints one JSON object.
    qis-swarm bench --nodes N --values V --lookups L [--crash F] [--procs P] [--peers opendht,kademlia] --json
        N real UDP nodes on 127.0.0.1 in P processes, ours and the peers on the same workload and layout
        (bench_udp.py); prints one JSON object.

`--version`, `-v`, `-q` and `--log-level` are the options every qis-edge command shares (qis_gateway.cliopts).

Exit status: 0 ok, 1 runtime failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from qis_gateway import cliopts

from .peers import parse_hostport

log = logging.getLogger("qis_gateway.swarm.cli")

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def _hostport(text: str) -> tuple[str, int]:
    try:
        return parse_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("%r must be in [0, 1)" % text)
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be >= 1" % text)
    return value


# -- node ------------------------------------------------------------------------------------------------
async def _run_node(args: argparse.Namespace) -> int:
    from .api import UdpSwarm
    from .config import SwarmConfig

    overrides: dict[str, Any] = {}
    if args.rate_limit_per_s is not None:
        overrides["rate_limit_per_s"] = args.rate_limit_per_s
        overrides["rate_limit_burst"] = max(args.rate_limit_per_s * 2, 1.0)
    if args.rate_limit_key:
        overrides["rate_limit_key"] = args.rate_limit_key
    if args.k:
        overrides["k"] = args.k
    swarm = UdpSwarm(args.listen, Path(args.data), args.bootstrap, config=SwarmConfig(**overrides))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before start: a SIGTERM during the join still leaves cleanly
        loop.add_signal_handler(sig, stop.set)
    await swarm.start()
    host, port = swarm.address
    print(json.dumps({"event": "listening", "address": [host, port], "node_id": swarm.node_id_hex}), flush=True)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.status_interval)
            except TimeoutError:
                log.info("status %s", json.dumps(swarm.status(), sort_keys=True))
    finally:
        log.info("stopping: graceful leave")
        await swarm.stop(graceful=True)
    print(json.dumps({"event": "stopped", "status": swarm.status()}), flush=True)
    return EXIT_OK


def cmd_node(args: argparse.Namespace) -> int:
    return asyncio.run(_run_node(args))


# -- simulate --------------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from .sim import run_simulation

    result = run_simulation(nodes=args.nodes, lookups=args.lookups, seed=args.seed, churn=args.churn, loss=args.loss,
                            kill_after_store=args.kill_after_store, tables=args.tables)
    print(json.dumps(result, sort_keys=True) if args.json else _pretty(result))
    return EXIT_OK


# -- bench -----------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench_udp import IMPLS, run_comparison

    peers = [p for p in (args.peers.split(",") if args.peers else []) if p and p != "none"]
    bad = [p for p in peers if p not in IMPLS or p == "ours"]
    if bad:
        print("qis-swarm bench: unknown peer(s) %s (choose from opendht, kademlia, none)" % ", ".join(bad),
              file=sys.stderr)
        return EXIT_USAGE
    # --backend runs one engine alone (issue 9: `qis-swarm bench --backend opendht`); default: ours + peers.
    impls = [args.backend] if args.backend else ["ours", *peers]
    if args.backend and args.backend not in IMPLS:
        print("qis-swarm bench: unknown backend %r (choose from %s)" % (args.backend, ", ".join(IMPLS)),
              file=sys.stderr)
        return EXIT_USAGE
    result = run_comparison(
        impls, nodes=args.nodes, values=args.values, lookups=args.lookups, crash=args.crash,
        procs=args.procs, packets=args.packets, value_bytes=args.value_bytes, seed=args.seed,
    )
    print(json.dumps(result, sort_keys=True) if args.json else _pretty(result))
    return EXIT_OK


def _pretty(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qis-swarm", description="QIS outcome swarm (Kademlia over UDP)")
    sub = p.add_subparsers(dest="command", required=True)

    n = sub.add_parser("node", help="run a standalone swarm node until SIGTERM")
    n.add_argument("--listen", type=_hostport, required=True, metavar="HOST:PORT", help="port 0 = any free port")
    n.add_argument("--bootstrap", type=_hostport, action="append", default=[], metavar="HOST:PORT")
    n.add_argument("--data", required=True, metavar="DIR", help="node key, values.sqlite3, peers.json")
    n.add_argument("--status-interval", type=float, default=60.0, metavar="S", help="log status every S seconds")
    n.add_argument("--rate-limit-per-s", type=float, default=None, help="per-source datagrams/s (0 = off)")
    n.add_argument("--rate-limit-key", choices=["ip", "addr"], default=None,
                   help="limit per IP (deployments) or per IP:port (many nodes on one host)")
    n.add_argument("--k", type=_positive, default=None, help="bucket size / replication (default 20)")
    n.set_defaults(func=cmd_node)

    s = sub.add_parser("simulate", help="in-process simulator with virtual time")
    s.add_argument("--nodes", type=_positive, required=True)
    s.add_argument("--lookups", type=_positive, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--churn", type=_fraction, default=0.0, help="churn fraction (see sim.run_simulation)")
    s.add_argument("--loss", type=_fraction, default=0.0, help="message loss probability")
    s.add_argument("--kill-after-store", type=_fraction, default=0.0,
                   help="fraction of nodes killed after storing, with no repair")
    s.add_argument("--tables", choices=["join", "ideal"], default="join",
                   help="routing tables built by joining (default) or pre-filled ideally (baseline)")
    s.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    s.set_defaults(func=cmd_simulate)

    b = sub.add_parser("bench", help="real UDP nodes on 127.0.0.1, ours vs OpenDHT and kademlia")
    b.add_argument("--nodes", type=_positive, required=True)
    b.add_argument("--values", type=_positive, required=True, help="addresses stored")
    b.add_argument("--lookups", type=_positive, required=True)
    b.add_argument("--crash", type=_fraction, default=0.0, help="fraction SIGKILLed before the lookups")
    b.add_argument("--procs", type=_positive, default=4, help="worker processes (same layout for every impl)")
    b.add_argument("--packets", type=_positive, default=3, help="values per address")
    b.add_argument("--value-bytes", type=_positive, default=300)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--peers", default="opendht,kademlia", help="comma list of opendht,kademlia or 'none'")
    b.add_argument("--backend", default=None, help="measure one engine alone: ours (Kademlia), opendht or kademlia")
    b.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    b.set_defaults(func=cmd_bench)
    cliopts.add_common_options(p, "qis-swarm", sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cliopts.configure_logging(parser, args, logging.INFO, fmt="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_FAIL
    except (OSError, ValueError) as exc:  # port in use, unreadable key file (IdentityError), bad config
        print("qis-swarm: %s" % exc, file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:  # StoreError, SwarmError, a missing bench peer: one line, not a traceback
        if type(exc).__name__ in ("StoreError", "SwarmError", "BenchUnavailable") or isinstance(exc, ImportError):
            print("qis-swarm: %s" % exc, file=sys.stderr)
            return EXIT_FAIL
        raise


if __name__ == "__main__":
    sys.exit(main())
