"""asyncio UDP driver: runs one sans-IO ``SwarmNode`` on a real datagram socket.

How it works (the aioquic pattern, design rule 2 in docs/design.md):
- Inputs: every received datagram goes to ``node.receive_datagram(data, addr, loop.time())``; the single
  timer calls ``node.handle_timer(loop.time())``; the API layer calls ``start_get``/``start_put``/... and then
  :meth:`SwarmDriver.pump`.
- After every input :meth:`pump` drains the node's outputs: datagrams go to ``transport.sendto``, events go
  to the ``on_event`` callback, and the one timer is re-armed at ``node.get_timer()`` (``loop.call_at``;
  moved only when the deadline changes).
- ``open_driver`` binds its own non-blocking socket and drains up to ``batch`` queued datagrams per
  readiness callback (:class:`BatchDatagramTransport`), then pumps once. asyncio's own datagram transport
  reads ONE datagram per loop iteration, so when a process hosting many nodes was busy, replies already in
  the socket buffer waited behind the other nodes' work while their requests' timers fired (spurious
  timeouts and retries; measured in bench_udp's put phase). ``SwarmDriver`` is still a plain
  ``DatagramProtocol`` and works with ``loop.create_datagram_endpoint`` too.
- ``write_batch`` (optional, the value store's ``batch``): each batch of datagrams is handled inside one
  store transaction, committed before the pump sends the answers, so the STOREs read together cost one
  commit instead of one per value. Should that commit fail, the answers queued meanwhile are dropped
  (no STORED for values that are not on disk; peers retry) and the store re-reads its state.
- Hostile or broken input never stops the driver: the core drops and counts malformed datagrams itself;
  should the core raise anyway (our bug, not the peer's), the driver logs it once per kind, counts it in
  ``driver_errors`` and keeps serving. Socket errors (ICMP port unreachable from a dead peer, EPERM, ...)
  are counted in ``socket_errors``; the core's adaptive timeouts deal with the silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

WriteBatch = Callable[[], contextlib.AbstractContextManager[Any]]

log = logging.getLogger(__name__)

Address = tuple[str, int]

RECV_BUFFER_BYTES = 1 << 20
TIMER_READ_BATCHES = 16  # batches of queued datagrams read before the timer's timeouts are declared


class SwarmDriver(asyncio.DatagramProtocol):
    """Feeds ``node`` from a datagram transport; hand ``on_event`` every event the node emits."""

    def __init__(self, node: Any, on_event: Callable[[Any], None], loop: asyncio.AbstractEventLoop | None = None,
                 write_batch: WriteBatch | None = None, on_write_failed: Callable[[], None] | None = None):
        self.node = node
        self._on_event = on_event
        self._write_batch = write_batch
        self._on_write_failed = on_write_failed
        self._loop = loop or asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._logged_errors: set[str] = set()
        self.counters: dict[str, int] = {"driver_errors": 0, "socket_errors": 0, "send_failed": 0,
                                         "write_failed": 0}
        self.closed = self._loop.create_future()

    # -- asyncio.DatagramProtocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.feed(data, addr)
        self.pump()

    def feed(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Hand one datagram to the node without draining its outputs (batch readers pump once after)."""
        if self._closed:
            return
        try:
            self.node.receive_datagram(data, (addr[0], addr[1]), self._loop.time())
        except Exception as exc:  # the core must count bad input itself; anything escaping is our bug
            self._driver_error("receive_datagram", exc)

    def writes(self) -> contextlib.AbstractContextManager[Any]:
        """The store transaction a batch of datagrams is handled in (none without ``write_batch``)."""
        return self._write_batch() if self._write_batch is not None else contextlib.nullcontext()

    def writes_failed(self, exc: Exception) -> None:
        """The batch's commit failed: nothing it answered may be sent (a STORED would be a lie)."""
        self.counters["write_failed"] += 1
        log.error("value store commit failed; the answers of this batch are dropped: %s", exc)
        try:
            self.node.datagrams_to_send()
            if self._on_write_failed is not None:
                self._on_write_failed()
        except Exception as exc2:
            self._driver_error("writes_failed", exc2)

    def error_received(self, exc: Exception) -> None:
        self.counters["socket_errors"] += 1
        log.debug("socket error (usually ICMP unreachable from a stopped peer): %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- driving the node -----------------------------------------------------------------------------
    @property
    def now_s(self) -> float:
        return self._loop.time()

    def pump(self) -> None:
        """Send what the node queued, deliver its events, and re-arm the timer."""
        node = self.node
        try:
            out = node.datagrams_to_send()
        except Exception as exc:
            self._driver_error("datagrams_to_send", exc)
            out = []
        transport = self._transport
        if out and transport is not None and not self._closed:
            for data, addr in out:
                try:
                    transport.sendto(data, addr)
                except (OSError, ValueError, TypeError) as exc:
                    self.counters["send_failed"] += 1
                    log.debug("sendto %s failed: %s", addr, exc)
        while True:
            try:
                event = node.next_event()
            except Exception as exc:
                self._driver_error("next_event", exc)
                break
            if event is None:
                break
            try:
                self._on_event(event)
            except Exception as exc:
                self._driver_error("on_event", exc)
        if not self._closed:
            self._arm_timer()

    def _arm_timer(self) -> None:
        try:
            deadline = self.node.get_timer()
        except Exception as exc:
            self._driver_error("get_timer", exc)
            deadline = None
        if deadline == self._timer_at and (deadline is None or self._timer is not None):
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        # Answers already in the socket count before timeouts are declared: after the loop stalled (an
        # fsync, another process on the core) a reader callback takes only one batch, and asyncio runs
        # the due timer right after it, so the rest looked lost (spurious timeouts and re-sent STOREs).
        read_pending = getattr(self._transport, "read_pending", None)
        if read_pending is not None:
            for _ in range(TIMER_READ_BATCHES):
                if read_pending() < getattr(self._transport, "batch", 0):
                    break
        try:
            self.node.handle_timer(self._loop.time())
        except Exception as exc:
            self._driver_error("handle_timer", exc)
        self.pump()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _driver_error(self, where: str, exc: Exception) -> None:
        self.counters["driver_errors"] += 1
        kind = "%s:%s" % (where, type(exc).__name__)
        if kind not in self._logged_errors:
            self._logged_errors.add(kind)
            log.error("swarm core raised in %s (bug; input dropped, node keeps running)", where, exc_info=exc)

    def close(self) -> None:
        """Stop the timer and close the socket (what was queued before this call was already sent)."""
        self._cancel_timer()
        if self._transport is not None and not self._closed:
            self._transport.close()
        self._closed = True


class BatchDatagramTransport:
    """The little of a datagram transport the driver needs, over a non-blocking socket: reads up to
    ``batch`` datagrams per readiness callback, then pumps the protocol once."""

    def __init__(self, sock: socket.socket, protocol: SwarmDriver, loop: asyncio.AbstractEventLoop,
                 batch: int = 64) -> None:
        self._sock = sock
        self._protocol = protocol
        self._loop = loop
        self._batch = max(1, batch)
        self.batch = self._batch
        self._closing = False
        self._sockname = sock.getsockname()
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        self.read_pending()
        self._protocol.pump()

    def read_pending(self) -> int:
        """Hand up to ``batch`` queued datagrams to the protocol (no pump); returns how many."""
        proto = self._protocol
        sock = self._sock
        got = 0
        if self._closing:
            return got
        try:
            with proto.writes():  # one commit for the batch, before pump() sends its answers
                for _ in range(self._batch):
                    try:
                        data, addr = sock.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: counted, keep reading
                        proto.error_received(exc)
                        continue
                    got += 1
                    proto.feed(data, addr)
        except Exception as exc:
            proto.writes_failed(exc)
        return got

    def sendto(self, data: bytes, addr: Address) -> None:
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):  # send buffer full: like a lost datagram, the core retries
            self._protocol.counters["send_failed"] += 1
        except OSError as exc:
            self._protocol.error_received(exc)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"socket": self._sock, "sockname": self._sockname}.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)


async def open_driver(
    node: Any, listen: Address, on_event: Callable[[Any], None], batch: int = 64,
    write_batch: WriteBatch | None = None, on_write_failed: Callable[[], None] | None = None,
) -> tuple[SwarmDriver, Address]:
    """Bind a UDP socket on ``listen`` (port 0 = any free port) and return the driver and the bound address.
    OSError (address in use, cannot resolve) propagates with the socket closed."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(listen[0], listen[1], type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError("cannot resolve listen address %s:%d" % listen)
    family, _, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM, proto)
    try:
        sock.setblocking(False)
        try:  # room for a burst of replies while the loop is busy (the kernel caps it at rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
        except OSError as exc:
            log.debug("could not enlarge the receive buffer: %s", exc)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    driver = SwarmDriver(node, on_event, loop, write_batch, on_write_failed)
    transport = BatchDatagramTransport(sock, driver, loop, batch)
    driver.connection_made(transport)  # type: ignore[arg-type]
    sockname = sock.getsockname()
    return driver, (sockname[0], sockname[1])
