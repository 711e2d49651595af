"""CPU per message of the gateway's MQTT client alone (a diagnostic for issue 17).

A child process runs `MqttClient` the way the gateway does -- a batch of messages taken at once, each
PUBACKed, then a QoS 1 publish per message (the summary), GIL switch interval as the service sets it --
echoing what this process's paho generator sends (closed loop, `--in-flight` outstanding, QoS 1) through
a local Mosquitto. Reported: the child's CPU (user + system, from /proc) per echoed message, best and
median of R repeats, and the echo rate. Unlike bench/bench_gateway_throughput.py there is no gateway
work in the loop, so a change to mqtt_client.py shows up in CPU per message above a shared box's noise.

    .venv/bin/python bench/experiments/mqtt_cpu.py [--messages 20000] [--in-flight 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PAYLOAD = b"x" * 200  # about an fp frame's size


def echo(port: int) -> None:
    """Child: the gateway's receive/ack/publish pattern on its own MQTT client."""
    from qis_gateway.config import MqttSettings
    from qis_gateway.mqtt_client import MqttClient
    from qis_gateway.service import GIL_SWITCH_S

    sys.setswitchinterval(GIL_SWITCH_S)

    async def run() -> None:
        client = MqttClient(MqttSettings(host="127.0.0.1", port=port, client_id="exp-echo", protocol="5"),
                            (("exp/+/in", 1),))
        client.start()
        while True:
            batch = await client.next_batch(256)
            for msg in batch:
                client.ack(msg)
            for msg in batch:
                await asyncio.sleep(0)  # an answer is a task of its own in the gateway
                client.publish(msg.topic[:-2] + "out", msg.payload, 1)

    asyncio.run(run())


def cpu_s(pid: int) -> float:
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(port: int, messages: int, in_flight: int) -> tuple[float, float]:
    """(CPU ms per message of the echo child, messages/s)."""
    child = subprocess.Popen([sys.executable, __file__, "--child", str(port)])
    try:
        done = threading.Event()
        state = {"sent": 0, "got": 0, "probing": 0}
        lock = threading.Lock()
        gen = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="exp-gen-%d" % time.monotonic_ns())
        gen.max_inflight_messages_set(1000)
        gen.max_queued_messages_set(0)

        def send() -> None:
            with lock:
                state["sent"] += 1
                n = state["sent"]
            gen.publish("exp/%d/in" % (n % 64), PAYLOAD, qos=1)

        def on_message(c: object, u: object, msg: mqtt.MQTTMessage) -> None:
            with lock:
                state["got"] += 1
                got, sent = state["got"], state["sent"]
            if got >= messages or state["probing"]:  # done, or a warm-up probe came back
                done.set()
            elif sent < messages:
                send()

        gen.on_message = on_message
        gen.connect("127.0.0.1", port)
        gen.subscribe("exp/+/out", 1)
        gen.loop_start()
        state["probing"] = 1  # until the child answers (connected and subscribed)
        for _ in range(600):
            gen.publish("exp/0/in", PAYLOAD, qos=1)
            if done.wait(0.1):
                break
        else:
            raise SystemExit("the echo child never answered")
        time.sleep(0.3)  # the probes' tail
        done.clear()
        state["sent"], state["got"], state["probing"] = 0, 0, 0
        c0, t0 = cpu_s(child.pid), time.perf_counter()
        for _ in range(in_flight):
            send()
        if not done.wait(120):
            raise SystemExit("only %d of %d echoed" % (state["got"], messages))
        c1, t1 = cpu_s(child.pid), time.perf_counter()
        gen.disconnect()
        gen.loop_stop()
        return 1000 * (c1 - c0) / messages, messages / (t1 - t0)
    finally:
        child.terminate()
        child.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        echo(args.child)
        return
    from qis_gateway.harness.broker import start_broker

    with tempfile.TemporaryDirectory(prefix="qis-mqtt-cpu-") as tmp:
        broker = start_broker(Path(tmp), persistence=False)
        try:
            runs = [one_run(broker.port, args.messages, args.in_flight) for _ in range(args.repeats)]
        finally:
            broker.stop()
    cpu, rate = [c for c, _ in runs], [r for _, r in runs]
    print(json.dumps({"messages": args.messages, "in_flight": args.in_flight,
                      "cpu_ms_per_message_best": round(min(cpu), 4),
                      "cpu_ms_per_message_median": round(statistics.median(cpu), 4),
                      "per_s_median": round(statistics.median(rate))}))


if __name__ == "__main__":
    main()
