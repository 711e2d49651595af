"""Memory tracing for soak investigations, switched on by the environment (off in normal runs).

How it works: when `QIS_MEMTRACE_DIR` names a directory, `install(loop)` starts `tracemalloc` (keeping
`QIS_MEMTRACE_FRAMES` frames per allocation, default 1: the allocating line; 0 leaves tracemalloc off,
whose own tables double the RSS) and adds a SIGUSR1 handler to the event loop. Each SIGUSR1 writes,
into that directory, `snapshot-<n>.tracemalloc` (a `tracemalloc.Snapshot`, compare two with
`Snapshot.compare_to`) and `snapshot-<n>.json` (VmRSS, the traced total, SQLite's and glibc malloc's
own totals, and the 40 most numerous object types from `gc`).
`bench/bench_gateway_mem.py` drives it: it starts the traced gateway as
`python bench/memtrace.py --config gateway.toml` (this file's `main`: `qis-gateway run` with `install`
called on the gateway's event loop first). Without the variable `install` does nothing. The module
lives in bench/, outside the installed package, so a production gateway never carries it.

tracemalloc sees Python's allocations (numpy's array data included) but not SQLite's page cache or
OpenSSL/libsodium buffers: RSS growth that the traced total does not explain lives there.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import logging
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path

from qis_gateway.commands import load_config_or_exit
from qis_gateway.service import serve_until_stopped, setup_logging

log = logging.getLogger(__name__)

ENV_DIR = "QIS_MEMTRACE_DIR"
ENV_FRAMES = "QIS_MEMTRACE_FRAMES"


def rss_kib(pid: int | None = None) -> int:
    """VmRSS of a process (this one by default) in KiB; 0 when /proc has no answer."""
    try:
        text = Path("/proc/%s/status" % (pid or "self")).read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def native_memory() -> dict[str, int]:
    """What tracemalloc cannot see: SQLite's own allocator total and glibc's heap (mallinfo2), in bytes.

    `malloc_arena` is heap obtained from the system by malloc (all arenas), `malloc_in_use` the part in
    use and `malloc_free` the free chunks kept (fragmentation); `malloc_mmap` big blocks mapped directly.
    Empty where the libraries are not found (not glibc, SQLite linked statically)."""
    import ctypes
    import ctypes.util

    out: dict[str, int] = {}
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite_memory_used"] = int(lib.sqlite3_memory_used())
    except (OSError, AttributeError):
        pass

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
            "keepcost")]

    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
        out.update(malloc_arena=info.arena, malloc_in_use=info.uordblks, malloc_free=info.fordblks,
                   malloc_mmap=info.hblkhd)
    except (OSError, AttributeError):
        pass
    return out


def type_counts(top: int = 40) -> list[tuple[str, int]]:
    """The most numerous object types tracked by the garbage collector."""
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    return counts.most_common(top)


class MemTrace:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taken = 0

    def dump(self) -> Path:
        """Write the next snapshot pair; returns the .tracemalloc path."""
        self.taken += 1
        base = self.directory / ("snapshot-%d" % self.taken)
        gc.collect()
        current = peak = 0
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(base) + ".tracemalloc")
            current, peak = tracemalloc.get_traced_memory()
        info = {"n": self.taken, "t": time.time(), "rss_kib": rss_kib(), "traced_bytes": current,
                "traced_peak_bytes": peak, "native": native_memory(), "types": type_counts()}
        Path(str(base) + ".json").write_text(json.dumps(info))
        log.info("memtrace: snapshot %d written (rss %d KiB, traced %d KiB)", self.taken, info["rss_kib"],
                 current // 1024)
        return Path(str(base) + ".tracemalloc")


def install(loop: asyncio.AbstractEventLoop) -> MemTrace | None:
    """Start tracing and the SIGUSR1 snapshot handler when QIS_MEMTRACE_DIR is set; else None."""
    directory = os.environ.get(ENV_DIR, "")
    if not directory:
        return None
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get(ENV_FRAMES, "1") or "1")
    if frames > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    trace = MemTrace(path)

    def on_signal() -> None:
        try:
            trace.dump()
        except Exception:  # a diagnostic must never stop the gateway
            log.exception("memtrace: snapshot failed")

    loop.add_signal_handler(signal.SIGUSR1, on_signal)
    log.warning("memtrace on: tracemalloc with %d frame(s); SIGUSR1 writes snapshots to %s", frames, path)
    return trace


async def _serve_traced(config_path: str) -> int:
    install(asyncio.get_running_loop())
    return await serve_until_stopped(load_config_or_exit(config_path))


def main(argv: list[str] | None = None) -> int:
    """`qis-gateway run --config FILE` with memory tracing installed (QIS_MEMTRACE_DIR)."""
    parser = argparse.ArgumentParser(prog="memtrace.py", description=main.__doc__)
    parser.add_argument("--config", "-c", required=True, help="gateway TOML file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    setup_logging(load_config_or_exit(args.config))
    return asyncio.run(_serve_traced(args.config))


if __name__ == "__main__":
    sys.exit(main())
