"""Media anchoring: where a call's RTP flows, and the SDP each side gets for it.

Anchored (the default), both phones send RTP to the engine's relay (``engine.media.io``): every SDP a side
gets carries the engine's address and that side's relay port, and every SDP a side sends points the other
relay port at its real address. Released (both ends inside the company's ``media_release_networks``), the
SDP passes through with only our origin line (``SdpRewriter.passthrough``). A call the engine answered
itself is always anchored: its caller talks to us.
"""

from __future__ import annotations

from dataclasses import replace

from engine.call.legs import Call, CallState, Reject, Side, is_sdp, warning_value
from engine.media.io import RelaySession, RtpRelay
from engine.media.relay import RelayExhausted
from engine.model.cdr import Disposition
from engine.sip.message import Response
from engine.sip.sdp import DIRECTIONS, SdpError, SessionDescription, filter_codecs, parse_sdp


class MediaAnchor:
    """Opens a call's relay session and rewrites the SDP passed between its sides."""

    __slots__ = ("media_host", "relay")

    def __init__(self, relay: RtpRelay | None, media_host: str) -> None:
        self.relay = relay
        self.media_host = media_host

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
        ports = relay_ports(offer, relay.b.port)
        call.callee_sdp = call.callee_rewriter.rewrite(offer, self.media_host, ports)

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
