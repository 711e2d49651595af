"""`qis-swarm`: run a swarm node or the simulator.

    qis-swarm node --listen HOST:PORT [--bootstrap HOST:PORT ...] --data DIR
        A standalone node until SIGTERM/SIGINT (= graceful leave). Prints one JSON line
        {"event": "listening", "address": [host, port], "node_id": hex} on stdout once bound, logs to stderr.
    qis-swarm simulate --nodes N --lookups L --seed S [--churn F] [--loss P] [--kill-after-store F] --json
        In-process simulator (swarm-core's sim.run_simulation); prints one JSON object.

The UDP benchmark against other engines (OpenDHT, PyPI kademlia) is not part of the installed package:
run it from a checkout, `python bench/bench_udp.py --nodes N --values V --lookups L ...`.

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


# -- node ------------------------------------------------------------------------------------------------
async def _run_node(args: argparse.Namespace) -> int:
    from .api import UdpSwarm
    from .core.config import SwarmConfig

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
    n.add_argument("--k", type=cliopts.positive_int, default=None, help="bucket size / replication (default 20)")
    n.set_defaults(func=cmd_node)

    s = sub.add_parser("simulate", help="in-process simulator with virtual time")
    s.add_argument("--nodes", type=cliopts.positive_int, required=True)
    s.add_argument("--lookups", type=cliopts.positive_int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--churn", type=cliopts.fraction, default=0.0, help="churn fraction (see sim.run_simulation)")
    s.add_argument("--loss", type=cliopts.fraction, default=0.0, help="message loss probability")
    s.add_argument("--kill-after-store", type=cliopts.fraction, default=0.0,
                   help="fraction of nodes killed after storing, with no repair")
    s.add_argument("--tables", choices=["join", "ideal"], default="join",
                   help="routing tables built by joining (default) or pre-filled ideally (baseline)")
    s.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    s.set_defaults(func=cmd_simulate)

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
    except Exception as exc:  # StoreError, SwarmError: one line, not a traceback
        if type(exc).__name__ in ("StoreError", "SwarmError") or isinstance(exc, ImportError):
            print("qis-swarm: %s" % exc, file=sys.stderr)
            return EXIT_FAIL
        raise


if __name__ == "__main__":
    sys.exit(main())
