"""Multi-process UDP swarm benchmark on 127.0.0.1: ours and the peers (OpenDHT, PyPI ``kademlia``) alike.

How it works:
- The coordinator (this process, synchronous) starts ``procs`` worker processes (multiprocessing "spawn").
  Each worker runs one asyncio loop hosting a share of the N nodes of ONE implementation through an
  *adapter* (``start_nodes``/``put``/``get``/``messages``/``stop``); the coordinator talks to workers over
  pipes. Every implementation gets the same layout: the same node counts per process, the same addresses,
  values, lookup sources and crash set (all drawn from ``seed``).
- When ``crash`` > 0 the crashed nodes live in their own processes (``round(crash*N)`` nodes spread over
  ``max(1, round(crash*procs))`` of the ``procs`` processes); after the puts those processes get SIGKILL (no
  goodbye) and the lookups start at once, from random surviving nodes.
- Workload: ``values`` addresses x ``packets`` values of ``value_bytes`` random bytes, each value put from
  a random node (``opts["put_concurrency"]``, default 4, puts in flight per process). Lookups run one at
  a time (one in flight in the whole swarm), so latency is not queueing.
  A lookup succeeds when every value of the address came back. Adapters time lookups inside the worker:
  ``first_ms`` to the first value, ``last_ms`` to the last expected value, ``done_ms`` until the
  implementation reports the lookup finished; ``latency_ms`` in the result is ``done_ms``.
- One-value-per-key implementations (``kademlia``) store an address's packets as one concatenated value.

Run from a checkout (the adapters bench_ours.py, bench_opendht.py, bench_kademlia.py sit beside it; this
code is not in the installed package)::

    .venv/bin/python bench/bench_udp.py --nodes N --values V --lookups L [--crash F] [--procs P]
        [--packets 3] [--value-bytes 300] [--seed 1] [--peers opendht,kademlia | none] [--backend ours] [--json]

prints one JSON object; exit 2 on bad arguments. ``bench/bench_swarm.py`` runs the published scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qis_gateway import cliopts

log = logging.getLogger(__name__)

Address = tuple[str, int]

IMPLS = ("ours", "opendht", "kademlia")


class BenchUnavailable(Exception):
    """A peer implementation is not installed (message says which pip package to install)."""


def make_adapter(impl: str, opts: dict[str, Any]) -> Any:
    """An adapter instance for ``impl`` (peers are imported only here, lazily)."""
    return make_adapter_class(impl)(opts)


def check_available(impl: str) -> str | None:
    """None when ``impl`` can run here, else a message saying what to install."""
    mod = {"opendht": "opendht", "kademlia": "kademlia"}.get(impl)
    if mod is None:
        return None
    try:
        __import__(mod)
    except ImportError as exc:
        return "%s is not installed (%s): pip install '%s' or pip install '.[bench]'" % (impl, exc, mod)
    return None


# -- worker process ---------------------------------------------------------------------------------------
def _worker_main(conn: Any, impl: str, count: int, opts: dict[str, Any], workdir: str) -> None:
    logging.basicConfig(level=opts.get("log_level", logging.WARNING), format="%(asctime)s w%(process)d %(message)s")
    for noisy in ("kademlia", "rpcudp"):  # the peer logs every 5 s reply timeout (rpcudp at ERROR)
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        asyncio.run(_worker_async(conn, impl, count, opts, Path(workdir)))
    except KeyboardInterrupt:
        pass


async def _worker_async(conn: Any, impl: str, count: int, opts: dict[str, Any], workdir: Path) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except EOFError:
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("stop",))

    loop.add_reader(conn.fileno(), readable)
    adapter = make_adapter(impl, opts)
    while True:
        cmd = await inbox.get()
        op = cmd[0]
        try:
            if op == "start":
                reply: Any = await adapter.start_nodes(count, cmd[1], workdir)
            elif op == "put":
                sem = asyncio.Semaphore(int(cmd[2]))

                async def one(idx: int, key: bytes, value: bytes, sem: asyncio.Semaphore = sem) -> bool:
                    async with sem:
                        return await adapter.put(idx, key, value)

                reply = await asyncio.gather(*(one(i, k, v) for i, k, v in cmd[1]))
            elif op == "get":
                reply = await adapter.get(cmd[1], cmd[2], frozenset(cmd[3]))
            elif op == "messages":
                reply = adapter.messages()
            elif op == "counters":
                reply = adapter.counters() if hasattr(adapter, "counters") else {}
            elif op == "stop":
                await adapter.stop()
                conn.send(("ok", None))
                return
            else:
                raise ValueError("unknown command %r" % (op,))
            conn.send(("ok", reply))
        except Exception as exc:  # report to the coordinator instead of dying silently
            log.exception("worker command %s failed", op)
            conn.send(("error", "%s: %s" % (type(exc).__name__, exc)))


class _Worker:
    def __init__(self, ctx: Any, impl: str, count: int, opts: dict[str, Any], workdir: str) -> None:
        self.count = count
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, impl, count, opts, workdir), daemon=True)
        self.proc.start()
        child.close()
        self.addrs: list[Address] = []
        self.alive = True

    def send(self, *cmd: Any) -> None:
        self.conn.send(cmd)

    def recv(self, timeout_s: float = 120.0) -> Any:
        if not self.conn.poll(timeout_s):
            raise TimeoutError("worker %d did not answer within %.0f s" % (self.proc.pid, timeout_s))
        status, reply = self.conn.recv()
        if status != "ok":
            raise RuntimeError("worker %d: %s" % (self.proc.pid, reply))
        return reply

    def call(self, *cmd: Any, timeout_s: float = 120.0) -> Any:
        self.send(*cmd)
        return self.recv(timeout_s)

    def kill(self) -> None:
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(5)
        self.alive = False

    def close(self) -> None:
        if self.alive and self.proc.is_alive():
            try:
                self.call("stop", timeout_s=15)
            except (OSError, EOFError, TimeoutError, RuntimeError) as exc:
                log.warning("worker %d did not stop cleanly: %s", self.proc.pid, exc)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.alive = False


def layout(nodes: int, procs: int, crash: float) -> tuple[list[int], list[bool]]:
    """Node counts per process and which processes get SIGKILL (crashed nodes live in their own processes)."""
    if nodes < 2 or procs < 1:
        raise ValueError("need at least 2 nodes and 1 process")
    procs = min(procs, nodes)
    n_crash = round(crash * nodes)
    if n_crash <= 0:
        return _spread(nodes, procs), [False] * procs
    if n_crash >= nodes:
        raise ValueError("crash fraction %.2f would kill every node" % crash)
    p_crash = max(1, min(procs - 1, round(crash * procs))) if procs > 1 else 1
    if procs == 1:
        procs, p_crash = 2, 1  # crashed nodes must sit in a process of their own
    counts = _spread(nodes - n_crash, procs - p_crash) + _spread(n_crash, p_crash)
    return counts, [False] * (procs - p_crash) + [True] * p_crash


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(data: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no data."""
    if not data:
        return None
    s = sorted(data)
    rank = max(1, min(len(s), int(-(-q * len(s) // 100))))
    return s[rank - 1]


def _summary(data: list[float]) -> dict[str, float | None]:
    return {k: (None if v is None else round(v, 3)) for k, v in
            (("p50", percentile(data, 50)), ("p90", percentile(data, 90)), ("p99", percentile(data, 99)),
             ("max", max(data) if data else None))}


def run_bench(
    impl: str,
    nodes: int,
    values: int,
    lookups: int,
    crash: float = 0.0,
    procs: int = 4,
    packets: int = 3,
    value_bytes: int = 300,
    seed: int = 1,
    settle_s: float = 1.0,
    opts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one implementation on the workload; returns the figures (see the module docstring)."""
    missing = check_available(impl)
    if missing:
        raise BenchUnavailable(missing)
    opts = dict(opts or {})
    rng = random.Random(seed)
    counts, crashed = layout(nodes, procs, crash)
    addresses = [rng.randbytes(32) for _ in range(values)]
    payloads = {a: [rng.randbytes(value_bytes) for _ in range(packets)] for a in addresses}
    ctx = multiprocessing.get_context("spawn")
    t_start = time.perf_counter()
    result: dict[str, Any] = {"impl": impl, "nodes": nodes, "procs": len(counts), "nodes_per_proc": counts,
                              "values": values, "packets_per_address": packets, "value_bytes": value_bytes,
                              "lookups": lookups, "crash": crash, "seed": seed}
    with tempfile.TemporaryDirectory(prefix="qis-swarm-bench-") as tmp:
        workers: list[_Worker] = []
        try:
            for i, c in enumerate(counts):
                wd = Path(tmp) / ("w%d" % i)
                wd.mkdir()
                workers.append(_Worker(ctx, impl, c, opts, str(wd)))
            # worker 0 first (its first node seeds the swarm), then the rest in parallel
            workers[0].addrs = [tuple(a) for a in workers[0].call("start", [])]
            seeds = workers[0].addrs[:3]
            for w in workers[1:]:
                w.send("start", seeds)
            for w in workers[1:]:
                w.addrs = [tuple(a) for a in w.recv()]
            t_joined = time.perf_counter()
            time.sleep(settle_s)
            all_nodes = [(wi, li) for wi, w in enumerate(workers) for li in range(w.count)]
            single = getattr(make_adapter_class(impl), "single_value", False)
            batches: dict[int, list[tuple[int, bytes, bytes]]] = {i: [] for i in range(len(workers))}
            expected: dict[bytes, list[bytes]] = {}
            for a in addresses:
                vals = [b"".join(payloads[a])] if single else payloads[a]
                expected[a] = vals
                for v in vals:
                    wi, li = rng.choice(all_nodes)
                    batches[wi].append((li, a, v))
            t0 = time.perf_counter()
            for wi, batch in batches.items():
                workers[wi].send("put", batch, opts.get("put_concurrency", 4))
            put_ok = sum(sum(1 for ok in workers[wi].recv(600) if ok) for wi in batches)
            put_total = sum(len(b) for b in batches.values())
            result["puts"] = {"ok": put_ok, "total": put_total, "seconds": round(time.perf_counter() - t0, 3)}
            time.sleep(min(settle_s, 0.5))
            for w, dead in zip(workers, crashed, strict=True):
                if dead:
                    w.kill()
            survivors = [(wi, li) for wi, li in all_nodes if workers[wi].alive]
            result["crashed_nodes"] = len(all_nodes) - len(survivors)
            for w in workers:  # adapters count requests since their previous messages() call: reset here
                if w.alive:
                    w.call("messages")
            ok = 0
            first, last, done, hops, msgs = [], [], [], [], []
            failures: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            for _ in range(lookups):
                a = rng.choice(addresses)
                wi, li = rng.choice(survivors)
                r = workers[wi].call("get", li, a, expected[a], timeout_s=120)
                if r["ok"]:
                    ok += 1
                    last.append(r["last_ms"])
                elif len(failures) < 10:
                    failures.append({k: r.get(k) for k in ("found", "local", "hops", "messages", "done_ms")}
                                    | {"expected": len(expected[a])})
                if r.get("first_ms") is not None:
                    first.append(r["first_ms"])
                done.append(r["done_ms"])
                if r.get("hops") is not None:
                    hops.append(r["hops"])
                if r.get("messages") is not None:
                    msgs.append(r["messages"])
            lookup_s = time.perf_counter() - t0
            msg_after = sum(w.call("messages") or 0 for w in workers if w.alive)
            totals: dict[str, int] = {}
            for w in workers:
                if w.alive:
                    for k, v in w.call("counters").items():
                        totals[k] = totals.get(k, 0) + int(v)
            if totals:
                result["counters"] = dict(sorted(totals.items()))
            result.update({
                "success_rate": round(ok / lookups, 4) if lookups else None,
                "latency_ms": _summary(done),
                "last_ms": _summary(last),
                "first_ms": _summary(first),
                "hops": _summary(hops) if hops else None,
                "requests_per_lookup": (round(statistics.fmean(msgs), 2) if msgs else
                                        (round(msg_after / lookups, 2) if msg_after else None)),
                "failed_lookups_sample": failures,
                "lookup_seconds": round(lookup_s, 3),
                "join_seconds": round(t_joined - t_start, 3),
            })
        finally:
            for w in workers:
                w.close()
    result["seconds"] = round(time.perf_counter() - t_start, 3)
    return result


def make_adapter_class(impl: str) -> type:
    """The adapter class for ``impl``; importing a peer adapter does not import the peer library yet."""
    if impl == "ours":
        from bench_ours import OursAdapter

        return OursAdapter
    if impl == "opendht":
        from bench_opendht import OpenDhtAdapter

        return OpenDhtAdapter
    if impl == "kademlia":
        from bench_kademlia import KademliaAdapter

        return KademliaAdapter
    raise ValueError("unknown implementation %r" % impl)


def run_comparison(impls: list[str], **kw: Any) -> dict[str, Any]:
    """Run every implementation in ``impls`` on the same workload and layout; missing peers are reported."""
    out: dict[str, Any] = {"workload": {k: v for k, v in kw.items() if k != "opts"}, "results": {}}
    for impl in impls:
        try:
            out["results"][impl] = run_bench(impl, **kw)
        except BenchUnavailable as exc:
            log.warning("%s", exc)
            out["results"][impl] = {"impl": impl, "unavailable": str(exc)}
    return out


# -- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog="bench_udp.py",
                                description="real UDP nodes on 127.0.0.1, ours vs OpenDHT and kademlia")
    b.add_argument("--nodes", type=cliopts.positive_int, required=True)
    b.add_argument("--values", type=cliopts.positive_int, required=True, help="addresses stored")
    b.add_argument("--lookups", type=cliopts.positive_int, required=True)
    b.add_argument("--crash", type=cliopts.fraction, default=0.0, help="fraction SIGKILLed before the lookups")
    b.add_argument("--procs", type=cliopts.positive_int, default=4,
                   help="worker processes (same layout for every impl)")
    b.add_argument("--packets", type=cliopts.positive_int, default=3, help="values per address")
    b.add_argument("--value-bytes", type=cliopts.positive_int, default=300)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--peers", default="opendht,kademlia", help="comma list of opendht,kademlia or 'none'")
    b.add_argument("--backend", default=None, help="measure one engine alone: ours (Kademlia), opendht or kademlia")
    b.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    b.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return b


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    peers = [p for p in (args.peers.split(",") if args.peers else []) if p and p != "none"]
    bad = [p for p in peers if p not in IMPLS or p == "ours"]
    if bad:
        print("bench_udp.py: unknown peer(s) %s (choose from opendht, kademlia, none)" % ", ".join(bad),
              file=sys.stderr)
        return 2
    if args.backend and args.backend not in IMPLS:
        print("bench_udp.py: unknown backend %r (choose from %s)" % (args.backend, ", ".join(IMPLS)),
              file=sys.stderr)
        return 2
    impls = [args.backend] if args.backend else ["ours", *peers]  # --backend: one engine alone
    result = run_comparison(impls, nodes=args.nodes, values=args.values, lookups=args.lookups, crash=args.crash,
                            procs=args.procs, packets=args.packets, value_bytes=args.value_bytes, seed=args.seed)
    print(json.dumps(result, sort_keys=True) if args.json else json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
