"""The board config (device.json): load, validate, fill defaults. Runs on MicroPython and CPython.

How it works: load_config(path) reads the JSON file and check_config(dict) returns a new dict with every
optional key filled in, or raises ConfigError naming the key, what is wrong and what to put there. The
board prints that message on its console and waits (no crash loop); the host tools (qis-device
provision/deploy) call check_config() before writing a file to a board.

Required: site, device, secret (64 hex characters = 32-byte HMAC key), broker.host, schema.
Optional keys and defaults are in DEFAULTS / BROKER_DEFAULTS below and in docs/device.md.
"""

from qis.topics import TopicError, check_id

DEFAULTS = {
    "wifi": None,  # {"ssid": ..., "password": ...}; ignored on the unix port
    "fixed": {},  # labels merged into every reading, e.g. {"machine_class": "pump"}
    "sensor": {"driver": "sim", "seed": 1},
    "interval_s": 10,
    "summary_timeout_s": 5,
    "busy_backoff_max_s": 300,  # longest extra wait between readings while the gateway answers "busy"
    "queue_max": 200,  # frames kept on flash while the broker is unreachable
    "state_dir": ".",  # seq counter and queue; relative to the config file's directory
    "seq_block": 32,  # seq numbers reserved per flash write (write-ahead)
    "mqtt_timeout_s": 5,  # socket timeout of every read/write/connect
    "reconnect_min_ms": 500,
    "reconnect_max_ms": 30000,
    "wifi_timeout_s": 20,
    "watchdog_ms": 30000,  # 0 = off; clamped to 8388 on rp2
    "led_pin": None,  # a GPIO number (or "LED") to blink by confidence
    "deep_sleep": False,  # machine.deepsleep between readings (real boards only)
    "clean_session": False,
    "client_id": None,  # default "qis-<site>-<device>"
}

BROKER_DEFAULTS = {"port": 1883, "user": None, "password": None, "tls": False, "keepalive_s": 30}


class ConfigError(ValueError):
    pass


def _fail(where, message):
    raise ConfigError("config %s: %s" % (where, message))


def _number(cfg, key, where, minimum, integer=False):
    value = cfg[key]
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or value < minimum:
        _fail(where, "%s must be %s >= %s, got %r" % (key, "an integer" if integer else "a number", minimum, value))


def _string_or_none(cfg, key, where):
    if cfg[key] is not None and not isinstance(cfg[key], str):
        _fail(where, "%s must be a string or null, got %r" % (key, cfg[key]))


def _secret(value, where):
    if not isinstance(value, str) or len(value) != 64:
        _fail(where, "secret must be 64 hex characters (the 32-byte key from `qis-gateway device add`)")
    try:
        return bytes.fromhex(value)
    except ValueError:
        _fail(where, "secret must be 64 hex characters; it has a non-hex character")


def check_config(raw, where="device.json"):
    """Validate a parsed config dict; return a new dict with defaults filled and "key" (bytes) added."""
    if not isinstance(raw, dict):
        _fail(where, "the file must hold a JSON object")
    for key in ("site", "device", "secret", "broker", "schema"):
        if key not in raw:
            _fail(where, "%r is missing (see docs/device.md for the board config)" % key)
    cfg = {}
    for key in DEFAULTS:
        cfg[key] = DEFAULTS[key]
    for key in raw:
        cfg[key] = raw[key]
    try:
        check_id(cfg["site"], "site")
        check_id(cfg["device"], "device")
    except TopicError as exc:
        _fail(where, str(exc))
    cfg["key"] = _secret(cfg["secret"], where)
    broker = cfg["broker"]
    if not isinstance(broker, dict) or not isinstance(broker.get("host"), str) or not broker.get("host"):
        _fail(where, "broker.host must be the broker's host name or IP address")
    full = {}
    for key in BROKER_DEFAULTS:
        full[key] = BROKER_DEFAULTS[key]
    for key in broker:
        full[key] = broker[key]
    cfg["broker"] = full
    port = full["port"]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        _fail(where, "broker.port must be an integer 1-65535, got %r" % (port,))
    _number(full, "keepalive_s", where + " broker", 0, True)
    _string_or_none(full, "user", where + " broker")
    _string_or_none(full, "password", where + " broker")
    if not isinstance(full["tls"], bool):
        _fail(where, "broker.tls must be true or false")
    if not isinstance(cfg["schema"], str) or not cfg["schema"]:
        _fail(where, "schema must be the schema file name next to the config, e.g. \"machine_health.json\"")
    wifi = cfg["wifi"]
    if wifi is not None and (not isinstance(wifi, dict) or not isinstance(wifi.get("ssid"), str)):
        _fail(where, "wifi must be null or {\"ssid\": ..., \"password\": ...}")
    fixed = cfg["fixed"]
    if not isinstance(fixed, dict):
        _fail(where, "fixed must be an object of label name -> value")
    for name in fixed:
        value = fixed[name]
        if not isinstance(value, (str, int)):
            _fail(where, "fixed[%r] must be a string, integer or boolean" % name)
    sensor = cfg["sensor"]
    if not isinstance(sensor, dict) or not isinstance(sensor.get("driver"), str):
        _fail(where, "sensor must be an object with a \"driver\" (\"sim\", \"adc\", \"bme280\" or \"multi\")")
    for key in ("interval_s", "summary_timeout_s", "mqtt_timeout_s", "busy_backoff_max_s"):
        _number(cfg, key, where, 0)
    if cfg["mqtt_timeout_s"] <= 0:
        _fail(where, "mqtt_timeout_s must be > 0")
    for key in ("queue_max", "seq_block", "reconnect_min_ms", "reconnect_max_ms", "wifi_timeout_s"):
        _number(cfg, key, where, 1, True)
    _number(cfg, "watchdog_ms", where, 0, True)
    if cfg["reconnect_max_ms"] < cfg["reconnect_min_ms"]:
        _fail(where, "reconnect_max_ms must be >= reconnect_min_ms")
    for key in ("state_dir", "client_id"):
        _string_or_none(cfg, key, where)
    if not cfg["state_dir"]:
        _fail(where, "state_dir must be a directory name")
    for key in ("deep_sleep", "clean_session"):
        if not isinstance(cfg[key], bool):
            _fail(where, "%s must be true or false" % key)
    if cfg["client_id"] is None:
        cfg["client_id"] = "qis-%s-%s" % (cfg["site"], cfg["device"])
    return cfg


def load_config(path):
    """Read and check a config file; ConfigError (with the path) for anything unreadable or wrong."""
    import json

    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as exc:
        raise ConfigError("config %s: cannot read the file (%s); copy device.json to the board" % (path, exc))
    except ValueError as exc:
        raise ConfigError("config %s: not valid JSON (%s)" % (path, exc))
    return check_config(raw, path)
