"""SDES: SRTP keys in SDP (RFC 4568), for phones that send RTP/SAVP over SIP over TLS.

An offer's ``a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|MKI:length] [session params]`` lines
(§9.1) each propose one way to protect the stream; the answer picks one, echoes its tag and suite, and
carries the answerer's own key (§5.1.1: each direction has its own key). Only AES_CM_128_HMAC_SHA1_80
(§6.2.1: a 30-byte master key and salt) is accepted, one key per line, without MKI and without session
parameters (UNENCRYPTED_SRTP and the like weaken what the phone was promised, FEC_ORDER and the rest are
not implemented by the relay): lines asking for them are skipped as §5.1.2 allows ("the answerer ... MUST
reject" a line it does not understand, and picks another). Pure: no keys are made here.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace
from typing import Final

from engine.sip.sdp import MediaDescription, SdpError

SUITE: Final = "AES_CM_128_HMAC_SHA1_80"
KEY_BYTES: Final = 30  # 128-bit master key + 112-bit master salt (§6.2.1)
SECURE_PROFILE: Final = "RTP/SAVP"
PLAIN_PROFILE: Final = "RTP/AVP"


@dataclass(frozen=True, slots=True)
class Crypto:
    """One ``a=crypto`` line: its tag, suite and master key||salt (lifetime, if any, is not kept: a key
    lasts the call, far below 2^31 packets)."""

    tag: int
    suite: str
    key: bytes

    def serialize(self) -> str:
        """The attribute value, e.g. ``1 AES_CM_128_HMAC_SHA1_80 inline:...``."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


def parse_crypto(value: str) -> Crypto:
    """One ``a=crypto`` value that we can use.

    Raises:
        SdpError: a malformed line, another suite, several keys, an MKI, or session parameters.
    """
    parts = value.split()
    if len(parts) < 3 or not parts[0].isdigit() or len(parts[0]) > 9:
        raise SdpError("a=crypto needs a tag, a suite and key parameters")
    if len(parts) > 3:
        raise SdpError("a=crypto session parameters are not supported")
    tag, suite, params = int(parts[0]), parts[1], parts[2]
    if suite != SUITE:
        raise SdpError(f"crypto suite {suite} is not supported")
    if ";" in params:
        raise SdpError("a=crypto with several keys is not supported")
    if not params.startswith("inline:"):
        raise SdpError("a=crypto key method must be inline")
    key_text, *rest = params[len("inline:"):].split("|")
    if any(":" in part for part in rest):
        raise SdpError("a=crypto with an MKI is not supported")
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise SdpError("a=crypto key is not base64") from None
    if len(key) != KEY_BYTES:
        raise SdpError(f"a=crypto key is {len(key)} bytes, not {KEY_BYTES}")
    return Crypto(tag, suite, key)


def offered_crypto(media: MediaDescription) -> Crypto | None:
    """The first ``a=crypto`` of an RTP/SAVP stream that we can use (None: not SRTP, or nothing usable)."""
    if media.proto != SECURE_PROFILE:
        return None
    for name, value in media.attributes:
        if name == "crypto" and value is not None:
            try:
                return parse_crypto(value)
            except SdpError:
                continue
    return None


def secure_media(media: MediaDescription, crypto: Crypto) -> MediaDescription:
    """``media`` as RTP/SAVP with ``crypto`` as its only ``a=crypto`` line."""
    attributes = [(n, v) for n, v in media.attributes if n != "crypto"]
    return replace(media, proto=SECURE_PROFILE, attributes=[*attributes, ("crypto", crypto.serialize())])


def plain_media(media: MediaDescription) -> MediaDescription:
    """``media`` as plain RTP/AVP without ``a=crypto`` (the engine terminates the SRTP of the other leg)."""
    if media.proto != SECURE_PROFILE:
        return media
    return replace(media, proto=PLAIN_PROFILE,
                   attributes=[(n, v) for n, v in media.attributes if n != "crypto"])
