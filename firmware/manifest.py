# ruff: noqa: F821 - include is provided by MicroPython's manifest loader
# Freeze the qis-edge board runtime into a custom MicroPython build (frozen bytecode runs from flash,
# so the code and its names cost no heap: figures in docs/device.md, recipe in docs/flashing.md).
#
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/abs/path/to/qis-edge/firmware/manifest.py
#   make -C ports/esp8266 BOARD=ESP8266_GENERIC FROZEN_MANIFEST=/abs/path/to/qis-edge/firmware/manifest.py
#   make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=/abs/path/to/qis-edge/firmware/manifest.py
#
# The port's own base manifest comes first (it freezes asyncio, and on ESP32 its own umqtt: our client
# is qis_device.mqtt, so nothing frozen shadows it). device.json, the schema file and main.py stay on
# the board's filesystem (`qis-device deploy` copies them; see docs/flashing.md for deploying config only).
include("$(PORT_DIR)/boards/manifest.py")
include("manifest_qis.py")
