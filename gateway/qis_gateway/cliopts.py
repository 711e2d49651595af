"""What every qis-edge command line shares: `--version` and one way to say how much it logs.

The four commands (qis-gateway, qis-swarm, qis-device, qis-demo) call `add_common_options` on their
parser and `configure_logging` after parsing, so these options are spelled and mean the same everywhere:

    --version            print "<command> <version>" (the installed qis-edge package's metadata) and exit
    -v, --verbose        log everything (level DEBUG)
    -q, --quiet          log errors only (level ERROR)
    --log-level LEVEL    debug, info, warning or error (any case)

They go before or after the subcommand (`qis-gateway -v run ...` = `qis-gateway run -v ...`) and exclude
each other (giving two is a usage error, exit 2). Without any, each command logs at its own default:
INFO for the services (qis-gateway, qis-swarm), WARNING for the tools whose results are printed
(qis-device, qis-demo). `qis-gateway run` takes its default from the config's `[log] level`.
"""

from __future__ import annotations

import argparse
import logging
import sys

DIST = "qis-edge"
LEVELS = ("debug", "info", "warning", "error")


def package_version() -> str:
    """The installed qis-edge version, from its package metadata."""
    from importlib import metadata  # only when asked: importing it costs ~0.25 s of every start-up

    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown (qis-edge is not installed; run `pip install .` in the checkout)"


class _VersionAction(argparse.Action):
    """argparse's "version" action, but reading the metadata only when --version is given."""

    def __init__(self, option_strings: list[str], dest: str, prog: str = "", **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the installed version and exit")
        self.prog = prog

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        sys.stdout.write("%s %s\n" % (self.prog, package_version()))
        parser.exit()


def _level_name(text: str) -> str:
    name = text.strip().lower()
    if name not in LEVELS:
        raise argparse.ArgumentTypeError("%r is not a log level (choose from %s)" % (text, ", ".join(LEVELS)))
    return name


def add_level_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """-v, -q and --log-level alone (for a parser that is handed a subcommand's words, like emulate's)."""
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log everything (level DEBUG)")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="log errors only (level ERROR)")
    parser.add_argument("--log-level", type=_level_name, default=default, metavar="LEVEL",
                        help="log level by name: %s" % ", ".join(LEVELS))


def add_common_options(parser: argparse.ArgumentParser, prog: str,
                       subparsers: argparse._SubParsersAction | None = None, *, skip: tuple[str, ...] = ()) -> None:
    """--version and -v/-q/--log-level on `parser`, and the level options on every subcommand but `skip`
    (subcommands that hand their words to another parser)."""
    parser.add_argument("--version", action=_VersionAction, prog=prog)
    add_level_options(parser, None)
    if subparsers is not None:
        for name, sub in subparsers.choices.items():
            if name not in skip:
                # SUPPRESS: a subcommand that is not given the option keeps what the main parser parsed
                add_level_options(sub, argparse.SUPPRESS)


def chosen_level(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int | None:
    """The level the command line asks for, None when it asks for none; a usage error for two at once."""
    given = [(flag, level) for flag, level in (
        ("-v", logging.DEBUG if getattr(args, "verbose", None) else None),
        ("-q", logging.ERROR if getattr(args, "quiet", None) else None),
        ("--log-level", getattr(logging, args.log_level.upper()) if getattr(args, "log_level", None) else None),
    ) if level is not None]
    if len(given) > 1:
        parser.error("%s exclude each other: give one" % " and ".join(flag for flag, _ in given))
    return given[0][1] if given else None


def configure_logging(parser: argparse.ArgumentParser, args: argparse.Namespace, default: int,
                      fmt: str = "%(levelname)s %(name)s: %(message)s") -> int:
    """Log to stderr at the level the command line chose, else at `default`; returns the level."""
    level = chosen_level(parser, args)
    level = default if level is None else level
    logging.basicConfig(level=level, format=fmt)
    logging.getLogger().setLevel(level)  # also when a handler existed already (basicConfig then does nothing)
    return level


# Argument types the commands share (argparse turns ArgumentTypeError into a one-line usage error, exit 2).
def fraction(text: str) -> float:
    """A number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("%r must be in [0, 1)" % text)
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be >= 1" % text)
    return value
