"""Bridges and the operations on legs that every later feature uses: bridge two legs (of one call or of two:
a transfer joins the transferee and the target), unbridge, hold and resume.

A leg (``Side``) is one SIP dialog with its media endpoint, its relay port. A ``Bridge`` connects two legs:
RTP relays between their ports and their in-dialog offers go to each other (``engine.call.indialog``).
Moving a leg between bridges re-points the relay (``RelaySide.connect``): the phone keeps sending to the
port it was given and is not re-INVITEd for it. Holding a leg is a re-INVITE of ours with our last SDP made
"sendonly" (RFC 3264 §8.4) and its relay port disconnected; resuming is the same SDP made "sendrecv" and
the port connected again. Ending legs and calls is the manager's
(``CallManager.hang_up_leg``, ``CallManager.replace``), since a call ends with its last leg.

What a bridge does not do (yet): transcode. All legs carry G.711 (``filter_codecs``), but a phone that
negotiated PCMU bridged with one that negotiated PCMA hears noise; the conference mixer and music on hold,
which decode, will be bridge kinds of their own.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.call.anchor import with_direction
from engine.call.indialog import InDialog
from engine.call.legs import Bridge, Side
from engine.sip.sdp import SdpError, parse_sdp

#: Told the final status of a hold or resume re-INVITE (2xx: done; otherwise the leg is as it was).
Done = Callable[[int], None]


class BridgeError(Exception):
    """An operation the legs' state does not allow (ended leg, media released, a leg bridged to itself)."""


class Bridging:
    """Bridges legs and holds them (see the module docstring)."""

    __slots__ = ("sides",)

    def __init__(self, sides: InDialog) -> None:
        self.sides = sides

    def bridge(self, x: Side, y: Side) -> Bridge:
        """Connect legs ``x`` and ``y`` (their previous bridges are dissolved; their old peers wait,
        unbridged, for whatever the caller of this does with them).

        Raises:
            BridgeError: the same leg twice, an ended leg, or only one of them anchored (a leg whose media
                flows past the engine cannot be re-pointed without a re-INVITE).
        """
        if x is y:
            raise BridgeError("a leg cannot be bridged with itself")
        if x.ended or y.ended:
            raise BridgeError("an ended leg cannot be bridged")
        if (x.media is None) != (y.media is None) or (x.media is None and x.call is not y.call):
            raise BridgeError("only legs whose media the engine anchors can be bridged across calls")
        if x.bridge is not None and x.bridge is y.bridge:
            return x.bridge
        self.unbridge(x)
        self.unbridge(y)
        bridge = Bridge([x, y])
        x.bridge = y.bridge = bridge
        self._connect(x)
        return bridge

    def unbridge(self, side: Side) -> None:
        """Take ``side`` out of its bridge; the bridge's other leg stays up, unbridged (no media relayed
        either way). Idempotent."""
        bridge = side.bridge
        if bridge is None:
            return
        for member in bridge.sides:
            member.bridge = None
            self.sides.stop_music(member)
            if member.media is not None:
                member.media.disconnect()
        bridge.sides.clear()

    def hold(self, side: Side, now: float, done: Done | None = None) -> bool:
        """Put ``side`` on hold: a re-INVITE with our SDP made sendonly, its media disconnected. False when
        it cannot be done now (an INVITE or offer already open on the dialog: try again after it, §14.1; the
        leg ended; already held; no SDP sent to it yet)."""
        if side.held:
            return False
        if not self._reoffer(side, "sendonly", now, done, held=True):
            return False
        if side.media is not None:
            side.media.disconnect()
        return True

    def resume(self, side: Side, now: float, done: Done | None = None) -> bool:
        """Take ``side`` off our hold: a re-INVITE with our SDP made sendrecv, its media connected again to
        its bridge's other leg. False when it cannot be done now (as ``hold``) or it is not held."""
        if not side.held:
            return False
        if not self._reoffer(side, "sendrecv", now, done, held=False):
            return False
        self._connect(side)
        return True

    # -- helpers -----------------------------------------------------------------------------------

    def _connect(self, side: Side) -> None:
        """Relay between ``side`` and its bridge peer, unless either is held."""
        other = side.other
        if other is None or side.held or other.held:
            return
        if side.media is not None and other.media is not None:
            side.media.connect(other.media)

    def _reoffer(self, side: Side, direction: str, now: float, done: Done | None, *, held: bool) -> bool:
        if side.ended or not side.last_sdp or not side.session.can_send_invite():
            return False
        try:
            current = parse_sdp(side.last_sdp)
        except SdpError:
            return False  # only ever our own SDP: cannot happen
        previous_sdp, previous_held = side.last_sdp, side.held
        body = side.rewriter.passthrough(with_direction(current, direction))
        side.last_sdp, side.held = body, held

        def finished(status: int) -> None:
            if not 200 <= status < 300 and not side.ended:
                # §14.1: a failed re-INVITE leaves the session as it was.
                side.last_sdp, side.held = previous_sdp, previous_held
                if previous_held and side.media is not None:
                    side.media.disconnect()
                else:
                    self._connect(side)
            if done is not None:
                done(status)

        self.sides.send_request(side, side.session.reinvite(body), now, offer=True, done=finished)
        return True
