"""SDES a=crypto lines (RFC 4568): what we accept, what we skip, and the SDP each leg gets."""

from __future__ import annotations

import base64
from functools import partial

import pytest

from engine.sip.sdes import Crypto, offered_crypto, parse_crypto, plain_media, secure_media
from engine.sip.sdp import SdpError, SdpRewriter, parse_sdp

KEY = bytes(range(30))
INLINE = base64.b64encode(KEY).decode()
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode() + "\r\n"
    "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" + INLINE + "|2^20|1:4\r\n"
    "a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:" + INLINE + "|2^20\r\n"
    "a=sendrecv\r\n"
).encode()


def test_a_usable_line_is_parsed_with_or_without_a_lifetime() -> None:
    line = f"7 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}"
    assert parse_crypto(line) == Crypto(7, "AES_CM_128_HMAC_SHA1_80", KEY)
    assert parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{INLINE}|2^31").key == KEY
    assert Crypto(7, "AES_CM_128_HMAC_SHA1_80", KEY).serialize() == line


@pytest.mark.parametrize(("value", "reason"), [
    ("1 AES_CM_128_HMAC_SHA1_32 inline:" + INLINE, "suite"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + INLINE + "|2^20|1:4", "MKI"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + INLINE + " UNENCRYPTED_SRTP", "session parameters"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + INLINE + ";inline:" + INLINE, "several keys"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(29)).decode(), "29 bytes"),
    ("1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", "base64"),
    ("1 AES_CM_128_HMAC_SHA1_80 uri:http://keys.example", "inline"),
    ("x AES_CM_128_HMAC_SHA1_80 inline:" + INLINE, "tag"),
    ("1 AES_CM_128_HMAC_SHA1_80", "tag"),
])
def test_lines_we_cannot_use_are_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_crypto(value)


def test_the_first_usable_line_of_an_savp_stream_is_chosen() -> None:
    (audio,) = parse_sdp(OFFER).media
    assert offered_crypto(audio) == Crypto(3, "AES_CM_128_HMAC_SHA1_80", KEY)
    plain = parse_sdp(OFFER.replace(b"RTP/SAVP", b"RTP/AVP")).media[0]
    assert offered_crypto(plain) is None  # keys on a plain RTP stream are not SRTP


def test_the_srtp_leg_gets_our_key_and_the_plain_leg_none() -> None:
    offer = parse_sdp(OFFER)
    ours = Crypto(3, "AES_CM_128_HMAC_SHA1_80", bytes(30))
    secure, plain = SdpRewriter(1), SdpRewriter(2)
    secure.media_filter = partial(secure_media, crypto=ours)
    plain.media_filter = plain_media
    to_phone = parse_sdp(secure.rewrite(offer, "203.0.113.1", [30000]))
    (audio,) = to_phone.media
    assert audio.proto == "RTP/SAVP" and audio.port == 30000
    assert [v for n, v in audio.attributes if n == "crypto"] == [ours.serialize()]
    to_other = parse_sdp(plain.rewrite(offer, "203.0.113.1", [30002]))
    (audio,) = to_other.media
    assert audio.proto == "RTP/AVP" and not [n for n, _ in audio.attributes if n == "crypto"]
    assert ("sendrecv", None) in audio.attributes and audio.formats == ["0", "101"]
    assert plain_media(audio) is audio  # already plain: unchanged
