# ruff: noqa: F821 - metadata/package are provided by MicroPython's manifest loader
# The qis-edge board code, for freezing: included by firmware/manifest.py (board firmware) and by
# scripts/build-micropython32.sh (a 32-bit unix port with the board code frozen in, to measure it).
# Paths are relative to this file.
metadata(description="qis-edge board runtime: QIS fingerprints over MQTT", version="0.1.0")
package("qis", base_path="../shared")
package("qis_device", base_path="../device")
