"""The bridge: board frames in, swarm lookups/stores and answers out. No MQTT or socket code here.

How it works, for one board message (topic, payload):

1. `admit` (synchronous, in arrival order): parse the topic, look the device up in the registry,
   verify the HMAC tag and body (`qis.messages.decode`'s checks, the tag in C: frametag.decode), then the
   sequence number. A frame whose seq is
   not above the stored one is a replay -- unless the state DB already holds that very frame (same
   device, seq and SHA-256), which is the broker redelivering a message whose PUBACK was lost: a
   `duplicate`, acknowledged again without a second effect. An authentic frame refused for its content
   (unknown schema or reading, bad fields) still consumes its seq, so replaying it is a duplicate too.
   Then the durable part: an fp's fields and vector go to `readings`, an outcome's signed packets (one
   per schema level: exact, then coarser) go to the outbox -- in one SQLite transaction -- and only then
   does the registry's seq move forward. While the wall clock is clearly wrong (signing_clock.py: before
   2026, or behind a time this gateway already signed with), an outcome is not signed: it is accepted
   and *held* in the state DB, and `sign_held` (called by the service every few seconds) signs and queues
   it once the clock is right, with the time of signing as its `created_s`.
   Crashing between those steps is harmless: the redelivered frame re-inserts idempotently.
   The caller acknowledges the MQTT message once `admit` has returned (durably handled or refused).
2. fp only, asynchronous: `answer_fp` recomputes every level address from the fields with the schema
   (never trusting the board's) and hands them to `Evidence.summarise` (evidence.py: the one path of
   lookup, verification, per-signer cap, level fallback and synthesis), then encodes the `BoardSummary`
   it returns and publishes it (n = 0 and enough = false when the swarm knows nothing).
3. Outcomes are stored by `OutboxFlusher` (flusher.py): it puts queued packets at a bounded rate and
   retries with backoff, so none are lost while the swarm is away.

Every refusal is counted by reason (metrics), logged at most once per device and interval (ratelog) and
answered on the device's `error` topic when the device is known (its secret signs the answer), at most a
few times a minute per device (error_budget.py); refusals beyond that budget are counted, not answered.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qis import messages
from qis.errors import FrameError, QisError, TopicError
from qis.schema import Schema
from qis.topics import parse_topic, topic

from qis_gateway import frametag
from qis_gateway.config import default
from qis_gateway.error_budget import ErrorBudget
from qis_gateway.evidence import BoardSummary, Evidence
from qis_gateway.frametag import tag
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import StateDB
from qis_gateway.packets import OutcomePacket, PacketError, encode, outcome_nonce
from qis_gateway.ratelog import RateLimitedLog
from qis_gateway.registry import DeviceRecord, Registry
from qis_gateway.signing_clock import ClockUnsynchronised, SigningClock

if TYPE_CHECKING:  # pynacl itself is touched only by packets.py and keys.py
    from nacl.signing import SigningKey

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)
ADDRESS_CACHE = 4096  # distinct (schema, fields) combinations whose level addresses are kept
TOPIC_CACHE = 4096  # board topics parsed, and devices' summary topics, kept


@dataclass(frozen=True, slots=True)
class Admitted:
    """What `admit` decided. `kind` is fp/outcome; `answer` says whether an fp still needs its summary."""

    outcome: str  # "accepted" | "duplicate" | "rejected"
    kind: str = ""
    device: DeviceRecord | None = None
    body: dict[str, Any] | None = None
    reason: str = ""

    @property
    def needs_answer(self) -> bool:
        return self.kind == "fp" and self.outcome in ("accepted", "duplicate") and self.body is not None


class Bridge:
    def __init__(self, registry: Registry, state: StateDB, schemas: dict[str, Schema], signing_key: SigningKey,
                 evidence: Evidence, publish: Publish, metrics: Metrics, *,
                 reject_log_interval_s: float = default("log", "reject_interval_s"),
                 clock: Callable[[], float] = time.time, signing_clock: SigningClock | None = None,
                 on_summary: Callable[[DeviceRecord, BoardSummary], None] | None = None) -> None:
        self.registry = registry
        self.state = state
        self.schemas = schemas
        self.signing_key = signing_key
        self.evidence = evidence
        self.publish = publish
        self.metrics = metrics
        self.clock = clock
        self.on_summary = on_summary
        self.ratelog = RateLimitedLog(log, reject_log_interval_s)
        self.signing_clock = signing_clock or SigningClock()
        # its floor: never sign behind the newest time this gateway signed with (its outbox, across restarts)
        self.signing_clock.note_signed(state.newest_signed_s() or 0.0)
        self._holding = False  # outcomes are being held: the clock was wrong at the last try
        self.error_budget = ErrorBudget()
        self.outbox_wakeup: Callable[[], None] = lambda: None
        self._digest, self._now_s = b"", 0.0  # of the frame being admitted
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._address_cache: dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[bytes, ...]] = {}
        self._topics: dict[str, tuple[str, str, str]] = {}  # topic -> parse_topic(topic), valid ones only
        self._summary_topics: dict[tuple[str, str], str] = {}  # (site, device) -> its summary topic

    def _addresses(self, schema: Schema, fields: dict[str, Any]) -> tuple[bytes, ...]:
        """schema.level_addresses(fields), remembered: a board's categorical fields repeat from reading to
        reading, and deriving the addresses (canonical form + a keyed hash per level) was ~50-100 us of
        every answer. Bounded: emptied when it reaches ADDRESS_CACHE entries."""
        key = (schema.schema_id, tuple(sorted(fields.items())))  # admitted fields: str/int values
        hit = self._address_cache.get(key)
        if hit is None:
            if len(self._address_cache) >= ADDRESS_CACHE:
                self._address_cache.clear()
            hit = self._address_cache[key] = tuple(schema.level_addresses(fields))
        return hit

    def _parse_topic(self, topic_name: str) -> tuple[str, str, str]:
        """parse_topic(topic_name), remembered: a board sends on the same two topics, and parsing checks
        every byte of the site and device ids (~2-3 us a frame). A topic it refuses (TopicError) is never
        kept, so it is refused every time. Bounded: emptied when it reaches TOPIC_CACHE entries."""
        hit = self._topics.get(topic_name)
        if hit is None:
            hit = parse_topic(topic_name)
            if len(self._topics) >= TOPIC_CACHE:
                self._topics.clear()
            self._topics[topic_name] = hit
        return hit

    def _summary_topic(self, record: DeviceRecord) -> str:
        """topic(site, device, "summary"), remembered per device (it checks both ids each time)."""
        key = (record.site, record.device_id)
        hit = self._summary_topics.get(key)
        if hit is None:
            if len(self._summary_topics) >= TOPIC_CACHE:
                self._summary_topics.clear()
            hit = self._summary_topics[key] = topic(record.site, record.device_id, "summary")
        return hit

    def _inc(self, metric: Any, *labels: str) -> None:
        """metric.labels(*labels).inc(), with the labelled child looked up once: prometheus_client's
        labels() validates and joins its arguments on every call (~5% of the gateway's CPU per reading)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        child.inc()

    # -- step 1: admission (synchronous) --------------------------------------------------------------
    def admit(self, topic_name: str, payload: bytes) -> Admitted:
        try:
            return self._admit(topic_name, bytes(payload))
        except _Reject as rej:
            return self._refuse(rej)

    def _admit(self, topic_name: str, payload: bytes) -> Admitted:
        try:
            site, device_id, kind = self._parse_topic(topic_name)
        except TopicError as exc:
            raise _Reject("topic", str(exc), None, "?") from exc
        if kind not in ("fp", "outcome"):
            raise _Reject("kind", "board topic %s is not handled" % kind, None, device_id, kind)
        record = self.registry.get(device_id)
        if record is None:
            raise _Reject("unknown_device", "device is not registered", None, device_id, kind)
        if record.revoked:
            raise _Reject("revoked", "device was revoked", record, device_id, kind)
        if record.site != site:
            raise _Reject("site", "device belongs to site %s, not %s" % (record.site, site), record, device_id, kind)
        try:
            body = frametag.decode(payload, record.secret, kind=kind, device=device_id)
        except FrameError as exc:
            raise _Reject(exc.reason, str(exc), record, device_id, kind) from exc
        seq = body["seq"]
        digest = hashlib.sha256(payload).digest()
        now_s = self.clock()
        if seq <= record.last_seq:
            seen = self.state.frame_digest(device_id, seq)
            if seen is not None and seen[0] == digest:
                self._inc(self.metrics.messages, kind, "duplicate")
                return Admitted("duplicate", kind, record, body if seen[1] == kind else None)
            raise _Reject("replay", "seq %d is not above the last accepted %d" % (seq, record.last_seq),
                          record, device_id, kind, seq)
        self._digest, self._now_s = digest, now_s
        if kind == "fp":
            schema = self._check_fp(body, record)
            self.state.record_fp(device_id, seq, digest, schema.schema_id, body["fields"], body["vec"], now_s)
        else:
            self._outcome(body, record, seq, digest, now_s)
        if not self.registry.accept_seq(device_id, seq):
            # another handler moved the seq on between our read and now (cannot happen with one loop)
            raise _Reject("replay", "seq %d was overtaken" % seq, record, device_id, kind, seq)
        self._inc(self.metrics.messages, kind, "accepted")
        if kind == "outcome":
            self.outbox_wakeup()
        return Admitted("accepted", kind, record, body)

    def _check_fp(self, body: dict[str, Any], record: DeviceRecord) -> Schema:
        seq = body["seq"]
        schema = self.schemas.get(body["schema"])
        if schema is None:
            raise _Reject("schema", "unknown schema %r" % body["schema"], record, record.device_id, "fp", seq, True)
        try:
            schema.check_fields(body["fields"])
        except QisError as exc:
            raise _Reject("fields", str(exc), record, record.device_id, "fp", seq, True) from exc
        if len(body["vec"]) != schema.dimensions:
            raise _Reject("vector", "vector has %d components, schema %s has %d" % (
                len(body["vec"]), schema.schema_id, schema.dimensions), record, record.device_id, "fp", seq, True)
        return schema

    def _outcome(self, body: dict[str, Any], record: DeviceRecord, seq: int, digest: bytes, now_s: float) -> None:
        """Sign an outcome at every level and queue the packets; while the clock is clearly wrong, hold it."""
        if body["re"] > messages.MAX_SEQ:
            raise _Reject("field", "outcome.re %d is beyond any sequence number" % body["re"], record,
                          record.device_id, "outcome", seq, True)
        value = body.get("value")
        try:
            value = None if value is None else float(value)
        except OverflowError as exc:
            raise _Reject("field", "outcome.value is too large", record, record.device_id, "outcome", seq,
                          True) from exc
        reading = self.state.reading(record.device_id, body["re"])
        if reading is None:
            raise _Reject("unknown_reading", "no reading with seq %d is known (expired or never sent)" % body["re"],
                          record, record.device_id, "outcome", seq, True)
        schema = self.schemas.get(reading.schema_id)
        if schema is None:
            raise _Reject("schema", "schema %r is no longer loaded" % reading.schema_id, record,
                          record.device_id, "outcome", seq, True)
        label, weight = body["label"], float(body.get("weight", 1.0))
        nonce = outcome_nonce(self.signing_key, record.device_id, seq, digest)
        try:  # signed even when held: every field is checked now, so a held outcome can always be signed later
            packets = self._sign(schema, reading.fields, reading.vector, label, value, weight, nonce, now_s)
        except PacketError as exc:
            raise _Reject("packet", str(exc), record, record.device_id, "outcome", seq, True) from exc
        try:
            self.signing_clock.check(now_s)
        except ClockUnsynchronised as exc:
            why = str(exc)
        else:
            self.state.record_outcome(record.device_id, seq, digest, packets, now_s)
            self.signing_clock.note_signed(int(now_s))
            return
        self.state.record_held(record.device_id, seq, digest, reading, label, value, weight, now_s)
        self.metrics.signing_refused.inc()
        self.metrics.outcomes_held.inc()
        if not self._holding:
            log.warning("not signing outcomes: %s; holding them (durably) until the clock is right", why)
        self._holding = True

    def _sign(self, schema: Schema, fields: dict[str, str | int], vector: tuple[int, ...], label: str,
              value: float | None, weight: float, nonce: bytes, now_s: float) -> list[tuple[int, bytes, bytes]]:
        """(level, address, signed packet) for each schema level; PacketError when a field is unusable."""
        out = []
        for level, address in enumerate(self._addresses(schema, fields)):  # cached: boards repeat fields
            packet = OutcomePacket(address=address, schema_id=schema.schema_id, created_s=int(now_s), vector=vector,
                                   label=label, value=value, weight=weight, nonce=nonce)
            out.append((level, address, encode(packet, self.signing_key)))
        return out

    def sign_held(self, limit: int = 256) -> int:
        """Sign and queue the outcomes held while the clock was wrong, once it is right; returns how many
        left the held table (called by the service every few seconds, and at start)."""
        held = self.state.held(limit)
        if not held:
            return 0
        now_s = self.clock()
        why = self.signing_clock.problem(now_s)
        if why is not None:
            self._holding = True
            return 0
        with self.state.batch():
            for h in held:
                nonce = outcome_nonce(self.signing_key, h.device, h.seq, h.digest)
                schema = self.schemas.get(h.schema_id)
                try:
                    if schema is None:
                        raise PacketError("field", "schema %r is no longer loaded" % h.schema_id)
                    packets = self._sign(schema, h.fields, h.vector, h.label, h.value, h.weight, nonce, now_s)
                except (PacketError, QisError) as exc:  # not after the admission checks, unless a schema went
                    log.error("held outcome %s/%d cannot be signed and is dropped: %s", h.device, h.seq, exc)
                    self.metrics.rejections.labels("packet").inc()
                    packets = []
                self.state.release_held(h.device, h.seq, packets, now_s)
        self.signing_clock.note_signed(int(now_s))
        self.metrics.outcomes_held.set(self.state.held_count())
        if self._holding:
            log.info("the clock is trustworthy again: signed %d held outcome(s)", len(held))
        self._holding = False
        self.outbox_wakeup()
        return len(held)

    def _refuse(self, rej: _Reject) -> Admitted:
        if rej.authentic and rej.record is not None and rej.seq is not None:
            # The board really sent it (valid tag, fresh seq): consume the seq so the same frame replayed
            # is a duplicate, not a second error answer.
            self.state.record_refused(rej.record.device_id, rej.seq, self._digest, self._now_s)
            self.registry.accept_seq(rej.record.device_id, rej.seq)
        self._inc(self.metrics.rejections, rej.reason)
        self._inc(self.metrics.messages, rej.kind or "unknown", "rejected")
        self.ratelog.reject(rej.device_id, rej.reason, rej.detail, self.clock())
        record = rej.record
        if record is not None and not record.revoked:
            if not self.error_budget.allow(record.device_id, self.clock()):
                self._inc(self.metrics.error_answers_suppressed, rej.reason)
                return Admitted("rejected", rej.kind, record, None, rej.reason)
            try:
                payload = messages.encode_error(record.device_id, rej.seq or 0, rej.reason, rej.detail,
                                                record.secret, mac=tag)
                self.publish(topic(record.site, record.device_id, "error"), payload, 1, False)
            except QisError as exc:  # pragma: no cover - ids were validated by the registry
                log.error("could not answer %s on its error topic: %s", record.device_id, exc)
        return Admitted("rejected", rej.kind, record, None, rej.reason)

    # -- step 2: answering an fp (asynchronous) -------------------------------------------------------
    async def answer_fp(self, admitted: Admitted, received_s: float | None = None) -> BoardSummary:
        """Look up, synthesise and publish the summary for an admitted fp; returns what was published."""
        record, body = admitted.device, admitted.body
        if record is None or body is None:
            raise ValueError("answer_fp needs an admitted fp")
        schema = self.schemas[body["schema"]]
        summary = await self.evidence.summarise(body["vec"], self._addresses(schema, body["fields"]))
        payload = messages.encode_summary(record.device_id, body["seq"], record.secret, summary, mac=tag)
        self.publish(self._summary_topic(record), payload, 1, False)
        self._inc(self.metrics.summaries, "true" if summary.enough else "false")
        if received_s is not None:
            self.metrics.fp_seconds.observe(max(0.0, time.perf_counter() - received_s))
        if self.on_summary is not None:
            self.on_summary(record, summary)
        return summary


class _Reject(Exception):
    def __init__(self, reason: str, detail: str, record: DeviceRecord | None, device_id: str, kind: str = "",
                 seq: int | None = None, authentic: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.record = record
        self.device_id = device_id
        self.kind = kind
        self.seq = seq
        self.authentic = authentic  # tag valid and seq fresh: refused for its content
