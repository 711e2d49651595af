"""Chip table and firmware image checks (pure: no ports, no esptool).

How it works:
- `CHIPS` holds, per supported Espressif chip, where MicroPython's combined firmware image goes in flash
  and which flash mode/size arguments esptool gets. Offsets come from MicroPython's board files
  (ports/esp32/boards/*/board.json, docs/esp8266/tutorial/intro.rst): 0x1000 for ESP32 and ESP32-S2
  (the ROM loads the second-stage bootloader from there), 0x0 for ESP32-S3, ESP32-C3 and ESP8266.
  Flash mode `keep` leaves the mode the image was built with (MicroPython builds use DIO on ESP32
  boards); ESP8266 boards vary in flash size, so esptool detects it.
- `inspect_image(data)` reads the first bytes of a firmware file and says what it can tell:
  * ESP image: byte 0 is 0xE9. ESP32-family images carry a 16-byte extended header after the 8-byte
    common header; its uint16 at file offset 12 is the chip id (esptool's IMAGE_CHIP_ID: ESP32 0,
    S2 2, C3 5, S3 9, ...). ESP8266 images have no such field, so only the magic can be checked.
    An ESP-IDF *application-only* image (esp_app_desc_t magic 0xABCD5432 at offset 32) is not the
    combined MicroPython firmware and would brick the boot at the combined-image offset.
  * UF2 (rp2): magic words "UF2\\n" and 0x9E5D5157; family id at offset 28 (RP2040 0xE48BFF56,
    RP2350 0xE48BFF57/59/5A).
- `check_image(chip, data)` raises FirmwareImageMismatch when the header tells the image is for
  another chip, and returns a one-line note of what was (or could not be) checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from qis_firmware.errors import FirmwareImageMismatch

ESP_IMAGE_MAGIC = 0xE9
ESP_APP_DESC_MAGIC = 0xABCD5432
UF2_MAGIC_START0 = 0x0A324655
UF2_MAGIC_START1 = 0x9E5D5157
RP2_UF2_FAMILIES = {0xE48BFF56: "RP2040", 0xE48BFF57: "RP2350 (absolute)", 0xE48BFF59: "RP2350 (Arm)",
                    0xE48BFF5A: "RP2350 (RISC-V)"}


@dataclass(frozen=True, slots=True)
class ChipSpec:
    name: str                # our name, as on the command line
    esptool_name: str        # esptool --chip value
    display: str             # esptool's CHIP_NAME, used to map detection results back
    offset: int              # where the combined MicroPython firmware image goes
    flash_mode: str
    flash_size: str
    image_chip_id: int | None  # extended-header chip id; None: the image format does not carry one


CHIPS: dict[str, ChipSpec] = {
    "esp32": ChipSpec("esp32", "esp32", "ESP32", 0x1000, "keep", "keep", 0),
    "esp32s2": ChipSpec("esp32s2", "esp32s2", "ESP32-S2", 0x1000, "keep", "keep", 2),
    "esp32s3": ChipSpec("esp32s3", "esp32s3", "ESP32-S3", 0x0, "keep", "keep", 9),
    "esp32c3": ChipSpec("esp32c3", "esp32c3", "ESP32-C3", 0x0, "keep", "keep", 5),
    "esp8266": ChipSpec("esp8266", "esp8266", "ESP8266", 0x0, "keep", "detect", None),
}
RP2 = "rp2"
CHIP_CHOICES = (*CHIPS, RP2, "auto")

# Chip ids of ESP32-family images we do not flash, so a mismatch message can name them.
OTHER_IMAGE_CHIP_IDS = {12: "ESP32-C2", 13: "ESP32-C6", 16: "ESP32-H2", 18: "ESP32-P4", 23: "ESP32-C5"}


def chip_from_display(display: str) -> str | None:
    """Map esptool's CHIP_NAME (e.g. 'ESP32-S3') to our chip name, or None when unsupported."""
    for spec in CHIPS.values():
        if spec.display.upper() == display.strip().upper():
            return spec.name
    return None


@dataclass(frozen=True, slots=True)
class ImageInfo:
    kind: str                    # "esp", "esp-app", "uf2", "unknown"
    chip_id: int | None = None   # ESP extended-header chip id (None for ESP8266-style or non-ESP images)
    uf2_family: int | None = None

    def chip_names(self) -> str:
        """Human name of the chip the image header names, for messages."""
        if self.kind == "uf2":
            return RP2_UF2_FAMILIES.get(self.uf2_family or 0, "UF2 family 0x%08X" % (self.uf2_family or 0))
        if self.chip_id is None:
            return "unknown chip"
        for spec in CHIPS.values():
            if spec.image_chip_id == self.chip_id:
                return spec.display
        return OTHER_IMAGE_CHIP_IDS.get(self.chip_id, "chip id %d" % self.chip_id)


def inspect_image(data: bytes) -> ImageInfo:
    """What the first 64 bytes of a firmware file tell about its target."""
    if len(data) >= 32 and struct.unpack_from("<II", data, 0) == (UF2_MAGIC_START0, UF2_MAGIC_START1):
        return ImageInfo("uf2", uf2_family=struct.unpack_from("<I", data, 28)[0])
    if len(data) >= 16 and data[0] == ESP_IMAGE_MAGIC:
        chip_id = struct.unpack_from("<H", data, 12)[0]
        if len(data) >= 36 and struct.unpack_from("<I", data, 32)[0] == ESP_APP_DESC_MAGIC:
            return ImageInfo("esp-app", chip_id=chip_id)
        return ImageInfo("esp", chip_id=chip_id)
    return ImageInfo("unknown")


def chip_for_image(info: ImageInfo) -> str | None:
    """Our chip name for an ESP32-family image header, else None (ESP8266 images do not say)."""
    if info.kind not in ("esp", "esp-app") or info.chip_id is None:
        return None
    for spec in CHIPS.values():
        if spec.image_chip_id == info.chip_id:
            return spec.name
    return None


def check_image(chip: str, data: bytes, *, firmware_name: str = "firmware") -> str:
    """Refuse an image whose header names another chip; return a note on what was checked."""
    info = inspect_image(data)
    if chip == RP2:
        if info.kind == "uf2" and info.uf2_family in RP2_UF2_FAMILIES:
            return "UF2 image for %s" % info.chip_names()
        if info.kind == "uf2":
            raise FirmwareImageMismatch(
                "%s is a UF2 image for %s, not for an RP2040/RP2350 board; download the rp2 build "
                "(RPI_PICO_W-*.uf2) from https://micropython.org/download/" % (firmware_name, info.chip_names()))
        if info.kind in ("esp", "esp-app"):
            raise FirmwareImageMismatch(
                "%s is an Espressif image, but --chip rp2 takes a .uf2 file" % firmware_name)
        raise FirmwareImageMismatch("%s is not a UF2 image (no UF2 magic); rp2 boards take a .uf2 file"
                                    % firmware_name)
    spec = CHIPS[chip]
    if info.kind == "uf2":
        raise FirmwareImageMismatch(
            "%s is a UF2 image (for %s); %s takes the .bin firmware written with esptool"
            % (firmware_name, info.chip_names(), spec.display))
    if info.kind == "unknown":
        raise FirmwareImageMismatch(
            "%s does not start with the ESP image magic byte 0xE9: it is not an Espressif firmware image "
            "(did you pass a .elf, .hex, .zip or a web page saved by mistake?)" % firmware_name)
    if spec.image_chip_id is None:
        # ESP8266 (v1) image: bytes 8.. are the first segment header, there is no chip id to compare.
        return "ESP image magic ok; ESP8266 images carry no chip id, so the chip cannot be checked"
    if info.chip_id != spec.image_chip_id:
        raise FirmwareImageMismatch(
            "%s is built for %s (image header chip id %d), not for %s (chip id %d); download the %s "
            "build from https://micropython.org/download/" % (
                firmware_name, info.chip_names(), info.chip_id, spec.display, spec.image_chip_id,
                spec.display))
    if info.kind == "esp-app":
        raise FirmwareImageMismatch(
            "%s is an application-only image (it starts with an esp_app_desc), which belongs at the "
            "app partition (usually 0x10000), not at 0x%x; use MicroPython's combined firmware .bin "
            "(bootloader + partition table + app)" % (firmware_name, spec.offset))
    return "ESP image for %s (header chip id %d)" % (spec.display, info.chip_id)
