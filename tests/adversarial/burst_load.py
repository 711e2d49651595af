"""A paho load generator for the end-to-end burst (test_burst_e2e.py): many provisioned devices publish fp
frames at full speed (QoS 1, nothing paced on our side), and every summary or "busy" error that comes
back is counted, matched by device and sequence number."""

from __future__ import annotations

import json
import random
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from qis import messages
from qis.schema import Schema
from qis.topics import topic

CLASSES = ("pump", "fan", "compressor", "conveyor")


def reading(rng: random.Random) -> dict[str, object]:
    """A random reading: every band of machine-health/1 occurs, so the burst spreads over all 256 exact
    addresses and their coarser levels (the lookup cache cannot answer it all)."""
    return {"machine_class": rng.choice(CLASSES), "temperature_c": rng.uniform(20, 100),
            "vibration_mm_s": rng.uniform(0.5, 10), "load_pct": rng.uniform(5, 100), "current_a": rng.uniform(2, 20)}


class BurstLoad:
    def __init__(self, host: str, port: int, site: str, devices: list[tuple[str, bytes]], schema: Schema) -> None:
        self.site = site
        self.devices = devices
        self.schema = schema
        self.seq = dict.fromkeys((d for d, _ in devices), 0)
        self.secret = dict(devices)
        self.answered: set[tuple[str, int]] = set()
        self.busy: set[tuple[str, int]] = set()
        self.summaries: dict[tuple[str, int], dict[str, object]] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="burst-load-%d" % time.monotonic_ns())
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.subscribe([("qis/v1/%s/+/summary" % site, 1), ("qis/v1/%s/+/error" % site, 1)])
        self.client.loop_start()
        time.sleep(0.5)  # the subscription is in place before the first frame

    def send_fp(self, device: str, values: dict[str, object]) -> int:
        with self.lock:
            self.seq[device] += 1
            seq = self.seq[device]
        frame = messages.encode_fp(device, seq, self.schema.fingerprint(values), self.secret[device])
        self.client.publish(topic(self.site, device, "fp"), frame, qos=1)
        return seq

    def send_outcome(self, device: str, reading_seq: int, label: str) -> None:
        with self.lock:
            self.seq[device] += 1
            seq = self.seq[device]
        frame = messages.encode_outcome(device, seq, reading_seq, label, self.secret[device], value=1.0)
        self.client.publish(topic(self.site, device, "outcome"), frame, qos=1)

    def done(self, keys: set[tuple[str, int]]) -> int:
        """How many of ``keys`` got a summary or a busy error."""
        with self.lock:
            return len(keys & (self.answered | self.busy))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            return
        try:
            device = msg.topic.split("/")[-2]
            body = json.loads(bytes(msg.payload)[:-messages.TAG_BYTES])
        except ValueError:
            return
        with self.lock:
            if msg.topic.endswith("/error"):
                if body.get("code") == "busy":
                    self.busy.add((device, body.get("seq")))
                return
            key = (device, body.get("re"))
            self.answered.add(key)
            self.summaries[key] = body

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
