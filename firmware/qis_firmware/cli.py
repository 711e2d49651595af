"""`qis-device`: flash, deploy, provision, monitor and emulate boards (argparse front end).

How it works: each subcommand parses its options, has the external tools it will use checked
(qis_firmware.tools: one line naming what is missing and how to install it, exit 2) and calls one
module (flash, deploy, provision, serialport, emulate). `--version`, `-v`, `-q` and `--log-level` are
the options every qis-edge command shares (qis_gateway.cliopts). Every FirmwareError is printed as
one line `qis-device: error: ...` and turned into its exit code; tracebacks are for our bugs only.
`emulate` is handed to `qis_firmware.emulate.main(argv)`, imported only when used.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qis_gateway import cliopts

from qis_firmware import chips, tools
from qis_firmware.errors import FirmwareError, UsageError
from qis_firmware.targets import EMULATED_PREFIX

log = logging.getLogger("qis_device_cli")


def _cmd_flash(args: argparse.Namespace) -> int:
    from qis_firmware.flash import flash

    flash(port=args.port, chip=args.chip, firmware=Path(args.firmware), baud=args.baud, erase=args.erase,
          dry_run=args.dry_run)
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from qis_firmware.config import find_schema, load_config
    from qis_firmware.deploy import default_sources, deploy, entry_files
    from qis_firmware.mpy import MpyTarget
    from qis_firmware.targets import open_target

    given = MpyTarget.parse(args.mpy_version, args.arch) if args.mpy_version else None
    if given is None and args.arch:
        raise UsageError("--arch needs --mpy-version too (e.g. --mpy-version 6.3 --arch xtensawin)")
    # Check the config and this install before the board is touched (opening it interrupts its program).
    find_schema(load_config(Path(args.config)), Path(args.config))
    entry_files(default_sources())
    target = open_target(args.port, baud=args.baud, raw_repl_timeout_s=args.raw_repl_timeout)
    try:
        result = deploy(target, Path(args.config), mpy_target=given, compile_code=not args.no_compile,
                        dry_run=args.dry_run, force=args.force)
    finally:
        target.close()
    for path in result.copied:
        print(("would copy " if args.dry_run else "copied ") + path)
    for path in result.removed:
        print(("would remove " if args.dry_run else "removed ") + path)
    print(result.summary())
    return 0


def _cmd_provision(args: argparse.Namespace) -> int:
    from qis_firmware.provision import parse_fixed, provision

    out = Path(args.out) if args.out else Path("%s.device.json" % args.device_id)
    wifi = (args.wifi_ssid, args.wifi_password or "") if args.wifi_ssid else None
    sensor = {"driver": args.sensor, "seed": 1} if args.sensor else None
    config = provision(args.device_id, gateway_db=Path(args.gateway_db), site=args.site, broker=args.broker,
                       out=out, schema=args.schema, fixed=parse_fixed(args.fixed), wifi=wifi, sensor=sensor,
                       anonymous=args.anonymous)
    print("registered %s/%s in %s; board config written to %s (mode 0600, holds the secret)"
          % (config["site"], config["device"], args.gateway_db, out))
    print("next: qis-device deploy --port PORT --config %s" % out)
    return 0


def _cmd_monitor(args: argparse.Namespace) -> int:
    from qis_firmware.serialport import monitor

    print("monitoring %s at %d baud; Ctrl-C to stop" % (args.port, args.baud), file=sys.stderr)
    monitor(args.port, baud=args.baud, duration_s=args.seconds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qis-device", description="Flash, provision, deploy and watch qis boards.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("flash", help="write MicroPython firmware (esptool; rp2: UF2 copy steps)")
    p.add_argument("--port", default="", help="serial port, e.g. /dev/ttyUSB0 (not needed for rp2)")
    p.add_argument("--chip", required=True, choices=chips.CHIP_CHOICES)
    p.add_argument("--firmware", required=True, help="MicroPython firmware file (.bin, or .uf2 for rp2)")
    p.add_argument("--baud", type=int, default=460800)
    p.add_argument("--erase", action="store_true", help="erase the whole flash first (file system included)")
    p.add_argument("--dry-run", action="store_true", help="print the esptool invocation; touch no port")
    p.set_defaults(func=_cmd_flash)

    p = sub.add_parser("deploy", help="compile and copy qis + qis_device + config to a board")
    p.add_argument("--port", required=True, help="serial port, or emulated:DIR for a host directory")
    p.add_argument("--config", required=True, help="the board's device.json")
    p.add_argument("--no-compile", action="store_true", help="ship .py sources instead of .mpy")
    p.add_argument("--mpy-version", help="board .mpy version (e.g. 6 or 6.3) if it cannot be read")
    p.add_argument("--arch", help="board native arch for mpy-cross -march (e.g. xtensawin, armv6m)")
    p.add_argument("--force", action="store_true", help="copy every file, ignoring the board's manifest")
    p.add_argument("--dry-run", action="store_true", help="show what would be copied; write nothing")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--raw-repl-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_deploy)

    p = sub.add_parser("provision", help="register a board with the gateway and write its device.json")
    p.add_argument("device_id")
    p.add_argument("--gateway-db", required=True, help="the gateway's registry database")
    p.add_argument("--site", required=True)
    p.add_argument("--broker", required=True, help="HOST:PORT the board connects to")
    p.add_argument("--schema", default="machine_health.json")
    p.add_argument("--out", help="where to write the config (default: ID.device.json)")
    p.add_argument("--anonymous", action="store_true",
                   help="no MQTT login in the config (default: the device id and the password that "
                        "`qis-gateway broker-config` derives from the secret)")
    p.add_argument("--fixed", action="append", default=[], metavar="KEY=VALUE", help="fixed label (repeatable)")
    p.add_argument("--sensor", help="sensor driver (sim, adc, bme280, ...)")
    p.add_argument("--wifi-ssid")
    p.add_argument("--wifi-password")
    p.set_defaults(func=_cmd_provision)

    p = sub.add_parser("monitor", help="show the board's console")
    p.add_argument("--port", required=True)
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    p.set_defaults(func=_cmd_monitor)

    p = sub.add_parser("emulate", help="run deployed board code under the MicroPython unix port",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)
    cliopts.add_common_options(parser, "qis-device", sub, skip=("emulate",))
    return parser


def needed_tools(args: argparse.Namespace) -> list[str]:
    """The external tools (qis_firmware.tools) the parsed command will use."""
    if args.command == "flash":
        uf2 = args.chip == "rp2" or (args.chip == "auto" and args.firmware.lower().endswith(".uf2"))
        return [] if uf2 else ["esptool"]
    if args.command == "deploy":
        emulated = args.port.startswith(EMULATED_PREFIX)
        needed = [] if args.no_compile else ["mpy-cross"]
        if emulated and not args.no_compile:
            needed.append("micropython")  # the emulated board's bytecode version is the unix port's
        if not emulated:
            needed.append("mpremote")
        return needed
    return []


def _emulate(argv: list[str]) -> int:
    try:
        from qis_firmware.emulate import main as emulate_main
    except ImportError as exc:
        if exc.name != "qis_firmware.emulate":
            raise
        print("qis-device: error: the emulator is not available in this install (%s)" % exc, file=sys.stderr)
        return 1
    return int(emulate_main(argv) or 0)


def _common_head(argv: list[str]) -> argparse.Namespace | None:
    """The options before `emulate` when they are only the common ones (-v, -q, --log-level), else None."""
    head = argparse.ArgumentParser(prog="qis-device", add_help=False)
    cliopts.add_common_options(head, "qis-device")
    args, unknown = head.parse_known_args(argv)
    return None if unknown else args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "emulate" in argv:  # hand everything after it to the emulator's own parser
        at = argv.index("emulate")
        head = _common_head(argv[:at])
        if head is not None:
            cliopts.configure_logging(build_parser(), head, logging.WARNING)
            return _emulate(argv[at + 1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    cliopts.configure_logging(parser, args, logging.WARNING)
    if args.command == "emulate":
        return _emulate(list(args.rest))
    try:
        tools.require(needed_tools(args), args.command)
        return int(args.func(args))
    except FirmwareError as exc:
        print("qis-device: error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("qis-device: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
