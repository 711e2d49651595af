"""Emulation and demo aid: a board that reports a simulated outcome after every reading.

With "sim_outcome": {"field": "vibration_band", "labels": {"C": "bearing_wear", "D": "bearing_failure"}}
in device.json, qis_device.main runs SimOutcomeDevice instead of app.Device: after each reading it
sends an outcome frame whose label is labels[<that field's category in the reading>] ("observed" for
a category not listed), so emulated boards (the demo, hil/) teach the swarm a known ground truth.
A real board never has the key, so this module is never loaded there and the production loop
(app.Device) carries none of it.
"""

from qis.errors import QisError

from qis_device import board
from qis_device.app import Device


class SimOutcomeDevice(Device):
    def __init__(self, cfg, schema, sensor, on_summary=None, state_dir=".", client=None):
        self.auto = cfg["sim_outcome"]
        self.reading = None

        def capture():  # keeps the reading (fixed labels are merged into this dict by step())
            self.reading = sensor()
            return self.reading

        Device.__init__(self, cfg, schema, capture, on_summary, state_dir, client)

    def step(self):
        seq = Device.step(self)
        reading = self.reading
        self.reading = None
        if seq >= 0:
            auto = self.auto
            try:
                category = self.schema.categorise(reading).get(auto["field"])
                self.report_outcome(auto["labels"].get(category, "observed"))
            except (QisError, ValueError, KeyError, AttributeError, TypeError) as exc:
                board.log("sim_outcome: %r" % (exc,))
        return seq
