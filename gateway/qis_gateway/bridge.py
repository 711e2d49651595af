"""The bridge: board frames in, swarm lookups/stores and answers out. No MQTT or socket code here.

How it works, for one board message (topic, payload):

1. `admit` (synchronous, in arrival order): parse the topic, look the device up in the registry,
   verify the HMAC tag and body (`qis.messages.decode`), then the sequence number. A frame whose seq is
   not above the stored one is a replay -- unless the state DB already holds that very frame (same
   device, seq and SHA-256), which is the broker redelivering a message whose PUBACK was lost: a
   `duplicate`, acknowledged again without a second effect. An authentic frame refused for its content
   (unknown schema or reading, bad fields) still consumes its seq, so replaying it is a duplicate too.
   Then the durable part: an fp's fields and vector go to `readings`, an outcome's signed packets (one
   per schema level: exact, then coarser) go to the outbox -- in one SQLite transaction -- and only then
   does the registry's seq move forward.
   Crashing between those steps is harmless: the redelivered frame re-inserts idempotently.
   The caller acknowledges the MQTT message once `admit` has returned (durably handled or refused).
2. fp only, asynchronous: `answer_fp` recomputes every level address from the fields with the schema
   (never trusting the board's), looks the exact address up and goes coarser while the bucket holds fewer
   than `min_n` usable packets, verifies each value through the packet cache, keeps at most
   `max_per_signer` packets per origin gateway (newest first), synthesises and publishes the summary
   (n = 0 and enough = false when the swarm knows nothing).
3. Outcomes are stored by `OutboxFlusher` (flusher.py): it puts queued packets at a bounded rate and
   retries with backoff, so none are lost while the swarm is away.

Every refusal is counted by reason (metrics), logged at most once per device and interval (ratelog) and
answered on the device's `error` topic when the device is known (its secret signs the answer).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qis import messages
from qis.errors import FrameError, QisError, TopicError
from qis.schema import Schema
from qis.topics import parse_topic, topic

from qis_gateway.backend import Swarm, is_unavailable
from qis_gateway.metrics import Metrics
from qis_gateway.outbox import StateDB
from qis_gateway.packets import OutcomePacket, PacketError, VerifiedPacketCache, encode
from qis_gateway.ratelog import RateLimitedLog
from qis_gateway.registry import DeviceRecord, Registry

if TYPE_CHECKING:  # pynacl itself is touched only by packets.py and keys.py
    from nacl.signing import SigningKey

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]  # (topic, payload, qos, retain)


@dataclass(frozen=True, slots=True)
class SynthesisSettings:
    min_n: int = 5
    half_life_s: float = 30 * 86400.0
    max_per_signer: int = 50
    top: int = 3
    lookup_limit: int = 200
    level_policy: str = "first"  # "first": finest level with min_n packets; "max": levelmix.py


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
    def __init__(self, registry: Registry, state: StateDB, swarm: Swarm, schemas: dict[str, Schema],
                 signing_key: SigningKey, cache: VerifiedPacketCache, publish: Publish, metrics: Metrics,
                 *, settings: SynthesisSettings | None = None, trusted_keys: Collection[bytes] | None = None,
                 reject_log_interval_s: float = 60.0, clock: Callable[[], float] = time.time,
                 on_summary: Callable[[DeviceRecord, dict[str, Any]], None] | None = None) -> None:
        self.registry = registry
        self.state = state
        self.swarm = swarm
        self.schemas = schemas
        self.signing_key = signing_key
        self.cache = cache
        self.publish = publish
        self.metrics = metrics
        self.settings = settings or SynthesisSettings()
        self.trusted_keys = frozenset(trusted_keys) if trusted_keys else None
        self.clock = clock
        self.on_summary = on_summary
        self.ratelog = RateLimitedLog(log, reject_log_interval_s)
        self.outbox_wakeup: Callable[[], None] = lambda: None
        self._digest, self._now_s = b"", 0.0  # of the frame being admitted

    # -- step 1: admission (synchronous) --------------------------------------------------------------
    def admit(self, topic_name: str, payload: bytes) -> Admitted:
        try:
            return self._admit(topic_name, bytes(payload))
        except _Reject as rej:
            return self._refuse(rej)

    def _admit(self, topic_name: str, payload: bytes) -> Admitted:
        try:
            site, device_id, kind = parse_topic(topic_name)
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
            body = messages.decode(payload, record.secret, kind=kind, device=device_id)
        except FrameError as exc:
            raise _Reject(exc.reason, str(exc), record, device_id, kind) from exc
        seq = body["seq"]
        digest = hashlib.sha256(payload).digest()
        now_s = self.clock()
        if seq <= record.last_seq:
            seen = self.state.frame_digest(device_id, seq)
            if seen is not None and seen[0] == digest:
                self.metrics.messages.labels(kind, "duplicate").inc()
                return Admitted("duplicate", kind, record, body if seen[1] == kind else None)
            raise _Reject("replay", "seq %d is not above the last accepted %d" % (seq, record.last_seq),
                          record, device_id, kind, seq)
        self._digest, self._now_s = digest, now_s
        if kind == "fp":
            schema = self._check_fp(body, record)
            self.state.record_fp(device_id, seq, digest, schema.schema_id, body["fields"], body["vec"], now_s)
        else:
            packets = self._outcome_packets(body, record, seq, now_s)
            self.state.record_outcome(device_id, seq, digest, packets, now_s)
        if not self.registry.accept_seq(device_id, seq):
            # another handler moved the seq on between our read and now (cannot happen with one loop)
            raise _Reject("replay", "seq %d was overtaken" % seq, record, device_id, kind, seq)
        self.metrics.messages.labels(kind, "accepted").inc()
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

    def _outcome_packets(self, body: dict[str, Any], record: DeviceRecord, seq: int,
                         now_s: float) -> list[tuple[int, bytes, bytes]]:
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
        out = []
        for level, address in enumerate(schema.level_addresses(reading.fields)):
            packet = OutcomePacket(address=address, schema_id=reading.schema_id, created_s=int(now_s),
                                   vector=reading.vector, label=body["label"],
                                   value=value,
                                   weight=float(body.get("weight", 1.0)))
            try:
                out.append((level, address, encode(packet, self.signing_key)))
            except PacketError as exc:
                raise _Reject("packet", str(exc), record, record.device_id, "outcome", seq, True) from exc
        return out

    def _refuse(self, rej: _Reject) -> Admitted:
        if rej.authentic and rej.record is not None and rej.seq is not None:
            # The board really sent it (valid tag, fresh seq): consume the seq so the same frame replayed
            # is a duplicate, not a second error answer.
            self.state.record_refused(rej.record.device_id, rej.seq, self._digest, self._now_s)
            self.registry.accept_seq(rej.record.device_id, rej.seq)
        self.metrics.rejections.labels(rej.reason).inc()
        self.metrics.messages.labels(rej.kind or "unknown", "rejected").inc()
        self.ratelog.reject(rej.device_id, rej.reason, rej.detail, self.clock())
        record = rej.record
        if record is not None and not record.revoked:
            try:
                payload = messages.encode_error(record.device_id, rej.seq or 0, rej.reason, rej.detail,
                                                record.secret)
                self.publish(topic(record.site, record.device_id, "error"), payload, 1, False)
            except QisError as exc:  # pragma: no cover - ids were validated by the registry
                log.error("could not answer %s on its error topic: %s", record.device_id, exc)
        return Admitted("rejected", rej.kind, record, None, rej.reason)

    # -- step 2: answering an fp (asynchronous) -------------------------------------------------------
    async def answer_fp(self, admitted: Admitted, received_s: float | None = None) -> dict[str, Any]:
        """Look up, synthesise and publish the summary for an admitted fp; returns the summary body."""
        record, body = admitted.device, admitted.body
        if record is None or body is None:
            raise ValueError("answer_fp needs an admitted fp")
        started = time.perf_counter()
        schema = self.schemas[body["schema"]]
        addresses = schema.level_addresses(body["fields"])
        level, hops = 0, 0
        summary: dict[str, Any] | None = None
        mixed: list[tuple[int, dict[str, Any]]] = []  # level_policy "max": every level with enough evidence
        for here, address in enumerate(addresses):
            found, hops_here = await self._lookup(address)
            hops = max(hops, hops_here)
            if found is None:
                break  # the swarm is unreachable: answer with what we have
            candidate = self._synthesise(body["vec"], found)
            if self.settings.level_policy == "max":
                if candidate["enough"]:
                    mixed.append((here, candidate))
                continue
            if summary is None or candidate["n"] > summary["n"] or candidate["enough"]:
                summary, level = candidate, here
            if candidate["enough"]:
                break
        if mixed:
            from qis_gateway.levelmix import combine

            summary, level = combine(mixed, self.settings.top)
        if summary is None:
            summary = self._synthesise(body["vec"], [])
        ms = int((time.perf_counter() - started) * 1000)
        out = {"enough": summary["enough"], "n": summary["n"], "top": summary["top"], "conf": summary["conf"],
               "mean": summary["mean"], "level": level, "hops": hops, "ms": ms}
        payload = messages.encode_summary(record.device_id, body["seq"], record.secret, out["enough"], out["n"],
                                          out["top"], out["conf"], out["mean"], level, hops, ms)
        self.publish(topic(record.site, record.device_id, "summary"), payload, 1, False)
        self.metrics.summaries.labels("true" if out["enough"] else "false").inc()
        if received_s is not None:
            self.metrics.fp_seconds.observe(max(0.0, time.perf_counter() - received_s))
        if self.on_summary is not None:
            self.on_summary(record, out)
        return out

    async def _lookup(self, address: bytes) -> tuple[list[OutcomePacket] | None, int]:
        """Verified, per-signer-capped packets at `address`, and hops; None when the swarm is unreachable."""
        try:
            result = await self.swarm.get(address, self.settings.lookup_limit)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.debug("lookup of %s: swarm unavailable (%s)", address.hex()[:16], exc)
            return None, 0
        self.metrics.lookup_hops.observe(result.hops)
        self.metrics.lookup_seconds.observe(result.elapsed_ms / 1000.0)
        by_signer: dict[bytes, list[OutcomePacket]] = {}
        for value in result.values:
            try:
                packet = self.cache.verify(value, self.trusted_keys, address)
            except PacketError as exc:
                self.metrics.invalid_packets.labels(exc.reason).inc()
                continue
            by_signer.setdefault(packet.origin_key, []).append(packet)
        cap = self.settings.max_per_signer
        kept: list[OutcomePacket] = []
        for group in by_signer.values():
            group.sort(key=lambda p: p.created_s, reverse=True)
            kept.extend(group[:cap])
        return kept, result.hops

    def _synthesise(self, vector: list[int], packets: list[OutcomePacket]) -> dict[str, Any]:
        from qis_gateway.synthesis import synthesise

        if not packets:
            return {"enough": False, "n": 0, "top": [], "conf": 0, "mean": None}
        s = synthesise(tuple(vector), packets, self.clock(), half_life_s=self.settings.half_life_s,
                       min_n=self.settings.min_n, top=self.settings.top)
        top = [[str(label), max(0, min(1000, int(round(share * 1000))))] for label, share in s.top]
        mean = None if s.mean_value is None else float(s.mean_value)
        return {"enough": bool(s.enough), "n": int(s.n), "top": top,
                "conf": max(0, min(1000, int(round(s.confidence * 1000)))), "mean": mean}


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
