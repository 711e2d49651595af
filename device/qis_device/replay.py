"""The replay sensor: recorded readings, one JSON object per line, each read in turn (file order = time).

How it works: each call reads the next line of the file and returns its object as the reading. When the
object carries the configured outcome key (default "outcome"), that value is taken out of the reading
(the fingerprint never sees it) and kept as `outcome`: what really happened after this reading. The
board's loop (app.Device.run) reports it as the reading's outcome once the reading's summary is in, so
every recorded reading is first predicted, then learnt from. Past the last line it raises OSError (the
loop counts a bad reading). Config: {"driver": "replay", "file": "rows.jsonl", "outcome": "outcome"};
a relative file is taken from the working directory.
"""

import json


class ReplaySensor:
    def __init__(self, path, outcome_key="outcome"):
        self.f = open(path)
        self.key = outcome_key
        self.outcome = None
        self.count = 0

    def __call__(self):
        line = self.f.readline()
        if not line:
            raise OSError("replay: no more recorded readings after %d" % self.count)
        reading = json.loads(line)
        self.outcome = reading.pop(self.key, None)
        self.count += 1
        return reading
