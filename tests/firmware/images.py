"""Synthetic firmware images with real header layouts (ESP image format, UF2) for the flash tests."""

from __future__ import annotations

import struct

CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32s3": 9, "esp32c3": 5}


def esp32_image(chip_id: int, *, app_only: bool = False) -> bytes:
    """Common header (magic 0xE9, 3 segments, DIO, 4MB/40MHz, entry) + extended header with chip id."""
    common = bytes([0xE9, 3, 2, 0x20]) + struct.pack("<I", 0x40080400)
    extended = bytes([0xEE, 0, 0, 0]) + struct.pack("<H", chip_id) + bytes([0]) + bytes(9)
    segment = struct.pack("<II", 0x3F400020, 256)
    body = struct.pack("<I", 0xABCD5432) if app_only else b"\x50" + bytes(3)
    return common + extended + segment + body + bytes(256)


def esp8266_image() -> bytes:
    """ESP8266 v1 image: magic, segment count, mode, size/freq, entry, then the first segment header."""
    return bytes([0xE9, 2, 0, 0x40]) + struct.pack("<I", 0x40100000) + struct.pack("<II", 0x40100000, 64) + bytes(64)


def uf2_image(family: int = 0xE48BFF56) -> bytes:
    block = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, family)
    return block + bytes(476) + struct.pack("<I", 0x0AB16F30)
