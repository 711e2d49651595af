# ruff: noqa: F821 - include/metadata/package are provided by MicroPython's manifest loader
# Freeze the qis-edge board runtime into a custom MicroPython build (frozen bytecode runs from flash,
# so the code costs almost no heap: the RAM figures in docs/device.md are for .mpy files on the heap).
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/abs/path/to/qis-edge/firmware/manifest.py
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/abs/path/to/qis-edge/firmware/manifest.py
#
# Paths are relative to this file. The port's own manifest comes first (it freezes asyncio and, on
# ESP32, its own umqtt: our client is qis_device.mqtt, so nothing frozen shadows it). device.json,
# the schema file and main.py stay on the board's filesystem (`qis-device deploy` copies them).
include("$(PORT_DIR)/boards/manifest.py")
metadata(description="qis-edge board runtime: QIS fingerprints over MQTT", version="0.1.0")
package("qis", base_path="../shared")
package("qis_device", base_path="../device")
