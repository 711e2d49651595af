"""`qis-gateway`: the gateway's command line.

Subcommands (each imports its module lazily, so a missing optional part never breaks the others):

    run --config gateway.toml        the bridge service (MQTT <-> swarm), until SIGTERM/SIGINT
    keygen PATH                      create the gateway's Ed25519 signing key (qis_gateway.keys)
    device add ID --site S           register a board, write its device.json
    device list | device revoke ID   inspect / refuse boards
    broker-config --out DIR          Mosquitto config + password file + ACL for the registered boards
    lookup ADDRESS_HEX --bootstrap HOST:PORT   what the swarm holds at an address, and the hops it took
    status --config gateway.toml     peers, stored packets, queue depth (from the running gateway)

`--version`, `-v`, `-q` and `--log-level` are the options every qis-edge command shares (cliopts.py); a
level given there overrides the config's `[log] level` for `run`.

Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error. The subcommands that inspect or
prepare a gateway live in commands.py; `run` calls the service. No other module imports this one.
(The synthesis benchmark is `bench/bench_synthesis.py` in the source tree, not a subcommand.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from qis_gateway import cliopts
from qis_gateway.commands import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    broker_config_main,
    load_config_or_exit,
    lookup_main,
    registry_path,
    status_main,
)

log = logging.getLogger("qis_gateway.cli")


def cmd_run(args: argparse.Namespace) -> int:
    from qis_gateway.config import ConfigError

    config = load_config_or_exit(args.config)
    from qis_gateway.service import run_service

    try:
        return run_service(config, log_level=args.log_level_given)
    except ConfigError as exc:  # found at start-up (e.g. the gateway's own key is not trusted)
        print("qis-gateway: configuration error: %s" % exc, file=sys.stderr)
        return EXIT_USAGE


def cmd_keygen(args: argparse.Namespace) -> int:
    from qis_gateway.keys import keygen_main

    return keygen_main(args.rest)


def cmd_device(args: argparse.Namespace) -> int:
    from qis_gateway.registry import Registry, board_config

    with Registry(registry_path(args)) as registry:
        if args.action == "list":
            rows = registry.list()
            if args.json:
                print(json.dumps([{"device": r.device_id, "site": r.site, "last_seq": r.last_seq,
                                   "revoked": r.revoked} for r in rows]))
            else:
                for r in rows:
                    print("%-24s %-16s last_seq=%-8d %s" % (r.device_id, r.site, r.last_seq,
                                                            "REVOKED" if r.revoked else "active"))
            return EXIT_OK
        if not args.device_id:
            print("qis-gateway device %s: a device id is required" % args.action, file=sys.stderr)
            return EXIT_USAGE
        if args.action == "revoke":
            try:
                registry.revoke(args.device_id)
            except ValueError as exc:
                print("qis-gateway: %s" % exc, file=sys.stderr)
                return EXIT_FAIL
            print("revoked %s" % args.device_id)
            return EXIT_OK
        # add
        try:
            record = registry.add(args.device_id, args.site)
        except ValueError as exc:
            print("qis-gateway: %s" % exc, file=sys.stderr)
            return EXIT_USAGE
        extra: dict[str, object] = {}
        if args.fixed:
            extra["fixed"] = json.loads(args.fixed)
        if args.anonymous:
            extra["broker_user"] = None
        elif args.broker_user:
            extra["broker_user"] = args.broker_user
            extra["broker_password"] = args.broker_password
        config = board_config(record, args.broker_host, args.broker_port, args.schema, **extra)
        out = Path(args.out) if args.out else Path("%s.device.json" % record.device_id)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(config, indent=2) + "\n")
        out.chmod(0o600)
        print("registered %s (site %s); board config written to %s (keep it secret)" % (
            record.device_id, record.site, out))
        return EXIT_OK


def cmd_broker_config(args: argparse.Namespace) -> int:
    return broker_config_main(args)


def cmd_lookup(args: argparse.Namespace) -> int:
    return lookup_main(args)


def cmd_status(args: argparse.Namespace) -> int:
    return status_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qis-gateway", description="qis-edge gateway: MQTT boards <-> QIS swarm")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway service")
    run.add_argument("--config", "-c", required=True, help="gateway TOML file (see deploy/gateway.example.toml)")
    run.set_defaults(func=cmd_run)

    # prefix_chars="+": every word after "keygen" (--out FILE, --help) goes to keys.keygen_main untouched.
    keygen = sub.add_parser("keygen", help="create the gateway's Ed25519 signing key", add_help=False, prefix_chars="+")
    keygen.add_argument("rest", nargs=argparse.REMAINDER)
    keygen.set_defaults(func=cmd_keygen)

    dev = sub.add_parser("device", help="device registry: add | list | revoke")
    dev.add_argument("action", choices=("add", "list", "revoke"))
    dev.add_argument("device_id", nargs="?")
    dev.add_argument("--config", "-c", help="gateway TOML (for the registry path)")
    dev.add_argument("--db", help="registry SQLite file (overrides --config)")
    dev.add_argument("--site", default="site-a", help="site id (default site-a)")
    dev.add_argument("--broker-host", default="127.0.0.1", help="broker host the board connects to")
    dev.add_argument("--broker-port", type=int, default=1883)
    dev.add_argument("--broker-user", help="MQTT user of the board (default: its device id, with a password "
                     "derived from its secret, as broker-config sets up)")
    dev.add_argument("--broker-password", help="MQTT password for --broker-user")
    dev.add_argument("--anonymous", action="store_true", help="no MQTT user/password in device.json")
    dev.add_argument("--schema", default="machine_health.json", help="schema file name on the board")
    dev.add_argument("--fixed", help='fixed labels as JSON, e.g. \'{"machine_class": "pump"}\'')
    dev.add_argument("--out", "-o", help="where to write device.json (default <ID>.device.json)")
    dev.add_argument("--json", action="store_true", help="list as JSON")
    dev.set_defaults(func=cmd_device)

    bc = sub.add_parser("broker-config", help="write Mosquitto config, password file and ACL")
    bc.add_argument("--config", "-c", help="gateway TOML (registry path, gateway MQTT user)")
    bc.add_argument("--db", help="registry SQLite file (overrides --config)")
    bc.add_argument("--out", "-o", required=True, help="directory for mosquitto.conf, passwd, acl")
    bc.add_argument("--listen", default="0.0.0.0:1883", help="listener HOST:PORT (default 0.0.0.0:1883)")
    bc.add_argument("--gateway-user", default="qis-gateway", help="MQTT user of the gateway")
    bc.add_argument("--gateway-password", help="gateway password (default: env QIS_MQTT_PASSWORD, else random)")
    bc.add_argument("--run-as", help="account Mosquitto switches to when started as root (config `user`; "
                    "the Debian service already runs as mosquitto)")
    bc.add_argument("--persistence-dir", help="Mosquitto persistence_location (default: OUT)")
    bc.set_defaults(func=cmd_broker_config)

    lk = sub.add_parser("lookup", help="print what the swarm holds at an address")
    lk.add_argument("address", help="64 hex characters")
    lk.add_argument("--bootstrap", "-b", action="append", default=[], help="HOST:PORT of a swarm node")
    lk.add_argument("--limit", type=int, default=200)
    lk.add_argument("--timeout", type=float, default=10.0, help="seconds")
    lk.set_defaults(func=cmd_lookup)

    st = sub.add_parser("status", help="peers, stored packets, queue depth of the running gateway")
    st.add_argument("--config", "-c", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    cliopts.add_common_options(p, "qis-gateway", sub, skip=("keygen",))
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.log_level_given = cliopts.chosen_level(parser, args)  # `run` lets it override the config's [log] level
    cliopts.configure_logging(parser, args, logging.INFO, fmt="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_FAIL
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("qis_gateway."):
            raise
        print("qis-gateway %s: this part is not available in this install (%s missing)" % (
            args.command, exc.name), file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
