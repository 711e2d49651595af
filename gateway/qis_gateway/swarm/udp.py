"""asyncio UDP driver: runs one sans-IO ``SwarmNode`` on a real datagram socket.

How it works (the aioquic pattern, DESIGN.md style rule 2):
- Inputs: every received datagram goes to ``node.receive_datagram(data, addr, loop.time())``; the single
  timer calls ``node.handle_timer(loop.time())``; the API layer calls ``start_get``/``start_put``/... and then
  :meth:`SwarmDriver.pump`.
- After every input :meth:`pump` drains the node's outputs: datagrams go to ``transport.sendto``, events go
  to the ``on_event`` callback, and the one timer is re-armed at ``node.get_timer()`` (``loop.call_at``;
  moved only when the deadline changes).
- Hostile or broken input never stops the driver: the core drops and counts malformed datagrams itself;
  should the core raise anyway (our bug, not the peer's), the driver logs it once per kind, counts it in
  ``driver_errors`` and keeps serving. Socket errors (ICMP port unreachable from a dead peer, EPERM, ...)
  are counted in ``socket_errors``; the core's adaptive timeouts deal with the silence.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Address = tuple[str, int]

RECV_BUFFER_BYTES = 1 << 20


class SwarmDriver(asyncio.DatagramProtocol):
    """Feeds ``node`` from a datagram transport; hand ``on_event`` every event the node emits."""

    def __init__(self, node: Any, on_event: Callable[[Any], None], loop: asyncio.AbstractEventLoop | None = None):
        self.node = node
        self._on_event = on_event
        self._loop = loop or asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._logged_errors: set[str] = set()
        self.counters: dict[str, int] = {"driver_errors": 0, "socket_errors": 0, "send_failed": 0}
        self.closed = self._loop.create_future()

    # -- asyncio.DatagramProtocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._closed:
            return
        try:
            self.node.receive_datagram(data, (addr[0], addr[1]), self._loop.time())
        except Exception as exc:  # the core must count bad input itself; anything escaping is our bug
            self._driver_error("receive_datagram", exc)
        self.pump()

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


async def open_driver(
    node: Any, listen: Address, on_event: Callable[[Any], None]
) -> tuple[SwarmDriver, Address]:
    """Bind a UDP socket on ``listen`` (port 0 = any free port) and return the driver and the bound address."""
    loop = asyncio.get_running_loop()
    transport, driver = await loop.create_datagram_endpoint(
        lambda: SwarmDriver(node, on_event, loop), local_addr=listen
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:  # room for a burst of replies while the loop is busy (the kernel caps it at rmem_max)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
        except OSError as exc:
            log.debug("could not enlarge the receive buffer: %s", exc)
    sockname = transport.get_extra_info("sockname")
    return driver, (sockname[0], sockname[1])
