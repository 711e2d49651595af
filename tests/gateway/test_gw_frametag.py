"""The gateway's C HMAC (frametag.py) gives the bytes of the board's portable one (qis.hmac256), so the
summary and error frames it makes are the ones the portable code makes, and boards accept them; and
the frames it receives are checked exactly as qis.messages.decode checks them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from qis import messages
from qis.errors import FrameError
from qis.hmac256 import hmac_sha256
from qis_gateway import frametag
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



def _outcome(seq: int = 7, secret: bytes = SECRET) -> bytes:
    return messages.encode_outcome("pump-01", seq, 3, "ok", secret, value=1.5)


def _fp() -> bytes:
    body = {"v": 1, "kind": "fp", "dev": "pump-01", "seq": 9, "schema": "s/1", "fields": {"schema": "s/1"},
            "vec": [1, -2, 3]}
    return messages.encode_frame(body, SECRET)


def _reason(decode: object, *args: object) -> object:
    try:
        return decode(*args)  # type: ignore[operator]
    except FrameError as exc:
        return ("refused", exc.reason)


def test_the_gateway_decoder_gives_what_the_board_decoder_gives() -> None:
    """frametag.decode runs qis.messages.decode's code: same bodies, same refusals, same reasons."""
    good = _outcome()
    wrong_tag = good[:-1] + bytes([good[-1] ^ 1])
    other_secret = _outcome(secret=bytes(32))
    flipped_body = b"{" + good[1:]  # body changed, tag kept
    not_json = messages.encode_frame.__globals__["hmac_sha256"]  # the portable HMAC, to tag odd bodies
    cases: list[tuple[object, ...]] = [
        (good, SECRET), (good, SECRET, "outcome", "pump-01"), (good, SECRET, "fp"), (good, SECRET, None, "pump-02"),
        (_fp(), SECRET, "fp"), (wrong_tag, SECRET), (other_secret, SECRET), (flipped_body, SECRET),
        (b"[1]" + not_json(SECRET, b"[1]"), SECRET), (b"{}x" + not_json(SECRET, b"{}x"), SECRET),
        (b"x" * 20, SECRET), (b"x" * 2000, SECRET), ("text", SECRET),
        (memoryview(good), SECRET), (bytearray(good), SECRET),
    ]
    for case in cases:
        assert _reason(frametag.decode, *case) == _reason(messages.decode, *case), case
    assert _reason(frametag.decode, wrong_tag, SECRET) == ("refused", "tag")


def test_the_gateway_decoder_checks_the_tag_in_c(monkeypatch: pytest.MonkeyPatch) -> None:
    def portable(*args: object) -> bytes:
        raise AssertionError("the portable HMAC was used")

    frame = _outcome()
    monkeypatch.setattr(messages, "hmac_sha256", portable)
    monkeypatch.setattr(messages, "digest_equal", portable)
    assert frametag.decode(frame, SECRET, "outcome", "pump-01")["seq"] == 7
    with pytest.raises(FrameError) as refused:
        frametag.decode(frame, bytes(32))
    assert refused.value.reason == "tag"
