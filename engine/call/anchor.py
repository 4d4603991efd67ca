"""Media anchoring: where a call's RTP flows, and the SDP each side gets for it.

Anchored (the default), both phones send RTP to the engine's relay (``engine.media.io``): every SDP a side
gets carries the engine's address and that side's relay port, and every SDP a side sends points the other
relay port at its real address. Released (both ends inside the company's ``media_release_networks``), the
SDP passes through with only our origin line (``SdpRewriter.passthrough``). A call the engine answered
itself is always anchored: its caller talks to us.

SRTP (issue 16): a caller on SIP over TLS whose offer is RTP/SAVP with an ``a=crypto`` we can use (SDES,
``engine.sip.sdes``) has its SRTP ended at the relay: its relay side decrypts what the phone sends and
encrypts what it gets (``RelaySide.secure``), every SDP it gets from us is RTP/SAVP with our own key (the
caller rewriter's media filter), and the callee gets plain RTP/AVP without keys. A later SDP from that
phone with a new key or tag (a re-INVITE) re-keys the side (``follow``). An RTP/SAVP offer over TLS that
has no usable ``a=crypto`` gets 488. Plain offers, and SAVP offers over UDP or TCP (whose keys anyone on
the path read), pass as before.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from engine.call.legs import Call, CallState, Reject, Side, is_sdp, warning_value
from engine.media.io import RelaySession, RtpRelay
from engine.media.relay import RelayExhausted
from engine.model.cdr import Disposition
from engine.sip.message import Response
from engine.sip.sdes import KEY_BYTES, SECURE_PROFILE, Crypto, offered_crypto, plain_media, secure_media
from engine.sip.sdp import DIRECTIONS, SdpError, SdpRewriter, SessionDescription, filter_codecs, parse_sdp


class MediaAnchor:
    """Opens a call's relay session and rewrites the SDP passed between its sides.

    Args:
        relay: the RTP relay (None: no anchoring).
        media_host: the relay's address as phones reach it.
        random_bytes: n -> n random bytes, the source of our SRTP master keys (the OS CSPRNG).
    """

    __slots__ = ("media_host", "random_bytes", "relay")

    def __init__(self, relay: RtpRelay | None, media_host: str,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.relay = relay
        self.media_host = media_host
        self.random_bytes = random_bytes

    def prepare(self, call: Call) -> None:
        """Before the first ring round: open the relay (unless the round's destination releases media) and
        build the SDP the branches get. Deferred to here so that a flow's destination decides release.

        Raises:
            Reject: no free media ports (503).
        """
        call.media_ready = True
        offer = call.offer
        relay = self.open(call)
        if offer is None:
            return
        if relay is None:
            call.callee_sdp = call.callee_rewriter.passthrough(offer)
            return
        addr, port = audio_address(offer)
        if addr is not None:
            relay.a.set_remote(addr, port)
        if call.caller_peer.transport == "TLS" and audio_profile(offer) == SECURE_PROFILE:
            self.end_srtp(call, offer)
        ports = relay_ports(offer, relay.b.port)
        call.callee_sdp = call.callee_rewriter.rewrite(offer, self.media_host, ports)

    def end_srtp(self, call: Call, offer: SessionDescription) -> None:
        """The caller's SRTP ends at the relay: its side gets its key and ours, its SDP our key, the callee's
        plain RTP.

        Raises:
            Reject: no ``a=crypto`` of the offer's audio stream is one we can use (488).
        """
        assert call.relay is not None
        theirs = audio_crypto(offer)
        if theirs is None:
            raise Reject(488, "Not Acceptable Here", Disposition.FAILED,
                         (("Warning", warning_value("no supported SRTP crypto suite")),))
        ours = Crypto(theirs.tag, theirs.suite, self.random_bytes(KEY_BYTES))
        call.relay.a.secure(theirs.key, ours.key)
        set_srtp(call.caller_rewriter, ours)
        call.callee_rewriter.media_filter = plain_media

    def open(self, call: Call) -> RelaySession | None:
        """The call's RTP relay session, unless media is released (or the engine runs without a relay).

        Raises:
            Reject: no free media ports (503).
        """
        if self.relay is None or (call.destination.media_release and call.state is CallState.RINGING):
            return None
        try:
            call.relay = self.relay.open_session()
        except RelayExhausted:
            raise Reject(503, "Service Unavailable", Disposition.FAILED,
                         (("Warning", warning_value("no free media ports")),)) from None
        return call.relay

    def early_media(self, call: Call, resp: Response) -> bytes:
        """The SDP of a callee's provisional response as the caller gets it (b"": nothing to relay)."""
        if not resp.body or call.offer is None or not is_sdp(resp):
            return b""  # with a late offer, SDP in a provisional would be an offer: not relayed
        try:
            answer = filter_codecs(parse_sdp(resp.body))
        except SdpError:
            return b""
        return self.for_caller(call, answer)

    def for_caller(self, call: Call, answer: SessionDescription) -> bytes:
        """The callee's ``answer`` (before the caller side exists) as the caller should see it."""
        relay = call.relay
        if relay is None:
            return call.caller_rewriter.passthrough(answer)
        addr, port = audio_address(answer)
        if addr is not None:
            relay.b.set_remote(addr, port)
        return call.caller_rewriter.rewrite(answer, self.media_host, relay_ports(answer, relay.a.port))

    def towards(self, side: Side, answer: SessionDescription, source: Side) -> bytes:
        """``answer`` from ``source`` (the leg bridged with ``side``), as ``side`` should see it."""
        if side.media is None:
            return side.rewriter.passthrough(answer)
        self.follow(source, answer)
        return side.rewriter.rewrite(answer, self.media_host, relay_ports(answer, side.media.port))

    def offer_to_other(self, side: Side, offer: SessionDescription) -> bytes:
        """A new offer from ``side`` as the leg bridged with it should get it (``side``'s relay port
        follows it)."""
        other = side.other
        assert other is not None
        if other.media is None:
            return other.rewriter.passthrough(offer)
        self.follow(side, offer)
        return other.rewriter.rewrite(offer, self.media_host, relay_ports(offer, other.media.port))

    @staticmethod
    def follow(side: Side, sdp: SessionDescription) -> None:
        """Point ``side``'s relay port at the address ``sdp`` (an SDP that leg sent us) gives."""
        if side.media is None:
            return
        addr, port = audio_address(sdp)
        if addr is not None:
            side.media.set_remote(addr, port)
        srtp = side.media.srtp
        theirs = None if srtp is None else audio_crypto(sdp)
        if srtp is not None and theirs is not None:  # the SRTP phone's new key (or the same one again)
            side.media.secure(theirs.key, srtp.send_key)
            set_srtp(side.rewriter, Crypto(theirs.tag, theirs.suite, srtp.send_key))


def set_srtp(rewriter: SdpRewriter, ours: Crypto) -> None:
    """Every anchored audio stream ``rewriter`` writes is RTP/SAVP with ``ours`` as its only key."""
    rewriter.media_filter = partial(secure_media, crypto=ours)


def audio_profile(sdp: SessionDescription) -> str | None:
    """The transport profile of the first active audio stream (RTP/AVP, RTP/SAVP, ...)."""
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            return m.proto
    return None


def audio_crypto(sdp: SessionDescription) -> Crypto | None:
    """The first usable ``a=crypto`` of the first active audio stream, if it is RTP/SAVP."""
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            return offered_crypto(m)
    return None


def with_direction(sdp: SessionDescription, direction: str) -> SessionDescription:
    """``sdp`` with every active audio stream's direction attribute set to ``direction`` (hold: "sendonly",
    resume: "sendrecv"; RFC 3264 §8.4) and the session-level one dropped (the media level rules)."""
    media = []
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            attributes = [(n, v) for n, v in m.attributes if not (v is None and n in DIRECTIONS)]
            m = replace(m, attributes=[*attributes, (direction, None)])
        media.append(m)
    attributes = [(n, v) for n, v in sdp.attributes if not (v is None and n in DIRECTIONS)]
    return replace(sdp, media=media, attributes=attributes)


def sdp_key(body: bytes) -> bytes:
    """An SDP body without its o= line: what tells a new offer from a refresh of the same session."""
    return b"\n".join(line.strip() for line in body.splitlines() if not line.startswith(b"o="))


def audio_address(sdp: SessionDescription) -> tuple[str | None, int]:
    """The connection address and port of the first active audio stream."""
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            return m.connection_address(sdp), m.port
    return None, 0


def relay_ports(sdp: SessionDescription, relay_port: int) -> list[int]:
    """Relay ports per m= line: the relay carries the first active audio stream; others are rejected."""
    out: list[int] = []
    used = False
    for m in sdp.media:
        if m.media == "audio" and m.port != 0 and not used:
            out.append(relay_port)
            used = True
        else:
            out.append(0)
    return out
