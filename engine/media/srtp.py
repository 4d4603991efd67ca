"""SRTP (RFC 3711) on one relay side, through libsrtp (``pylibsrtp``): no crypto of our own.

A relay side whose phone speaks SRTP (SDES keys, ``engine.sip.sdes``) gets an ``SrtpContext``: what arrives
from the phone is authenticated and decrypted with the phone's key before it is relayed, and what leaves
towards the phone is encrypted with our key. Only a side whose peer is plain RTP gets one: two SRTP phones
whose keys pass through the engine would be relayed as they are (the relay never decrypts what it does not
need to). RTP and RTCP of a side share the two libsrtp sessions (SRTCP has its own index and keys derived
from the same master key, §4.3). A packet that fails authentication or replay checks is dropped.
"""

from __future__ import annotations

from typing import Final

import pylibsrtp

PROFILE: Final = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80  # AES_CM_128_HMAC_SHA1_80 (RFC 4568 §6.2.1)


class SrtpContext:
    """The two libsrtp sessions of one relay side: ``receive_key`` (the phone's) and ``send_key`` (ours),
    each 30 bytes of master key and salt."""

    __slots__ = ("_inbound", "_outbound", "failed", "receive_key", "send_key")

    def __init__(self, receive_key: bytes, send_key: bytes) -> None:
        """Raises:
            ValueError: a key is not 30 bytes.
        """
        for key in (receive_key, send_key):
            if len(key) != 30:
                raise ValueError("an AES_CM_128_HMAC_SHA1_80 master key and salt is 30 bytes")
        self.receive_key = receive_key
        self.send_key = send_key
        self._inbound = pylibsrtp.Session(pylibsrtp.Policy(
            key=receive_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=PROFILE))
        self._outbound = pylibsrtp.Session(pylibsrtp.Policy(
            key=send_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=PROFILE))
        self.failed = 0  # packets from the phone that failed authentication, replay or parsing

    def decrypt(self, packet: bytes, rtcp: bool) -> bytes | None:
        """The plain RTP (or RTCP) of an SRTP packet from the phone; None when it does not authenticate."""
        try:
            return self._inbound.unprotect_rtcp(packet) if rtcp else self._inbound.unprotect(packet)
        except pylibsrtp.Error:
            self.failed += 1
            return None

    def encrypt(self, packet: bytes, rtcp: bool) -> bytes | None:
        """The SRTP (or SRTCP) of a plain packet for the phone; None when libsrtp refuses it (malformed)."""
        try:
            return self._outbound.protect_rtcp(packet) if rtcp else self._outbound.protect(packet)
        except pylibsrtp.Error:
            return None
