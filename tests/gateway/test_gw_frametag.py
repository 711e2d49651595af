"""The gateway's C HMAC (frametag.py) gives the bytes of the board's portable one (qis.hmac256), so the
summary and error frames it makes are the ones the portable code makes, and boards accept them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from qis import messages
from qis.hmac256 import hmac_sha256
from qis_gateway.evidence import BoardSummary
from qis_gateway.frametag import tag

SECRET = bytes(range(32))
SUMMARY = BoardSummary(True, 12, (("ok", 700), ("bearing_wear", 300)), 412, 3.5, 1, 2, 3)


@given(key=st.binary(max_size=300), msg=st.binary(max_size=300))
def test_tag_equals_the_portable_hmac_for_all_key_lengths(key: bytes, msg: bytes) -> None:
    assert tag(key, msg) == hmac_sha256(key, msg)
    assert tag(key, memoryview(msg)) == hmac_sha256(key, msg)


def test_frames_made_with_either_hmac_are_the_same() -> None:
    fast = messages.encode_summary("pump-01", 41, SECRET, SUMMARY, mac=tag)
    assert fast == messages.encode_summary("pump-01", 41, SECRET, SUMMARY)
    assert messages.decode(fast, SECRET, "summary", "pump-01")["top"] == [["ok", 700], ["bearing_wear", 300]]
    assert messages.encode_error("pump-01", 41, "busy", "later", SECRET, mac=tag) == \
        messages.encode_error("pump-01", 41, "busy", "later", SECRET)

