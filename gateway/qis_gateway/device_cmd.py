"""`qis-gateway device add | list | revoke | remove | rekey`: the board registry from the command line.

How it works: each action opens the registry named by --db or the gateway config, checks the whole
request first (qis_gateway.provisioning) and only then writes: a refused request leaves no entry and no
file. Errors are one line on stderr and exit status 2; there is no traceback for bad input.

    add ID --site S [--fixed K=V ...] [-o FILE]   register, write device.json (0600)
    rekey ID [-o FILE]                            new secret, sequence reset; writes a new device.json
    revoke ID                                     refuse the board from now on (its id stays taken)
    remove ID                                     delete the entry; the id can be registered again
    list [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qis_gateway.provisioning import ProvisioningError, check_request, parse_fixed, write_board_config
from qis_gateway.registry import Registry, RegistryError, board_config

EXIT_OK = 0
EXIT_USAGE = 2


def _fail(message: str) -> int:
    print("qis-gateway: %s" % message, file=sys.stderr)
    return EXIT_USAGE


def _config_extra(args: argparse.Namespace, fixed: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if fixed:
        extra["fixed"] = fixed
    if args.anonymous:
        extra["broker_user"] = None
    elif args.broker_user:
        extra["broker_user"] = args.broker_user
        extra["broker_password"] = args.broker_password
    return extra


def add_device_args(dev: argparse.ArgumentParser) -> None:
    dev.add_argument("action", choices=("add", "list", "revoke", "remove", "rekey"))
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
    dev.add_argument("--fixed", action="append", default=[], metavar="KEY=VALUE",
                     help="fixed label merged into every reading, e.g. --fixed machine_class=pump (repeatable)")
    dev.add_argument("--out", "-o", help="where to write device.json (default <ID>.device.json)")
    dev.add_argument("--json", action="store_true", help="list as JSON")


def cmd_device(args: argparse.Namespace, registry_path: Path) -> int:
    """Run `device ACTION` on the registry at `registry_path` (the CLI resolves --db/--config)."""
    try:
        return _device(args, registry_path)
    except (RegistryError, ProvisioningError) as exc:
        return _fail(str(exc))


def _device(args: argparse.Namespace, registry_path: Path) -> int:
    if args.action != "list" and not args.device_id:
        return _fail("device %s: a device id is required" % args.action)
    if args.action in ("add", "rekey"):
        fixed = parse_fixed(args.fixed)
        out = Path(args.out) if args.out else Path("%s.device.json" % args.device_id)
        site = args.site
        if args.action == "rekey":
            with Registry(registry_path, create=False) as registry:
                old = registry.get(args.device_id)
            if old is None:
                return _fail("device %r is not registered" % args.device_id)
            site = old.site
        check_request(args.device_id, site, fixed, args.schema, args.broker_host, args.broker_port, out,
                      replace=args.action == "rekey")
    if args.action == "list":
        try:
            registry_path.stat()
        except FileNotFoundError:
            print("[]" if args.json else "no boards registered yet (registry %s)" % registry_path)
            return EXIT_OK
        except PermissionError:
            return _fail("cannot open registry %s: permission denied (run this as the user that owns %s, "
                         "e.g. sudo -u qis)" % (registry_path, registry_path.parent))
    with Registry(registry_path, create=args.action == "add") as registry:
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
        try:
            if args.action == "revoke":
                registry.revoke(args.device_id)
                print("revoked %s; re-run broker-config and reload the broker to drop its login" % args.device_id)
                return EXIT_OK
            if args.action == "remove":
                registry.remove(args.device_id)
                print("removed %s; re-run broker-config and reload the broker to drop its login" % args.device_id)
                return EXIT_OK
            record = registry.add(args.device_id, site) if args.action == "add" else registry.rekey(args.device_id)
        except ValueError as exc:
            return _fail(str(exc))
        config = board_config(record, args.broker_host, args.broker_port, args.schema, **_config_extra(args, fixed))
        try:
            write_board_config(out, config, replace=args.action == "rekey")
        except OSError as exc:
            if args.action == "add":
                registry.remove(record.device_id)  # nothing half-done: the id stays free
            return _fail("cannot write %s: %s" % (out, exc.strerror or exc))
    verb = "registered" if args.action == "add" else "new secret for"
    print("%s %s (site %s); board config written to %s (mode 0600, keep it secret)" % (
        verb, record.device_id, record.site, out))
    return EXIT_OK
