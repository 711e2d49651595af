"""The replay sensor: recorded readings, one JSON object per line, each read in turn (file order = time).

How it works: each call reads the next line of the file and returns its object as the reading. When the
object carries the configured outcome key (default "outcome"), that value is taken out of the reading
(the fingerprint never sees it) and kept until the next call. The next call first reports it through
qis_device.report_outcome for the previous reading (the board's loop only takes a new reading after the
previous one's summary came in or timed out), then reads on: every recorded reading is predicted first,
then learnt from. Past the last line the kept outcome is reported and the call raises OSError (the loop
counts a bad reading), so run the board for one reading more than the file has lines. Nothing of this
is in the resident loop (app.py): a board without the replay driver pays no heap for it.
Config: {"driver": "replay", "file": "rows.jsonl", "outcome": "outcome"}; a relative file is taken from
the working directory.
"""

import json


class ReplaySensor:
    def __init__(self, path, outcome_key="outcome"):
        self.f = open(path)
        self.key = outcome_key
        self.outcome = None  # what followed the last reading handed out, not yet reported
        self.count = 0

    def __call__(self):
        if self.outcome is not None:
            from qis_device import report_outcome

            label = self.outcome
            self.outcome = None
            report_outcome(label)
        line = self.f.readline()
        if not line:
            raise OSError("replay: no more recorded readings after %d" % self.count)
        reading = json.loads(line)
        self.outcome = reading.pop(self.key, None)
        self.count += 1
        return reading
