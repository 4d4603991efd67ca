"""G.711 tables against the ITU-T G.191 reference algorithm (written out per sample here), for every input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.media import g711


def ref_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high = 0x08 - segno
    low = 0x0F - ((absno >> segno) & 0x0F)
    out = (high << 4) | low
    return out | 0x80 if x >= 0 else out


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL = np.arange(-32768, 32768, dtype=np.int16)


def test_ulaw_encode_every_input_matches_reference() -> None:
    expected = bytes(ref_ulaw_compress(int(x)) for x in ALL)
    assert g711.ulaw_encode(ALL) == expected


def test_alaw_encode_every_input_matches_reference() -> None:
    expected = bytes(ref_alaw_compress(int(x)) for x in ALL)
    assert g711.alaw_encode(ALL) == expected


def test_decode_every_code_matches_reference() -> None:
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes).tolist() == [ref_ulaw_expand(c) for c in range(256)]
    assert g711.alaw_decode(codes).tolist() == [ref_alaw_expand(c) for c in range(256)]


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [(0, 0xFF, 0xD5), (-1, 0x7F, 0x55), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A), (1000, 0xCE, 0xFA)],
)
def test_known_vectors(sample: int, ulaw: int, alaw: int) -> None:
    x = np.array([sample], dtype=np.int16)
    assert g711.ulaw_encode(x) == bytes([ulaw])
    assert g711.alaw_encode(x) == bytes([alaw])


@given(st.binary(min_size=1, max_size=400))
def test_decode_then_encode_is_identity_on_codes(payload: bytes) -> None:
    # Every code decodes to the centre of its interval, which encodes back to the same code, except µ-law's
    # "negative zero" 0x7F, which decodes to 0 and so re-encodes as 0xFF (positive zero).
    ulaw = payload.replace(b"\x7f", b"\xff")
    assert g711.ulaw_encode(g711.ulaw_decode(ulaw)) == ulaw
    assert g711.alaw_encode(g711.alaw_decode(payload)) == payload


@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=200))
def test_round_trip_error_within_half_a_step(samples: list[int]) -> None:
    x = np.array(samples, dtype=np.int16)
    for encode, decode in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        y = decode(encode(x)).astype(np.int32)
        error = np.abs(y - x.astype(np.int32))
        # The quantisation step grows with the magnitude: at most 1/16 of it (the segment's step / 2),
        # plus the clipping at the top of the range.
        assert np.all(
            error <= np.maximum(np.abs(x.astype(np.int32)) // 16 + 16, 0) + 1024 * (np.abs(x) > 32000)
        )


def test_codec_by_payload_type() -> None:
    assert g711.G711Codec(0).silence == 0xFF
    assert g711.G711Codec(8).silence == 0xD5
    frame = np.full(160, 1000, dtype=np.int16)
    assert g711.G711Codec(8).encode(frame) == g711.alaw_encode(frame)
    with pytest.raises(g711.G711Error, match="payload_type 9"):
        g711.G711Codec(9)
