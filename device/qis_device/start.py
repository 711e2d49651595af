"""Start-up: config, schema and sensor, in a module unloaded once the board runs (qis_device.main).

prepare() runs BEFORE the MQTT client and the loop are imported, so the start-up peak (config checks,
schema parsing) and the running set never share the heap. It returns what app.Device needs, or None
on the unix port when the config is bad (the caller exits with 2).
On a board a bad config or schema is printed every 30 s until it is fixed (and the file re-read), so
the console shows the reason instead of a reset loop. The config checks (qis_device.config) and the
schema parser (qis.schemaparse) are unloaded after use: their messages are needed once.
"""

import gc

from qis.errors import QisError

from qis_device import board


def join(base_dir, name):
    """Path of `name` relative to `base_dir` (absolute names pass through); no os.path on MicroPython."""
    if not base_dir or name.startswith("/"):
        return name
    return base_dir.rstrip("/") + "/" + name


def dirname(path):
    i = path.rfind("/")
    return "" if i < 0 else (path[:i] or "/")


def makedirs(path):
    """mkdir -p (MicroPython's os has no makedirs)."""
    import os

    try:
        os.stat(path)
        return
    except OSError:
        pass
    parent = path.rstrip("/").rpartition("/")[0]
    if parent:
        makedirs(parent)
    try:
        os.mkdir(path)
    except OSError:
        os.stat(path)  # raced or exists: fine; anything else raises here


def prepare(config_path, schema_path=None):
    """(cfg, schema, sensor, state_dir) ready for app.Device, or None on the unix port for a bad config."""
    while True:
        try:
            from qis_device.config import load_config

            cfg = load_config(config_path)
            load_config = None
            board.unload("qis_device.config")
            gc.collect()
            from qis.schema import load_schema

            schema = load_schema(schema_path or join(dirname(config_path), cfg["schema"]))
            board.unload("qis.schemaparse")
            spec = cfg["sensor"]
            if spec["driver"] == "sim":  # the default: say so at every start (docs/flashing.md)
                board.log('sensor sim: SIMULATED readings (set "sensor" in device.json for a real sensor)')
            else:
                board.log("sensor " + spec["driver"])
            if spec["driver"] == "sim":  # the common case skips the driver table (start-up heap peak)
                from qis_device.sim import SimSensor

                sensor = SimSensor(schema, spec.get("seed", 1), spec.get("mode", "cycle"), cfg["fixed"],
                                   spec.get("float32", False))
            else:
                from qis_device.sensors import make_sensor

                sensor = make_sensor(spec, schema, cfg["fixed"])
                board.unload("qis_device.sensors")
            state_dir = join(dirname(config_path), cfg["state_dir"])
            makedirs(state_dir + "/q")
            for key in ("secret", "sensor", "schema", "state_dir"):
                cfg.pop(key, None)  # not needed once running: less heap
            cfg["heap_log_every"] = cfg.get("heap_log_every", 0)
            if cfg["deep_sleep"]:
                cfg["seq_block"] = 1  # every wake-up is a reset: reserve exactly, skip no numbers
            gc.collect()
            return cfg, schema, sensor, state_dir
        except (QisError, ValueError, OSError, ImportError, AttributeError) as exc:
            # ConfigError is a ValueError; ImportError/AttributeError: a driver this port cannot run
            board.unload("qis_device.config")
            board.unload("qis.errtext")
            print("qis: CONFIG ERROR:", exc)
            if board.UNIX:
                return None
            import time

            time.sleep(30)
