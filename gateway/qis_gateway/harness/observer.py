"""An MQTT observer that sees every board and gateway frame on the broker and keeps score.

It subscribes to `qis/v1/#` (QoS 1, a persistent session, so what boards send while the observer is
reconnecting -- after a broker restart, say -- is queued for it like for any subscriber) and records, per board, the
sequence numbers of `fp` and `outcome` frames and the `summary`/`error` answers with their arrival times on one clock,
so the harness can assert on counts (every reading answered, none lost, in order) and measure latency
from a board's publish to the summary's arrival without trusting any component's own report. Retained
messages replayed on subscribe are ignored (they are history, not traffic). Frames are parsed, not
verified: the observer judges delivery, the gateway judges authenticity.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from qis.errors import TopicError
from qis.messages import TAG_BYTES
from qis.topics import parse_topic

Board = tuple[str, str]  # (site, device)


@dataclass
class BoardLog:
    fp: list[tuple[int, float]] = field(default_factory=list)  # (seq, arrival)
    fields: dict[int, dict] = field(default_factory=dict)  # seq -> categorical fields of that reading
    outcomes: list[tuple[int, int, str, float]] = field(default_factory=list)  # (seq, re, label, arrival)
    summaries: list[tuple[dict, float]] = field(default_factory=list)  # (body, arrival)
    errors: list[tuple[dict, float]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)


def _body(payload: bytes) -> dict | None:
    try:
        body = json.loads(payload[:-TAG_BYTES])
    except (ValueError, UnicodeError):
        return None
    return body if isinstance(body, dict) else None


class Observer:
    def __init__(self, host: str, port: int, client_id: str = "qis-observer") -> None:
        self.host, self.port = host, port
        self.boards: dict[Board, BoardLog] = defaultdict(BoardLog)
        self.unparsed = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 1.0)

    def start(self, timeout_s: float = 10.0) -> Observer:
        self._client.connect_async(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.stop()
            raise RuntimeError("observer could not connect to %s:%d" % (self.host, self.port))
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                    props: object) -> None:
        client.subscribe("qis/v1/#", qos=1)
        self._connected.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.perf_counter()
        if msg.retain:
            return
        try:
            site, device, kind = parse_topic(msg.topic)
        except TopicError:
            self.unparsed += 1
            return
        payload = bytes(msg.payload)
        with self._lock:
            entry = self.boards[(site, device)]
            if kind == "status":
                entry.status.append(payload.decode(errors="replace"))
                return
            body = _body(payload)
            if body is None:
                self.unparsed += 1
                return
            if kind == "fp" and isinstance(body.get("seq"), int):
                entry.fp.append((body["seq"], now))
                if isinstance(body.get("fields"), dict):
                    entry.fields[body["seq"]] = body["fields"]
            elif kind == "outcome" and isinstance(body.get("seq"), int):
                entry.outcomes.append((body["seq"], body.get("re", -1), str(body.get("label")), now))
            elif kind == "summary":
                entry.summaries.append((body, now))
            elif kind == "error":
                entry.errors.append((body, now))

    # -- questions the harness asks ------------------------------------------------------------------

    def snapshot(self) -> dict[Board, BoardLog]:
        with self._lock:
            return {b: BoardLog(list(e.fp), dict(e.fields), list(e.outcomes), list(e.summaries), list(e.errors),
                                list(e.status)) for b, e in self.boards.items()}

    def answered(self, board: Board) -> set[int]:
        """Sequence numbers of this board's readings that got a summary."""
        with self._lock:
            return {body.get("re") for body, _ in self.boards[board].summaries}

    def latencies_ms(self) -> list[float]:
        """Board publish -> first summary for that reading, on the observer's clock, over all boards."""
        out = []
        with self._lock:
            for entry in self.boards.values():
                sent = {}
                for seq, t in entry.fp:
                    sent.setdefault(seq, t)
                seen = set()
                for body, t in entry.summaries:
                    re = body.get("re")
                    if re in sent and re not in seen:
                        seen.add(re)
                        out.append((t - sent[re]) * 1000.0)
        return out

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(poll_s)
        return predicate()
