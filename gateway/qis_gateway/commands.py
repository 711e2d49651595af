"""The `qis-gateway` subcommands that inspect or prepare a gateway rather than run it: `lookup`, `status`,
`broker-config`, and the configuration loading every subcommand shares.

How it works: cli.py parses the arguments and calls these; they call the service's building blocks
(config, registry, broker_config, backend, outbox, packets) and print. Nothing here is imported by the
service, so the layers run one way: CLI -> commands -> service and its parts. Heavy or optional modules
are imported inside the function that needs them, so a missing optional part breaks only its command.
Usage errors print one line and return 2 (EXIT_USAGE); runtime failures return 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from qis_gateway.config import ConfigError, GatewayConfig, load_config, parse_hostport

log = logging.getLogger("qis_gateway.cli")

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


def load_config_or_exit(path: str | None) -> GatewayConfig:
    """The validated config (defaults when `path` is None); a one-line error and exit 2 when unusable."""
    try:
        return load_config(Path(path) if path else None)
    except ConfigError as exc:
        print("qis-gateway: configuration error: %s" % exc, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from exc


def registry_path(args: argparse.Namespace) -> Path:
    """`--db` if given, else the registry of `--config` (or of the defaults)."""
    if getattr(args, "db", None):
        return Path(args.db)
    return load_config_or_exit(args.config).registry_path


# -- broker-config ---------------------------------------------------------------------------------------
def broker_config_main(args: argparse.Namespace) -> int:
    from qis_gateway.broker_config import BrokerConfigError, generate, read_records
    from qis_gateway.registry import RegistryError

    try:
        listen = parse_hostport(args.listen, "--listen")
    except ConfigError as exc:
        print("qis-gateway broker-config: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        records = read_records(registry_path(args))
    except (RegistryError, OSError) as exc:
        print("qis-gateway broker-config: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    standalone = bool(args.persistence_dir or args.standalone)
    try:
        files = generate(Path(args.out), records, listen=listen, gateway_user=args.gateway_user,
                         gateway_password=args.gateway_password, persistence_dir=args.persistence_dir,
                         run_as=args.run_as, drop_in=not standalone, conf_path=args.drop_in,
                         gateway_env=args.gateway_env, rotate=args.rotate, ha_user=args.ha_user or None)
    except (BrokerConfigError, OSError) as exc:
        print("qis-gateway broker-config: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    active = sum(1 for r in records if not r.revoked)
    print("wrote %s, %s (%d board(s) + gateway%s, hashed by %s) and %s" % (
        files.conf, files.passwd, active, " + Home Assistant" if files.ha_env else "", files.hashed_by, files.acl))
    if files.gateway_password_new:
        print("gateway credentials written to %s (the systemd unit reads them)" % files.gateway_env)
    if files.kept_users:
        print("kept the login(s) added by others: %s" % ", ".join(files.kept_users))
    if files.ha_env:
        print("Home Assistant's broker login (user and password) is in %s" % files.ha_env)
    if files.gateway_password_changed:
        print("gateway password set in %s: reload the broker, then restart the gateway "
              "(sudo systemctl reload mosquitto && sudo systemctl restart qis-gateway)" % files.gateway_env)
    elif not files.gateway_password_new:
        print("gateway password unchanged (%s); reload the broker: sudo systemctl reload mosquitto"
              % files.gateway_env)
    if standalone:
        print("standalone broker: mosquitto -c %s" % files.conf)
    return EXIT_OK


# -- lookup ----------------------------------------------------------------------------------------------
def lookup_main(args: argparse.Namespace) -> int:
    try:
        address = bytes.fromhex(args.address)
    except ValueError:
        address = b""
    if len(address) != 32:
        print("qis-gateway lookup: ADDRESS must be 64 hex characters", file=sys.stderr)
        return EXIT_USAGE
    try:
        boot = [parse_hostport(b, "--bootstrap") for b in args.bootstrap]
    except ValueError as exc:
        print("qis-gateway lookup: %s" % exc, file=sys.stderr)
        return EXIT_USAGE
    if not boot:
        print("qis-gateway lookup: give at least one --bootstrap HOST:PORT", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_lookup(address, boot, args.limit, args.timeout))


async def _lookup(address: bytes, boot: list[tuple[str, int]], limit: int, timeout_s: float) -> int:
    from qis_gateway.backend import make_udp_swarm
    from qis_gateway.packets import PacketError, verify

    host = "127.0.0.1" if all(h in ("127.0.0.1", "localhost") for h, _ in boot) else "0.0.0.0"
    with tempfile.TemporaryDirectory(prefix="qis-lookup-") as tmp:
        swarm = make_udp_swarm((host, 0), Path(tmp), boot, None)
        await swarm.start()
        try:
            result = await asyncio.wait_for(swarm.get(address, limit), timeout_s)
        except Exception as exc:
            print("lookup failed: %s" % exc)
            return EXIT_FAIL
        finally:
            await swarm.stop(graceful=False)
    print("address %s: %d value(s), %d hop(s), %d message(s), %.1f ms" % (
        address.hex(), len(result.values), result.hops, result.messages, result.elapsed_ms))
    for value in result.values:
        try:
            p = verify(value, None, address)
        except PacketError as exc:
            print("  INVALID (%s)" % exc.reason)
            continue
        print("  %s label=%s value=%s weight=%.2f created=%s signer=%s" % (
            p.packet_id.hex()[:12], p.label, p.value, p.weight,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.created_s)), p.origin_key.hex()[:16]))
    return EXIT_OK


# -- status ----------------------------------------------------------------------------------------------
def status_main(args: argparse.Namespace) -> int:
    from qis_gateway.outbox import StateDB

    config = load_config_or_exit(args.config)
    listen = config.metrics.listen
    data: dict[str, Any] | None = None
    if listen is not None:
        host, port = listen
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        try:
            with urllib.request.urlopen("http://%s:%d/status" % (host, port), timeout=5) as resp:
                data = json.loads(resp.read())
        except OSError as exc:
            log.debug("status endpoint unreachable: %s", exc)
    if data is None:
        try:
            state = StateDB(config.state_path)
            data = {"running": False, "queue_depth": state.pending(), "outcomes_stored": state.stored()}
            state.close()
        except (sqlite3.Error, OSError) as exc:
            print("gateway not running, and its state %s cannot be read: %s (run this as the service user: "
                  "sudo -u qis ...)" % (config.state_path, exc), file=sys.stderr)
            return EXIT_FAIL
    if args.json:
        print(json.dumps(data))
    elif data.get("running") is False:
        where = "%s:%d" % listen if listen is not None else "metrics endpoint off"
        print("gateway not running (no answer on %s); queue depth %d, outcomes stored %d" % (
            where, data["queue_depth"], data["outcomes_stored"]))
    else:
        print("mqtt: %s (%s:%s)" % ("connected" if data["mqtt"]["connected"] else "DISCONNECTED",
                                    data["mqtt"]["host"], data["mqtt"]["port"]))
        print("swarm: node %s, %s peer(s), %s stored packet(s)" % (
            str(data["swarm"].get("node_id", ""))[:16], data["peers"], data["stored_packets"]))
        print("outbox: %d queued, %d stored; devices %d; up %.0f s" % (
            data["queue_depth"], data["outcomes_stored"], data["devices"], data["uptime_s"]))
        print("health: %s" % data.get("health", "ok").upper())
        for problem in data.get("problems", []):
            print("  %s" % problem)
    return EXIT_OK if data.get("running") is not False else EXIT_FAIL
