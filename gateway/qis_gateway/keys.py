"""Gateway signing keys: one Ed25519 key per gateway, kept in a file only its owner can read.

How it works
------------
A key file is one line of text: ``qis-ed25519-seed:`` followed by the 32-byte Ed25519 seed in hex.
`generate_key_file` creates it with O_CREAT|O_EXCL and mode 0600, so it never overwrites an existing
file (not even in a race) and is never readable by others, whatever the umask. `load_signing_key`
warns (logging) when the file is readable or writable by group or others, and says how to fix it.
Trust lists (permissioned swarms) are files of public keys, one hex key per line, '#' comments allowed.

This module and packets.py are the only ones that touch pynacl (design rule 8, docs/design.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import nacl.signing

from qis_gateway import cliopts
from qis_gateway.packets import signer_id

log = logging.getLogger(__name__)

KEY_PREFIX = "qis-ed25519-seed:"
KEY_MODE = 0o600


class KeyFileError(ValueError):
    """A key or trust-list file that cannot be written or used; the message says why and what to do."""


def signing_key_from_seed(seed: bytes) -> nacl.signing.SigningKey:
    """A key from a 32-byte seed (deterministic keys for tests and benches; real keys come from files)."""
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise KeyFileError("an Ed25519 seed is 32 bytes")
    return nacl.signing.SigningKey(seed)


def public_key_bytes(signing_key: nacl.signing.SigningKey) -> bytes:
    return bytes(signing_key.verify_key)


def generate_key_file(path: Path) -> nacl.signing.SigningKey:
    """Write a new random key to `path` (mode 0600). Refuses to overwrite: KeyFileError if it exists."""
    path = Path(path)
    key = nacl.signing.SigningKey.generate()
    text = (KEY_PREFIX + bytes(key).hex() + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    except FileExistsError as exc:
        raise KeyFileError("%s already exists; refusing to overwrite a key (move it away first)" % path) from exc
    except OSError as exc:
        raise KeyFileError("cannot create key file %s: %s" % (path, exc.strerror)) from exc
    try:
        os.fchmod(fd, KEY_MODE)
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_signing_key(path: Path) -> nacl.signing.SigningKey:
    """Read a key file written by `generate_key_file`; warns when others may read or write it."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise KeyFileError("cannot read key file %s: %s" % (path, exc.strerror)) from exc
    except UnicodeDecodeError as exc:
        raise KeyFileError("%s is not a qis key file (not ASCII text)" % path) from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "key file %s has loose permissions %04o: anyone who reads it can sign as this gateway; "
            "run: chmod 600 %s",
            path,
            stat.S_IMODE(mode),
            path,
        )
    if not text.startswith(KEY_PREFIX):
        raise KeyFileError("%s is not a qis key file (expected a line starting %r)" % (path, KEY_PREFIX))
    try:
        seed = bytes.fromhex(text[len(KEY_PREFIX) :])
    except ValueError as exc:
        raise KeyFileError("%s: the seed is not hex" % path) from exc
    if len(seed) != 32:
        raise KeyFileError("%s: the seed must be 32 bytes, got %d" % (path, len(seed)))
    return nacl.signing.SigningKey(seed)


def parse_public_key(text: str) -> bytes:
    """A raw 32-byte public key from its 64-character hex form."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise KeyFileError("public key %r is not hex" % text) from exc
    if len(raw) != 32:
        raise KeyFileError("a public key is 32 bytes (64 hex characters), got %d bytes" % len(raw))
    return raw


def load_trust_list(path: Path) -> frozenset[bytes]:
    """Public keys (one hex key per line; blank lines and '#' comments ignored) of trusted gateways."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeyFileError("cannot read trust list %s: %s" % (path, exc.strerror)) from exc
    keys = set()
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            keys.add(parse_public_key(line.split()[0]))
        except KeyFileError as exc:
            raise KeyFileError("%s line %d: %s" % (path, number, exc)) from exc
    return frozenset(keys)


def keygen_main(argv: Sequence[str] | None = None) -> int:
    """`qis-gateway keygen --out FILE` (or `keygen FILE`): write a new key, print its public key and signer id."""
    parser = argparse.ArgumentParser(prog="qis-gateway keygen", description="Create this gateway's Ed25519 key.")
    parser.add_argument("--out", type=Path, help="key file to create, mode 0600 (refuses to overwrite)")
    parser.add_argument("path", nargs="?", type=Path, help="the same as --out")
    cliopts.add_level_options(parser)  # qis-gateway hands every word after "keygen" here, these too
    args = parser.parse_args(argv)
    level = cliopts.chosen_level(parser, args)
    if level is not None:
        logging.getLogger().setLevel(level)
    if (args.out is None) == (args.path is None):
        parser.error("give the key file once: --out FILE")
    args.out = args.out or args.path
    try:
        key = generate_key_file(args.out)
    except KeyFileError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 1
    public = public_key_bytes(key)
    print("key file:   %s (mode 0600)" % args.out)
    print("public key: %s" % public.hex())
    print("signer id:  %s" % signer_id(public).hex())
    return 0
