"""broker-config as the Raspberry Pi guide uses it (issue 14, points 2, 3 and 9): the generated drop-in loads
beside Debian's own mosquitto.conf unchanged; re-running it keeps every login (the gateway's, Home
Assistant's, users added by hand), so a connected gateway is not locked out by the documented reload;
`--rotate` moves the broker's password file and the gateway's env file together."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from qis_gateway.broker_config import ACL_MARKER, read_env
from qis_gateway.cli import main
from qis_gateway.registry import Registry, board_password
from support.broker import free_port
from support.stock_mosquitto import StockMosquitto, stock_available

from tests.gateway.test_gw_broker_config import close, connect

pytestmark = pytest.mark.skipif(stock_available() is not None, reason=str(stock_available()))


@pytest.fixture
def site() -> Iterator[tuple[StockMosquitto, Path, int]]:
    # The broker drops to the mosquitto account: its files must be reachable, so not under pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="qis-stock-"))
    os.chmod(root, 0o755)
    broker = StockMosquitto(root)
    try:
        yield broker, root, free_port()
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


def _broker_config(broker: StockMosquitto, root: Path, port: int, *extra: str) -> None:
    argv = ["broker-config", "--db", str(root / "registry.sqlite"), "--out", str(broker.etc / "qis"),
            "--drop-in", str(broker.confd / "qis.conf"), "--gateway-env", str(root / "gateway.env"),
            "--listen", "127.0.0.1:%d" % port, "--ha-user", "homeassistant", *extra]
    assert main(argv) == 0


def test_drop_in_beside_debians_stock_config(site: tuple[StockMosquitto, Path, int]) -> None:
    broker, root, port = site
    with Registry(root / "registry.sqlite") as reg:
        board = reg.add("pump-01", "plant-a")
    _broker_config(broker, root, port)
    text = (broker.confd / "qis.conf").read_text()
    # Debian's main config sets it; a repeated one stops Mosquitto 2.0.11 from starting
    assert not [line for line in text.splitlines() if line.startswith("persistence_location")]
    broker.start(port)
    env = read_env(root / "gateway.env")
    c, rc = connect(port, env["QIS_MQTT_USERNAME"], env["QIS_MQTT_PASSWORD"])
    assert rc == 0, broker.diagnostics()
    close(c)
    c, rc = connect(port, "pump-01", board_password(board.secret))
    assert rc == 0
    close(c)
    if os.geteuid() == 0:  # Debian: the broker reads its files as mosquitto after dropping root
        passwd = broker.etc / "qis" / "passwd"
        assert passwd.stat().st_mode & 0o777 == 0o640 and passwd.stat().st_gid != 0
        assert (root / "gateway.env").stat().st_mode & 0o777 == 0o600


def test_rerun_keeps_logins_and_rotate_moves_both_sides(site: tuple[StockMosquitto, Path, int]) -> None:
    broker, root, port = site
    with Registry(root / "registry.sqlite") as reg:
        reg.add("pump-01", "plant-a")
    _broker_config(broker, root, port)
    broker.start(port)
    env = read_env(root / "gateway.env")
    ha = read_env(broker.etc / "qis" / "homeassistant.env")
    gw, rc = connect(port, env["QIS_MQTT_USERNAME"], env["QIS_MQTT_PASSWORD"], client_id="qis-gateway")
    assert rc == 0
    # Someone adds a login of their own (password file and ACL): broker-config must keep it.
    passwd = broker.etc / "qis" / "passwd"
    tool = shutil.which("mosquitto_passwd")
    if tool:
        subprocess.run([tool, "-b", str(passwd), "nodered", "nr-pass"], check=True, capture_output=True)
    else:
        from qis_gateway.broker_config import hash_password

        with open(passwd, "a") as f:
            f.write("nodered:%s\n" % hash_password("nr-pass"))
    acl = broker.etc / "qis" / "acl"
    with open(acl, "a") as f:
        f.write("user nodered\ntopic read qis-ha/#\n")
    # A board is added and one revoked, then broker-config is re-run and the broker reloaded (the guide).
    with Registry(root / "registry.sqlite") as reg:
        b2 = reg.add("pump-02", "plant-a")
        reg.revoke("pump-01")
    _broker_config(broker, root, port)
    broker.reload()
    assert read_env(root / "gateway.env") == env
    assert read_env(broker.etc / "qis" / "homeassistant.env") == ha
    assert ACL_MARKER in acl.read_text() and acl.read_text().endswith("user nodered\ntopic read qis-ha/#\n")
    assert "pump-01" not in passwd.read_text().split("nodered")[0]
    close(gw)  # the gateway reconnects with the credentials it has
    for user, password in ((env["QIS_MQTT_USERNAME"], env["QIS_MQTT_PASSWORD"]),
                           (ha["MQTT_USERNAME"], ha["MQTT_PASSWORD"]), ("nodered", "nr-pass"),
                           ("pump-02", board_password(b2.secret))):
        c, rc = connect(port, user, password)
        assert rc == 0, (user, broker.diagnostics())
        close(c)
    # --rotate: a new gateway password in the password file and the env file at once.
    _broker_config(broker, root, port, "--rotate")
    broker.reload()
    new = read_env(root / "gateway.env")
    assert new["QIS_MQTT_PASSWORD"] != env["QIS_MQTT_PASSWORD"]
    _, rc = connect(port, env["QIS_MQTT_USERNAME"], env["QIS_MQTT_PASSWORD"])
    assert rc != 0
    c, rc = connect(port, new["QIS_MQTT_USERNAME"], new["QIS_MQTT_PASSWORD"])
    assert rc == 0
    close(c)
    c, rc = connect(port, "nodered", "nr-pass")
    assert rc == 0
    close(c)
