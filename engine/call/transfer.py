"""Transfers: REFER (RFC 3515) from a phone in a call, blind or attended (Refer-To with Replaces, RFC 3891),
and an INVITE with Replaces from a phone that takes over one of our dialogs.

The legs (``engine.call.legs``): B (the transferrer, ``transferrer``) is in a call with A (the
transferee, ``transferee``, the leg bridged with B's) and asks for A to be connected to C.

**Blind** (Refer-To: C). B's REFER gets 202 and an implicit subscription (RFC 3515 §2.4.4): a NOTIFY
``SIP/2.0 100 Trying`` at once and, at the end, the final answer (``SIP/2.0 200 OK`` or the failure) with
Subscription-State terminated. C is routed as a call from B's line (``Router.from_line``: an extension, a
ring group, a queue, a dial plan's extension, ``*99``, an external number with B's dialling permissions).
The transfer's own call (``Call`` with ``adopt`` set) rings C; A is unbridged from B meanwhile and hears
the hold music (silence when the engine runs without it). When C answers (a phone, or the engine itself:
voicemail, a queue's hold), A is moved into that call: A's leg becomes its caller side (a re-INVITE of A
onto the new call's relay port or the engine's media, ``CallManager._answer_caller`` asks ``adopt``), the
B leg is released with a BYE and the first call ends with it (its CDR is written then).

A failed blind transfer (busy, no answer, not found, refused) reconnects A and B: B is still in its dialog
(it waited for our final NOTIFY), so the bridge is simply restored, and B's phone shows the failure it was
NOTIFYed. If B hung up meanwhile (phones that release the call right after the 202), B's line is rung
back instead (Asterisk/FreePBX's "callback on failed blind transfer"), as a transfer of A to B's line;
when that fails too, A is hung up. A hanging up during the transfer ends the transfer's call, NOTIFYs B
``487 Request Terminated`` and releases B.

**Attended** (Refer-To: C?Replaces=<B's dialog with C>). B holds A, calls C (a second call through the
engine), then REFERs A with Replaces naming B's leg in the second call. The engine joins A and C directly
(a bridge across the two calls; both anchored, so the relay is re-pointed and neither phone moves; a leg
whose last SDP from us was sendonly/inactive, a hold passed on, is re-offered sendrecv) and releases B's
two legs. A Replaces naming no dialog of ours gets NOTIFY ``481``, and nothing changes.
Semi-attended (the Replaces names B's call to C while it still rings, an early dialog of ours as UAS):
B's INVITE is answered 487 and the ringing call goes on for A with ``adopt`` set, as the call of a blind
transfer (the same table from then on: NOTIFY 200 and BYE to B when C answers, A reconnected on failure).

**INVITE with Replaces** (RFC 3891 §3): an authenticated phone's INVITE naming a confirmed dialog of ours
is answered on a new call whose caller side is bridged to the replaced leg's peer, and the replaced leg is
BYEd. No such dialog (or an early one: we do not replace early dialogs) is 481; ``early-only`` on a
confirmed dialog is 486; a dialog the engine serves itself (no peer leg) is 603.

The state of a blind transfer is ``TRANSFER_TABLE``: (state, input) -> (action, next state); a missing
pair is a ``KeyError`` (the service never gives it). The service (``TransferService``) is the shell
around it: NOTIFYs, routing, the manager's operations.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable
from typing import Final

from engine.call.anchor import relay_ports, with_direction
from engine.call.b2bua import CallManager
from engine.call.bridging import BridgeError
from engine.call.config import CurrentConfig
from engine.call.flows import FlowFactory
from engine.call.fork import LegState
from engine.call.indialog import InDialog
from engine.call.legs import Call, CallController, CallInfo, CallState, Destination, Side, answer, respond
from engine.call.routing import FeatureCall, Rejection, Routed, Router
from engine.media.io import RelaySession
from engine.model.cdr import Direction, Disposition
from engine.sip.errors import SipParseError
from engine.sip.message import REASON_PHRASES, Field, Request, make_response
from engine.sip.refer import SIPFRAG, ReferTo, Replaces, parse_refer_to, parse_replaces, sipfrag
from engine.sip.registrar import Location
from engine.sip.sdp import AudioAnswer, SdpError, SdpRewriter, SessionDescription, answer_audio, parse_sdp
from engine.sip.transaction import Peer, ServerTransaction

logger = logging.getLogger(__name__)

#: How long the implicit subscription of a REFER lasts (RFC 3515 §2.4.4; ended by our final NOTIFY).
SUBSCRIPTION_S: Final = 180


class TransferState(enum.Enum):
    RINGING = "ringing"  # the target rings; the transferrer waits in its dialog for our NOTIFYs
    RINGING_ALONE = "ringing-alone"  # the target rings; the transferrer hung up meanwhile
    CALLING_BACK = "calling-back"  # the target failed after the transferrer hung up: its line rings
    DONE = "done"  # the transferee is in the target's call
    FAILED = "failed"  # reconnected, or over


class TransferInput(enum.Enum):
    ANSWERED = "answered"  # the transfer's call was answered (a phone, or the engine's own media)
    FAILED = "failed"  # the transfer's call ended unanswered (busy, no answer, not found, refused)
    TRANSFEREE_GONE = "transferee-gone"  # the transferee's leg ended
    TRANSFERRER_GONE = "transferrer-gone"  # the transferrer's leg ended


class TransferAction(enum.Enum):
    NONE = "none"
    COMPLETE = "complete"  # NOTIFY 200 (if the transferrer is there) and release the transferrer
    RECONNECT = "reconnect"  # NOTIFY the failure and bridge transferee and transferrer again
    CALL_BACK = "call-back"  # ring the transferrer's line for the transferee
    ABANDON = "abandon"  # end the transfer's call, NOTIFY 487 and release the transferrer
    HANG_UP = "hang-up"  # nobody took the transferee back: BYE it


S = TransferState
In = TransferInput
A = TransferAction

#: (state, input) -> (what the service does, next state).
TRANSFER_TABLE: Final[dict[tuple[TransferState, TransferInput], tuple[TransferAction, TransferState]]] = {
    (S.RINGING, In.ANSWERED): (A.COMPLETE, S.DONE),
    (S.RINGING, In.FAILED): (A.RECONNECT, S.FAILED),
    (S.RINGING, In.TRANSFEREE_GONE): (A.ABANDON, S.FAILED),
    (S.RINGING, In.TRANSFERRER_GONE): (A.NONE, S.RINGING_ALONE),
    (S.RINGING_ALONE, In.ANSWERED): (A.COMPLETE, S.DONE),
    (S.RINGING_ALONE, In.FAILED): (A.CALL_BACK, S.CALLING_BACK),
    (S.RINGING_ALONE, In.TRANSFEREE_GONE): (A.ABANDON, S.FAILED),
    (S.CALLING_BACK, In.ANSWERED): (A.COMPLETE, S.DONE),
    (S.CALLING_BACK, In.FAILED): (A.HANG_UP, S.FAILED),
    (S.CALLING_BACK, In.TRANSFEREE_GONE): (A.ABANDON, S.FAILED),
}


def transfer_step(state: TransferState, inp: TransferInput) -> tuple[TransferAction, TransferState]:
    """The move of a blind transfer in ``state`` on ``inp``.

    Raises:
        KeyError: an input the service never gives in that state (anything once DONE or FAILED).
    """
    return TRANSFER_TABLE[(state, inp)]


class TransferCall:
    """The ``CallController`` of a transfer's call: the flow of its target (a dial plan's), else a plain
    ring round, with the transfer told how it ended."""

    def __init__(self, transfer: BlindTransfer, inner: CallController | None, destination: Destination | None,
                 begin: Callable[[Call], None] | None) -> None:
        self.transfer = transfer
        self.inner = inner
        self.destination = destination
        self._begin = begin

    def begin(self, call: Call, now: float) -> None:
        if self._begin is not None:
            self._begin(call)
        elif self.destination is not None:
            self.transfer.service.manager.ring(call, self.destination, now)

    def ring_ended(self, call: Call, status: int, now: float) -> None:
        if self.inner is not None:
            self.inner.ring_ended(call, status, now)
        else:
            self.transfer.service.manager.end_as_rung(call, now)

    def bridged(self, call: Call, now: float) -> None:
        if self.inner is not None:
            self.inner.bridged(call, now)

    def ended(self, call: Call, now: float) -> None:
        if self.inner is not None:
            self.inner.ended(call, now)
        self.transfer.call_ended(call, now)

    def dtmf(self, call: Call, key: str) -> None:
        if self.inner is not None:
            self.inner.dtmf(call, key)

    def path(self) -> tuple[str, ...]:
        return ("transfer", *(self.inner.path() if self.inner is not None else ()))


class BlindTransfer:
    """One blind transfer in progress (see the module docstring and ``TRANSFER_TABLE``)."""

    def __init__(self, service: TransferService, transferrer: Side | None, transferee: Side,
                 refer: ServerTransaction, line: str) -> None:
        self.service = service
        self.refer = refer  # the REFER's transaction: the transfer's calls are started by it (``Call.tx``)
        self.transferrer: Side | None = transferrer
        self.transferee = transferee
        self.line = line  # the transferrer's line: routes the target, and is rung back
        self.state = TransferState.RINGING
        self.call: Call | None = None
        self.failure = (480, "Temporarily Unavailable")

    def input(self, inp: TransferInput, now: float) -> None:
        action, new = transfer_step(self.state, inp)
        logger.info("transfer of %s: %s -> %s (%s)", self.transferee.dialog.call_id, self.state.value,
                    new.value, inp.value)
        self.state = new
        service = self.service
        if action is A.COMPLETE:
            self._unwatch()
            self.tell(200, "OK", now, final=True)
            if self.transferrer is not None:
                service.manager.hang_up_leg(self.transferrer, now, "transferred")
        elif action is A.RECONNECT:
            self._unwatch()
            self.tell(*self.failure, now, final=True)
            transferrer = self.transferrer
            if transferrer is not None and not self.transferee.ended:
                InDialog.stop_music(self.transferee)
                try:
                    service.manager.bridging.bridge(self.transferee, transferrer)
                except BridgeError as exc:
                    logger.info("transfer: cannot reconnect: %s", exc)
        elif action is A.CALL_BACK:
            realm = service.config.snapshot.routing.company.sip_realm
            if not service.dial(self, f"sip:{self.line}@{realm}", now):
                self.input(In.FAILED, now)
        elif action is A.ABANDON:
            self._unwatch()
            call = self.call
            if call is not None and call.state is not CallState.ENDED:
                service.manager.end_controlled(call, now, 487, "Request Terminated", "transferee hung up")
            self.tell(487, "Request Terminated", now, final=True)
            if self.transferrer is not None:
                service.manager.hang_up_leg(self.transferrer, now, "the transferee hung up")
        elif action is A.HANG_UP:
            self._unwatch()
            service.manager.hang_up_leg(self.transferee, now, "transfer failed, nobody to call back")

    def call_ended(self, call: Call, now: float) -> None:
        """The transfer's call is over; unanswered, the transfer failed with its answer."""
        if call is not self.call or self.state not in (S.RINGING, S.RINGING_ALONE, S.CALLING_BACK):
            return
        status = call.final_status if call.final_status >= 300 else 480
        self.failure = (status, REASON_PHRASES.get(status, "Failed"))
        self.input(In.FAILED, now)

    def adopt(self, call: Call, sdp: bytes, now: float) -> Side:
        """``Call.adopt``: the transfer's call is answered; the transferee's leg becomes its caller side,
        re-INVITEd onto ``sdp`` (the new call's relay port, or the engine's own media)."""
        side = self.transferee
        InDialog.stop_music(side)
        side.line = side.line if side.line is not None else self.service.line_of(side)
        old = side.call
        if old.caller_side is side:
            old.caller_side = None
        elif old.callee_side is side:
            old.callee_side = None
        side.call = call
        call.caller_side = side
        side.media = None  # the manager points it at the new call's relay; the engine's media needs none
        side.last_sdp = sdp
        side.on_end = None
        manager = self.service.manager
        if side.session.can_send_invite():
            manager.sides.send_request(side, side.session.reinvite(sdp), now, offer=False)
        else:
            logger.warning("transfer: %s has an INVITE open; its media was not moved", side.dialog.call_id)
        if not any(s is not None and not s.ended for s in (old.caller_side, old.callee_side)):
            manager.end_controlled(old, now, cause="transferred")  # the transferrer left before: it is over
        self.input(In.ANSWERED, now)
        return side

    def _unwatch(self) -> None:
        self.transferee.on_end = None
        if self.transferrer is not None:
            self.transferrer.on_end = None

    def transferrer_gone(self, now: float) -> None:
        self.transferrer = None
        self.input(In.TRANSFERRER_GONE, now)

    def tell(self, status: int, reason: str, now: float, *, final: bool) -> None:
        """NOTIFY the transferrer (if it is still there) of ``status``."""
        side = self.transferrer
        if side is not None and not side.ended:
            self.service.notify(side, status, reason, now, final=final)


class TransferService:
    """REFER and INVITE with Replaces (see the module docstring)."""

    def __init__(self, manager: CallManager, config: CurrentConfig, location: Location,
                 flows: FlowFactory | None, wall: Callable[[], float]) -> None:
        self.manager = manager
        self.config = config
        self.location = location
        self.flows = flows
        self.wall = wall
        self.transfers = 0  # blind transfers started (tests and metrics read it)
        #: a blind transfer to the park extension (``engine.call.park``): (transferrer, transferee, REFER's
        #: transaction, transferrer's line, target, now) -> True when it was that and parking took it
        self.park: Callable[[Side, Side, ServerTransaction, str, ReferTo, float], bool] | None = None
        #: an INVITE with Replaces naming no confirmed dialog (``engine.call.pickup``): (INVITE, its
        #: transaction, peer, line, replaces, now) -> True when it named a ringing leg and was taken
        self.pickup: Callable[[Request, ServerTransaction, Peer, str, Replaces, float], bool] | None = None

    # -- REFER ---------------------------------------------------------------------------------------
    def refer(self, side: Side, req: Request, tx: ServerTransaction, now: float) -> None:
        """A REFER from ``side`` (``InDialog.refer``): answered here, and the transfer started."""
        ep = self.manager.endpoint
        try:
            target = parse_refer_to(req.get("refer-to"))
        except SipParseError as exc:
            respond(ep, tx, make_response(req, exc.status, exc.reason, to_tag=side.dialog.local_tag), now)
            return
        transferee = side.other
        if side.on_end is not None or (transferee is not None and transferee.on_end is not None):
            answer(ep, tx, req, 491, now)  # a transfer of this call is already under way
            return
        if transferee is None or transferee.ended or side.call.state is not CallState.ANSWERED:
            self._refuse(side, req, tx, "the call has no other party to transfer", now)
            return
        if transferee.media is None or transferee.media.remote is None:
            self._refuse(side, req, tx, "transfers need the engine to anchor the media", now)
            return
        line = self.line_of(side)
        if line is None:
            self._refuse(side, req, tx, "only a line can transfer", now)
            return
        ok = make_response(req, 202, "Accepted", to_tag=side.dialog.local_tag)
        ok.fields.append(Field("contact", side.dialog.local_contact))
        respond(ep, tx, ok, now)
        if target.replaces is not None:
            early = self.find_early(target.replaces)
            if early is not None and early.caller_call_id == side.dialog.call_id:
                early = None  # the transferrer's own call
            if early is not None:
                self._semi_attended(BlindTransfer(self, side, transferee, tx, line), early, now)
            else:
                self._attended(side, transferee, target, now)
            return
        if self.park is not None and self.park(side, transferee, tx, line, target, now):
            return
        self.notify(side, 100, "Trying", now, final=False)
        transfer = BlindTransfer(self, side, transferee, tx, line)
        self.transfers += 1
        if not self.dial(transfer, str(target.uri), now):
            transfer.input(In.FAILED, now)

    def _refuse(self, side: Side, req: Request, tx: ServerTransaction, why: str, now: float) -> None:
        logger.info("REFER on %s refused: %s", side.dialog.call_id, why)
        respond(self.manager.endpoint, tx, make_response(req, 403, why.capitalize(),
                                                         to_tag=side.dialog.local_tag), now)

    def notify(self, side: Side, status: int, reason: str, now: float, *, final: bool) -> None:
        """A NOTIFY of the REFER's progress to ``side`` (RFC 3515 §2.4.5): ``status`` as a sipfrag."""
        req = side.dialog.request("NOTIFY", sipfrag(status, reason), SIPFRAG)
        # §2.4.6 wants the NOTIFYs of a dialog's second and later REFERs to carry id=<its CSeq>, but pjsip
        # (pjsua, and Asterisk's refer module built on it) runs REFER subscriptions without ids and answers
        # such a NOTIFY 481. With one transfer at a time per dialog (a REFER meanwhile gets 491) the
        # NOTIFYs are never ambiguous, so none carries an id.
        req.fields.append(Field("event", "refer"))
        state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_S}"
        req.fields.append(Field("subscription-state", state))
        req.fields.append(Field("contact", side.dialog.local_contact))
        self.manager.sides.send_request(side, req, now, offer=False)

    def line_of(self, side: Side) -> str | None:
        """The line whose phone is on ``side`` (None: a trunk's party)."""
        if side.line is not None:
            return side.line or None
        call = side.call
        if side is call.caller_side:
            return call.info.caller if call.info.direction is not Direction.INBOUND else None
        leg = next((leg for leg in call.legs if leg.state is LegState.ANSWERED), None)
        return leg.branch.line or None if leg is not None else None

    # -- the transfer's call ---------------------------------------------------------------------------
    def dial(self, transfer: BlindTransfer, uri: str, now: float) -> bool:
        """Route ``uri`` as a call from the transfer's line and ring it for the transferee; False when it
        cannot even start (then ``transfer.failure`` says why)."""
        manager = self.manager
        side = transfer.transferee
        origin = transfer.transferrer if transfer.transferrer is not None else side
        config = self.config.snapshot
        router = Router(config.routing, self.location)
        invite = self._routing_request(uri, transfer.line, config.routing.company.sip_realm)
        routed = router.from_line(invite, transfer.line, origin.dialog.peer, self.wall())
        if isinstance(routed, Rejection):
            logger.info("transfer to %s: %d %s (%s)", uri, routed.status, routed.reason, routed.warning)
            transfer.failure = (routed.status, routed.reason)
            return False
        if isinstance(routed, FeatureCall):
            # A star code would run its feature for the transferrer's line (its DND, its forwarding):
            # never a transfer target (parking, the one that is, never gets here: ``TransferService.park``).
            logger.info("transfer to %s refused: a star code", uri)
            transfer.failure = (403, "Forbidden")
            return False
        offer = self._offer_of(side)
        if offer is None:
            transfer.failure = (488, "Not Acceptable Here")
            return False
        call = Call(id=uuid.uuid4().hex, info=routed.info, invite=invite, caller_call_id=side.dialog.call_id,
                    tx=transfer.refer, caller_peer=side.dialog.peer,
                    destination=Destination(branches=(), from_address="", to_address=""),
                    local_tag=side.dialog.local_tag, contact=side.dialog.local_contact, started_at=now,
                    offer=offer, relay=None, caller_rewriter=side.rewriter,
                    callee_rewriter=SdpRewriter(manager.endpoint.new_session_id()), callee_sdp=b"")
        call.adopt = transfer.adopt
        if isinstance(routed, Routed):
            controller = TransferCall(transfer, None, routed.destination, None)
        else:
            flow = self.flows.controller(routed, config) if self.flows is not None else None
            if flow is None:
                transfer.failure = (480, "Temporarily Unavailable")
                return False
            controller = TransferCall(transfer, flow, None, flow.begin)
        call.controller = controller
        self._wait(transfer, call)
        manager.adopt(call, now)
        controller.begin(call, now)
        return True

    def _wait(self, transfer: BlindTransfer, call: Call) -> None:
        """``call`` rings for the transfer: its legs are watched, the transferee waits with hold music."""
        side = transfer.transferee
        transfer.call = call
        side.on_end = lambda when: transfer.input(In.TRANSFEREE_GONE, when)
        if transfer.transferrer is not None:
            transfer.transferrer.on_end = transfer.transferrer_gone
        manager = self.manager
        manager.bridging.unbridge(side)
        music = manager.sides.music
        if music is not None and side.media is not None and side.music is None:
            side.music = music(side.call, side.media, side.last_sdp)

    @staticmethod
    def _routing_request(uri: str, line: str, realm: str) -> Request:
        """The INVITE the transferrer's line would have sent to ``uri``: what routing reads."""
        req = Request("INVITE", uri)
        req.add("from", f"<sip:{line}@{realm}>;tag=transfer")
        req.add("to", f"<{uri}>")
        req.add("call-id", f"{uuid.uuid4().hex}@transfer")
        req.add("cseq", "1 INVITE")
        req.add("max-forwards", "70")
        return req

    def _offer_of(self, side: Side) -> SessionDescription | None:
        """The transferee's session as an offer to the target: the codec it runs and its real address."""
        remote = side.media.remote if side.media is not None else None
        if remote is None:
            return None
        try:
            ours = parse_sdp(side.last_sdp)
            ports = relay_ports(ours, remote[1])
            return with_direction(parse_sdp(SdpRewriter(0).rewrite(ours, remote[0], ports)), "sendrecv")
        except SdpError:
            return None

    # -- attended --------------------------------------------------------------------------------------
    def find(self, replaces: Replaces) -> Side | None:
        """Our confirmed dialog that ``replaces`` names (its tags read either way round: phones differ in
        whose view they write)."""
        dialogs = self.manager.dialogs
        for ours, theirs in ((replaces.to_tag, replaces.from_tag), (replaces.from_tag, replaces.to_tag)):
            side = dialogs.get((replaces.call_id, ours))
            if side is not None and side.dialog.remote_tag == theirs and not side.ended:
                return side
        return None

    def find_early(self, replaces: Replaces) -> Call | None:
        """The ringing call whose caller's early dialog ``replaces`` names (a transferrer's call to the
        target that is not answered yet)."""
        for ours, theirs in ((replaces.to_tag, replaces.from_tag), (replaces.from_tag, replaces.to_tag)):
            call = self.manager.early.get((replaces.call_id, ours))
            if call is not None and call.state is CallState.RINGING and call.invite is not None:
                try:
                    if call.invite.from_.tag == theirs:
                        return call
                except SipParseError:
                    return None
        return None

    def _semi_attended(self, transfer: BlindTransfer, call: Call, now: float) -> None:
        """An attended transfer before the target answered (RFC 3891 on an early dialog of B's call to C):
        B's INVITE ends (487) and the call rings on for the transferee, as a blind transfer to it would."""
        manager = self.manager
        side = transfer.transferee
        offer = self._offer_of(side)
        if offer is None:
            transfer.tell(488, "Not Acceptable Here", now, final=True)
            return
        self.transfers += 1
        transfer.tell(100, "Trying", now, final=False)
        respond(manager.endpoint, call.tx, make_response(call.request, 487, to_tag=call.local_tag), now)
        manager.by_invite.pop(call.tx, None)
        manager.early.pop((call.caller_call_id, call.local_tag), None)
        call.offer = offer
        call.caller_rewriter = side.rewriter
        call.caller_peer = side.dialog.peer
        if call.relay is not None:
            remote = side.media.remote if side.media is not None else None
            if remote is not None:
                call.relay.a.set_remote(remote[0], remote[1])
        call.adopt = transfer.adopt
        call.controller = TransferCall(transfer, call.controller, None, None)
        self._wait(transfer, call)

    def _attended(self, side: Side, transferee: Side, target: ReferTo, now: float) -> None:
        assert target.replaces is not None
        replaced = self.find(target.replaces)
        peer = replaced.other if replaced is not None and replaced is not side else None
        if replaced is None or peer is None or peer is transferee:
            self.notify(side, 481, "Call/Transaction Does Not Exist", now, final=True)
            return
        manager = self.manager
        try:
            manager.bridging.bridge(transferee, peer)
        except BridgeError as exc:
            logger.info("attended transfer refused: %s", exc)
            self.notify(side, 488, "Not Acceptable Here", now, final=True)
            return
        for leg in (transferee, peer):
            self._active(leg, now)
        self.notify(side, 200, "OK", now, final=True)
        manager.hang_up_leg(side, now, "transferred")
        manager.hang_up_leg(replaced, now, "transferred")

    def _active(self, side: Side, now: float) -> None:
        """Re-offer sendrecv to a leg whose last SDP from us held it (a hold passed on to its phone)."""
        body = side.last_sdp
        if not body or not (b"a=sendonly" in body or b"a=inactive" in body):
            return
        if not side.session.can_send_invite():
            return
        try:
            sdp = parse_sdp(body)
        except SdpError:
            return
        side.last_sdp = side.rewriter.passthrough(with_direction(sdp, "sendrecv"))
        self.manager.sides.send_request(side, side.session.reinvite(side.last_sdp), now, offer=True)

    # -- INVITE with Replaces --------------------------------------------------------------------------
    def invite(self, req: Request, tx: ServerTransaction, peer: Peer, line: str, now: float) -> None:
        """An authenticated INVITE with Replaces from ``line`` (RFC 3891 §3); answered here."""
        manager = self.manager
        ep = manager.endpoint
        value = req.get("replaces")
        try:
            replaces = parse_replaces(value or "")
        except SipParseError as exc:
            respond(ep, tx, make_response(req, exc.status, exc.reason, to_tag=ep.new_tag()), now)
            return
        replaced = self.find(replaces)
        if replaced is None and self.pickup is not None and self.pickup(req, tx, peer, line, replaces, now):
            return  # it named a leg we are ringing: a pickup
        if replaced is None:
            respond(ep, tx, make_response(req, 481, to_tag=ep.new_tag()), now)
            return
        if replaces.early_only:
            respond(ep, tx, make_response(req, 486, to_tag=ep.new_tag()), now)
            return
        other = replaced.other
        if other is None or other.media is None:
            respond(ep, tx, make_response(req, 603, to_tag=ep.new_tag()), now)
            return
        if self.connect(req, tx, peer, line, other, other.call.info.caller, now):
            manager.hang_up_leg(replaced, now, "replaced")

    def connect(self, req: Request, tx: ServerTransaction, peer: Peer, line: str, other: Side, callee: str,
                now: float) -> bool:
        """Answer ``line``'s INVITE ``req`` on a new call whose caller side is bridged to ``other`` (an
        anchored leg in no bridge, or about to leave its one): INVITE with Replaces, and a parked call's
        retrieval (``engine.call.park``). False when the INVITE was refused instead (no usable audio, no
        relay port)."""
        manager = self.manager
        info = CallInfo(Direction.INTERNAL, caller=line, caller_name=line, callee=callee)
        call = manager.start_controlled(req, tx, peer, info, _NO_FLOW, now)
        if call is None:
            return False
        offer = call.offer
        audio = answer_audio(offer) if offer is not None else None
        if audio is None:
            manager.end_controlled(call, now, 488, "Not Acceptable Here", "no usable audio",
                                   Disposition.FAILED)
            return False
        relay = manager.anchor.open(call)
        if relay is None:
            manager.end_controlled(call, now, 503, "Service Unavailable", "no relay", Disposition.FAILED)
            return False
        call.media_ready = True
        side = answer_on_relay(manager, call, audio, relay, now)
        if side is None:
            return False
        InDialog.stop_music(other)
        manager.bridging.bridge(side, other)
        self._active(other, now)
        return True


def answer_on_relay(manager: CallManager, call: Call, audio: AudioAnswer, relay: RelaySession,
                    now: float) -> Side | None:
    """Answer ``call``'s ringing caller with ``audio`` (our answer to its offer) on ``relay``'s caller port:
    the call is ANSWERED, its caller side (returned; None if the answer could not go out) relayed, in no
    bridge yet: the caller of INVITE with Replaces and of a parked call's retrieval, a picked-up caller."""
    if audio.host is not None:
        relay.a.set_remote(audio.host, audio.port)
    sdp = call.caller_rewriter.rewrite(audio.sdp, manager.anchor.media_host,
                                       relay_ports(audio.sdp, relay.a.port))
    manager.answer_locally(call, sdp, now)
    side = call.caller_side
    if side is None:
        return None
    side.media = relay.a
    call.state = CallState.ANSWERED
    call.invite = call.offer = None
    return side


class _NoFlow:
    """The controller of a call that runs no flow (an INVITE with Replaces, answered at once)."""

    def ring_ended(self, call: Call, status: int, now: float) -> None:
        return None

    def bridged(self, call: Call, now: float) -> None:
        return None

    def ended(self, call: Call, now: float) -> None:
        return None

    def dtmf(self, call: Call, key: str) -> None:
        return None

    def path(self) -> tuple[str, ...]:
        return ("replaces",)


_NO_FLOW: Final = _NoFlow()
