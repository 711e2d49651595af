"""The gateway's C HMAC (frametag.py) gives the bytes and answers of the board's portable one (qis.hmac256),
and frames made or checked with either are the same."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis import messages
from qis.errors import FrameError
from qis.hmac256 import digest_equal, hmac_sha256
from qis_gateway.evidence import BoardSummary
from qis_gateway.frametag import equal, tag

SECRET = bytes(range(32))
SUMMARY = BoardSummary(True, 12, (("ok", 700), ("bearing_wear", 300)), 412, 3.5, 1, 2, 3)


@given(key=st.binary(max_size=300), msg=st.binary(max_size=300))
def test_tag_equals_the_portable_hmac_for_all_key_lengths(key: bytes, msg: bytes) -> None:
    assert tag(key, msg) == hmac_sha256(key, msg)
    assert tag(key, memoryview(msg)) == hmac_sha256(key, msg)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_equal_answers_like_digest_equal(a: bytes, b: bytes) -> None:
    assert equal(a, b) is digest_equal(a, b)
    assert equal(memoryview(a), b) is digest_equal(memoryview(a), b)


def test_frames_made_and_checked_with_either_hmac_agree() -> None:
    fast = messages.encode_summary("pump-01", 41, SECRET, SUMMARY, mac=tag)
    assert fast == messages.encode_summary("pump-01", 41, SECRET, SUMMARY)
    assert messages.encode_error("pump-01", 41, "busy", "later", SECRET, mac=tag) == \
        messages.encode_error("pump-01", 41, "busy", "later", SECRET)
    body = messages.decode(fast, SECRET, "summary", "pump-01", mac=tag, equal=equal)
    assert body == messages.decode(fast, SECRET, "summary", "pump-01")
    forged = fast[:-1] + bytes([fast[-1] ^ 1])
    for kwargs in ({}, {"mac": tag, "equal": equal}):
        with pytest.raises(FrameError) as refused:
            messages.decode(forged, SECRET, "summary", "pump-01", **kwargs)
        assert refused.value.reason == "tag"
