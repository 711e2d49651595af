"""busy_frame: the cheap build of a shed fp's `busy` answer is byte for byte encode_error's."""

from __future__ import annotations

from qis import messages
from qis_gateway.busy import busy_frame


def test_busy_frame_equals_encode_error_and_decodes() -> None:
    for device, seq, why, secret in (("pump-01", 7, "waited 1.2 s for an answer; try later", b"k" * 32),
                                     ("a", 0, "", b"s"), ("x-" * 20, messages.MAX_SEQ, "é \"q\" " * 60, b"z" * 80)):
        frame = busy_frame(device, seq, why, secret)
        assert frame == messages.encode_error(device, seq, "busy", why, secret)
        body = messages.decode(frame, secret, kind="error", device=device)
        assert body["code"] == "busy" and body["seq"] == seq
