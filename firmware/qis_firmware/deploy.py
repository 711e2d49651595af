"""`qis-device deploy`: compile board code, copy what changed, reset the board.

How it works:
1. Check the config (config.load_config) and find its schema file.
2. Ask the target its bytecode version (`sys.implementation._mpy` on a board; the unix port for
   `emulated:DIR`). `--mpy-version` may stand in for an unreadable board; when both exist and differ the
   deploy stops with BytecodeMismatch rather than copying files the board cannot load.
3. Plan the files, all at board-relative paths: `qis/*.mpy` (shared/qis), `qis_device/**.mpy`
   (device/qis_device), `main.py` and `boot.py` as source (the board executes those two as .py; they
   ship inside this package, qis_firmware/board/, so a pip-installed qis-device has them too),
   `device.json` and the schema next to it. `--no-compile` ships every module as .py instead. A plan
   without main.py and boot.py is refused (IncompleteInstall, exit 2) before the board is written: the
   board would boot to an idle REPL, and a board deployed earlier would lose its entry point.
4. Hash every planned file (SHA-256 of the exact bytes). The board keeps the hashes of its last
   complete deploy in `.qis_manifest.json`; a file is copied only when its hash differs (or `--force`).
   Files the old manifest lists but the new plan does not are removed. The old manifest is deleted
   before the first write and the new one written after the last, so an interrupted deploy is a full
   deploy next time rather than a board that claims code it does not have.
5. Reset the board (a real board then boots main.py). This happens even when nothing changed, because
   reading the board's version and manifest over the raw REPL interrupted its program.
`--dry-run` does steps 1-4 reading the board, writes nothing, and resets it as in step 5.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from qis_firmware import config as config_mod
from qis_firmware import mpy
from qis_firmware.errors import BytecodeMismatch, IncompleteInstall, UsageError
from qis_firmware.targets import Target, check_board_path

log = logging.getLogger(__name__)

MANIFEST = ".qis_manifest.json"
MANIFEST_FORMAT = 1
CONFIG_NAME = "device.json"
ENTRY_SCRIPTS = ("main.py", "boot.py")  # executed by the board as source, never compiled
BOARD_DIR = Path(__file__).resolve().parent / "board"  # the entry scripts, package data of qis_firmware


@dataclass(frozen=True, slots=True)
class PlannedFile:
    board_path: str
    data: bytes
    source: str  # where it came from, for messages

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class DeployResult:
    target: str
    mpy: str
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reset: bool = False
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would copy" if self.dry_run else "copied"
        return "%s: %s %d, unchanged %d, %s %d, bytecode %s%s" % (
            self.target, verb, len(self.copied), len(self.skipped),
            "would remove" if self.dry_run else "removed", len(self.removed), self.mpy,
            ", board reset" if self.reset else "")


@dataclass(frozen=True, slots=True)
class Sources:
    """What goes on the board: packages as (directory, package name), and the folder of main.py/boot.py."""

    packages: tuple[tuple[Path, str], ...]
    entry_dir: Path | None


def default_sources() -> Sources:
    """The installed qis and qis_device packages, plus main.py and boot.py from qis_firmware/board/."""
    import qis
    import qis_device

    qis_dir = Path(qis.__file__).resolve().parent
    device_pkg = Path(qis_device.__file__).resolve().parent
    return Sources(((qis_dir, "qis"), (device_pkg, "qis_device")), BOARD_DIR)


def _modules(package_dir: Path, package: str) -> list[tuple[Path, str]]:
    """(source file, board path without suffix) for every .py below a package directory."""
    found = []
    for src in sorted(package_dir.rglob("*.py")):
        rel = src.relative_to(package_dir).with_suffix("")
        if "__pycache__" in rel.parts or any(part.startswith(".") for part in rel.parts):
            continue
        found.append((src, "/".join((package, *rel.parts))))
    return found


def entry_files(sources: Sources) -> list[PlannedFile]:
    """main.py and boot.py as PlannedFiles; IncompleteInstall when either is missing from this install."""
    planned = []
    for name in ENTRY_SCRIPTS:
        script = sources.entry_dir / name if sources.entry_dir else None
        if script is None or not script.is_file():
            raise IncompleteInstall(
                "this qis-edge install lacks the board's %s (looked in %s); without it the board would boot to "
                "an idle REPL, so nothing was written: reinstall qis-edge from a checkout (`pip install .`) or "
                "its wheel" % (name, sources.entry_dir or "no directory"))
        planned.append(PlannedFile(name, script.read_bytes(), str(script)))
    return planned


def plan_files(config_path: Path, config: dict, *, target: mpy.MpyTarget | None, compile_code: bool,
               build_dir: Path, sources: Sources | None = None) -> list[PlannedFile]:
    """Every file the board should hold after this deploy, with its exact bytes."""
    sources = sources or default_sources()
    entries = entry_files(sources)  # first: refuse a broken install before compiling anything
    planned: list[PlannedFile] = []
    modules = [module for folder, package in sources.packages for module in _modules(folder, package)]
    for src, stem in modules:
        if compile_code:
            if target is None:
                raise UsageError("internal: compiling needs a bytecode target")
            out = build_dir.joinpath(*stem.split("/")).with_suffix(".mpy")
            data = mpy.compile_source(src, out, source_name=stem + ".py", target=target)
            planned.append(PlannedFile(stem + ".mpy", data, str(src)))
        else:
            planned.append(PlannedFile(stem + ".py", src.read_bytes(), str(src)))
    planned += entries
    schema_path = config_mod.find_schema(config, config_path)
    planned.append(PlannedFile(CONFIG_NAME, config_path.read_bytes(), str(config_path)))
    planned.append(PlannedFile(config["schema"], schema_path.read_bytes(), str(schema_path)))
    return planned


def read_manifest(target: Target) -> dict[str, str]:
    """The board's {path: sha256} of its last complete deploy; {} when absent or unreadable."""
    raw = target.read_file(MANIFEST)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw.decode("utf-8"))
        files = doc["files"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown manifest format")
        manifest = {}
        for path, digest in files.items():
            try:
                manifest[check_board_path(str(path))] = str(digest)
            except UsageError:
                log.warning("ignoring bad path %r in %s on %s", path, MANIFEST, target.label)
        return manifest
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        log.warning("ignoring unreadable %s on %s (%s): deploying everything", MANIFEST, target.label, exc)
        return {}


def manifest_bytes(planned: list[PlannedFile], mpy_label: str) -> bytes:
    doc = {"format": MANIFEST_FORMAT, "mpy": mpy_label, "files": {p.board_path: p.sha256 for p in planned}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def resolve_bytecode(target: Target, given: mpy.MpyTarget | None, *, compile_code: bool) -> mpy.MpyTarget | None:
    """The bytecode target: the board's, cross-checked against `--mpy-version`/`--arch` when given."""
    if not compile_code:
        return None
    board = target.read_mpy_target()
    if given is None:
        return board
    if given.version != board.version:
        raise BytecodeMismatch(
            "bytecode version mismatch: --mpy-version says .mpy v%d, but %s runs .mpy %s; .mpy files of another "
            "version fail to import on the board ('incompatible .mpy file'). Drop --mpy-version or fix it"
            % (given.version, target.label, board.label()))
    if given.arch and board.arch and given.arch != board.arch:
        raise BytecodeMismatch("--arch %s given, but %s reports arch %s" % (given.arch, target.label, board.arch))
    return mpy.MpyTarget(given.version, board.sub_version, given.arch or board.arch)


def deploy(target: Target, config_path: Path, *, mpy_target: mpy.MpyTarget | None = None,
           compile_code: bool = True, dry_run: bool = False, force: bool = False,
           build_dir: Path | None = None, sources: Sources | None = None) -> DeployResult:
    """Deploy to an open target (see module docstring); the caller closes it."""
    config = config_mod.load_config(config_path)
    bytecode = resolve_bytecode(target, mpy_target, compile_code=compile_code)
    label = bytecode.label() if bytecode else "source (.py)"
    with tempfile.TemporaryDirectory(prefix="qis-deploy-") as tmp:
        planned = plan_files(config_path, config, target=bytecode, compile_code=compile_code,
                             build_dir=build_dir or Path(tmp), sources=sources)
    old = read_manifest(target)
    on_board = {} if force else old
    result = DeployResult(target.label, label, dry_run=dry_run)
    changed = [p for p in planned if on_board.get(p.board_path) != p.sha256]
    result.copied = [p.board_path for p in changed]
    result.skipped = [p.board_path for p in planned if p.board_path not in set(result.copied)]
    wanted = {p.board_path for p in planned}
    result.removed = sorted(path for path in old if path not in wanted and path != MANIFEST)
    if not dry_run and (changed or result.removed):
        target.remove_file(MANIFEST)
        for item in changed:
            log.info("copy %s -> %s:%s", item.source, target.label, item.board_path)
            target.write_file(item.board_path, item.data)
        for path in result.removed:
            log.info("remove stale %s:%s", target.label, path)
            target.remove_file(path)
        target.write_file(MANIFEST, manifest_bytes(planned, label))
    # Reading the board interrupted its program (raw REPL); a reset restarts it, changed or not.
    target.reset()
    result.reset = True
    return result
