"""Test brokers: see qis_gateway.harness.broker (shared with the HIL suite and the demo).

`start_broker` here turns "Mosquitto needed but absent" into a pytest skip that says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from qis_gateway.harness import broker as _impl
from qis_gateway.harness.broker import Broker, BrokerUnavailable, free_port, mosquitto_path, wait_listening

__all__ = ["Broker", "BrokerUnavailable", "free_port", "mosquitto_path", "start_broker", "wait_listening"]


def start_broker(workdir: Path, *, require_mosquitto: bool = False, persistence: bool = True,
                 password_file: Path | None = None, acl_file: Path | None = None) -> Broker:
    """Start Mosquitto (or amqtt when Mosquitto is absent and not required) on a free port."""
    try:
        return _impl.start_broker(workdir, require_mosquitto=require_mosquitto, persistence=persistence,
                                  password_file=password_file, acl_file=acl_file)
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))
