"""The B2BUA: every call is an inbound leg (we are the caller's UAS) and outbound legs (we are UAC to each
branch), bridged by the ``CallManager``.

The manager is the transaction user for everything that belongs to calls: the INVITEs it was handed by the
application (after authentication and routing), the responses to the INVITEs it sent, ACKs, CANCELs and
in-dialog requests. It forks to all branches in parallel, relays provisional responses (183 with SDP as
early media), lets the first 2xx win and CANCELs the rest (RFC 3326 Reason: "Call completed elsewhere"),
answers the caller with the best final response when nobody answers (§16.7), passes re-INVITE/UPDATE/INFO
end to end, honours RFC 4028 session timers the caller asks for, and anchors media in the RTP relay (or
releases it when policy allows).

A call may also run under a ``CallController`` (the dial-plan and voicemail flows in ``engine.call.flows``):
then the manager does not ring anything by itself. The controller rings destinations one round at a time
(``ring``); when a round ends unanswered, the controller hears ``ring_ended`` instead of the caller getting
a final answer, and decides what comes next (ring the next member, answer and play prompts, voicemail). It
may answer the caller with the engine's own media (``answer_locally``: the call is then SERVING) and ring
after that; when a branch answers a SERVING call, the caller is re-INVITEd onto the relay towards it.

Every call and leg has a bounded lifetime: the ring timeout, Timer B, 64*T1 after a CANCEL, 64*T1 for the
caller's ACK, the session timer and a maximum call duration all end it; ``CallManager.calls`` and
``CallManager.legs`` are empty again after any of these paths (tests check this).

The pieces: ``engine.call.legs`` holds the data (calls, legs, sides, bridges), ``engine.call.indialog`` the
answered call's in-dialog traffic over the sides' INVITE sessions (``engine.sip.invite``),
``engine.call.anchor`` the media relay and SDP rewriting, ``engine.call.caller`` the checks of the caller's
INVITE and our responses to it, ``engine.call.bridging`` bridges and hold, ``engine.call.cdr`` the records.
This module keeps the calls: setting them up, forking, the caller's answer, and ending them. A call ends
with its last leg: a leg that hangs up takes the leg bridged with it along (``_hang_up``), ``hang_up_leg``
ends one leg alone, ``replace`` swaps a leg in a bridge for another, and a transfer's call (``adopt``,
``engine.call.transfer``) has a leg of another call as its caller.

The manager never reads a clock or sleeps: ``now`` comes with every input, timers go through the injected
``Scheduler`` (the event loop in production), and after acting on a timer it calls ``flush`` so the
transport sends what was queued.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from engine.call.anchor import MediaAnchor, sdp_key
from engine.call.bridging import BridgeError, Bridging
from engine.call.caller import caller_response, read_offer
from engine.call.cdr import CdrRecorder
from engine.call.fork import (
    BUSY,
    UNFINISHED,
    LegAction,
    LegInput,
    LegState,
    best_status,
    disposition_of,
    leg_step,
)
from engine.call.indialog import InDialog
from engine.call.legs import (
    ALLOW,
    COMPLETED_ELSEWHERE,
    DEFAULT_MAX_CALL_S,
    DEFAULT_RING_TIMEOUT_S,
    NOT_CALL_METHODS,
    SUPPORTED,
    Branch,
    Call,
    CallController,
    CallInfo,
    CallState,
    CdrSink,
    Destination,
    OutLeg,
    Reject,
    Scheduler,
    Side,
    answer,
    to_tag,
    warning_value,
)
from engine.clock import Clock
from engine.media.io import RtpRelay
from engine.model.cdr import Disposition
from engine.sip.auth import answer_challenge
from engine.sip.dialog import Dialog
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.events import CancelReceived, Event, RequestReceived, ResponseReceived, TransactionTimedOut
from engine.sip.invite import InviteSession
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.sdp import SdpError, SdpRewriter, filter_codecs, has_usable_audio, parse_sdp
from engine.sip.transaction import ClientTransaction, Peer, ServerTransaction, TransactionState

#: The call layer's public names (the data lives in engine.call.legs; callers import it from here).
__all__ = ["ALLOW", "BUSY", "DEFAULT_RING_TIMEOUT_S", "Branch", "Call", "CallController", "CallInfo",
           "CallManager", "CallState", "Destination"]

logger = logging.getLogger(__name__)


class CallManager:
    """The transaction user for calls. See the module docstring."""

    def __init__(self, endpoint: SipEndpoint, scheduler: Scheduler, flush: Callable[[], None],
                 relay: RtpRelay | None, media_host: str, cdr_sink: CdrSink, clock: Clock, *,
                 max_call_seconds: float = DEFAULT_MAX_CALL_S) -> None:
        self.endpoint = endpoint
        self.scheduler = scheduler
        self.flush = flush
        self.clock = clock
        self.max_call_seconds = max_call_seconds
        self.anchor = MediaAnchor(relay, media_host)
        self.cdr = CdrRecorder(cdr_sink, clock)
        self.sides = InDialog(endpoint, scheduler, self.anchor, self._hang_up, self._timer)
        #: bridge, unbridge, hold and resume legs (``replace`` and ``hang_up_leg`` are here)
        self.bridging = Bridging(self.sides)
        self.calls: dict[str, Call] = {}
        self.legs: dict[ClientTransaction, OutLeg] = {}
        self.dialogs: dict[tuple[str, str], Side] = {}  # (Call-ID, our tag) -> side
        self.by_invite: dict[ServerTransaction, Call] = {}
        self.early: dict[tuple[str, str], Call] = {}  # (Call-ID, our tag) of calls still ringing
        self.stats: dict[str, int] = {"calls": 0, "answered": 0, "failed": 0, "internal_errors": 0}

    # -- entry points ------------------------------------------------------------------------------

    def start_call(self, invite: Request, tx: ServerTransaction, peer: Peer, destination: Destination,
                   info: CallInfo, now: float) -> None:
        """Ring ``destination`` for the caller's ``invite`` (already authenticated and routed)."""
        call = self._new_call(invite, tx, peer, destination, info, now)
        if call is not None:
            self.ring(call, destination, now)

    def start_controlled(self, invite: Request, tx: ServerTransaction, peer: Peer, info: CallInfo,
                         controller: CallController, now: float) -> Call | None:
        """Take the caller's ``invite`` for a flow: nothing rings until ``controller`` calls ``ring`` or
        ``answer_locally``. None when the INVITE was refused at once (bad SDP, 483, 422, no media ports)."""
        placeholder = Destination(branches=(), from_address="", to_address="")
        call = self._new_call(invite, tx, peer, placeholder, info, now)
        if call is not None:
            call.controller = controller
        return call

    def _new_call(self, invite: Request, tx: ServerTransaction, peer: Peer, destination: Destination,
                  info: CallInfo, now: float) -> Call | None:
        ep = self.endpoint
        self.stats["calls"] += 1
        call_id = uuid.uuid4().hex  # the CDR key: unique across engine nodes
        local_tag = ep.new_tag()
        contact = self._contact(peer)
        call = Call(id=call_id, info=info, invite=invite, caller_call_id=invite.call_id, tx=tx,
                    caller_peer=peer, destination=destination, local_tag=local_tag, contact=contact,
                    started_at=now, offer=None, relay=None,
                    caller_rewriter=SdpRewriter(ep.new_session_id()),
                    callee_rewriter=SdpRewriter(ep.new_session_id()), callee_sdp=b"")
        self.adopt(call, now)
        self.by_invite[tx] = call
        self.early[(invite.call_id, local_tag)] = call
        try:
            read_offer(call)
        except Reject as rej:
            self._fail(call, rej.status, rej.reason, rej.disposition, rej.reason, now, headers=rej.headers)
            return None
        except SipParseError as exc:
            self._fail(call, exc.status, exc.reason, Disposition.FAILED, exc.reason, now,
                       headers=exc.extra_headers)
            return None
        return call

    def adopt(self, call: Call, now: float) -> None:
        """Keep ``call`` (a new one, or a transfer's: ``engine.call.transfer``) for its maximum duration."""
        self.calls[call.id] = call
        call.timers.append(self.scheduler.call_at(now + self.max_call_seconds,
                                                  lambda: self._timer(self._max_duration, call)))

    def ring(self, call: Call, destination: Destination, now: float) -> None:
        """Start a ring round: every branch of ``destination`` in parallel for its ring timeout. A call
        without a controller fails with the best answer when the round ends unanswered."""
        if call.state is CallState.ENDED or call.ring_active:
            return
        call.destination = destination
        if not call.media_ready:
            try:
                self.anchor.prepare(call)
            except Reject as rej:
                self._fail(call, rej.status, rej.reason, rej.disposition, rej.reason, now,
                           headers=rej.headers)
                return
        call.ring_active = True
        call.round += 1
        call.ring_timer = self.scheduler.call_at(now + destination.ring_timeout,
                                                 lambda: self._timer(self._ring_timeout, call))
        call.timers.append(call.ring_timer)
        cfg = self.endpoint.config
        sent = 0
        for branch in destination.branches:
            if (branch.peer.host, branch.peer.port) == (cfg.via_host, cfg.via_port):
                # A contact that is the engine itself would loop until Max-Forwards runs out.
                logger.info("call %s: branch %s points at this engine; skipped", call.id, branch.uri)
                continue
            self._send_leg(call, branch, now)
            sent += 1
        if not sent:
            self._ring_over(call, 480, "Temporarily Unavailable", Disposition.UNAVAILABLE,
                            "no branch to ring", now)

    def answer_locally(self, call: Call, sdp: bytes, now: float) -> None:
        """Answer the caller with the engine's own media (``sdp``): prompts, menus, voicemail."""
        if call.state is not CallState.RINGING:
            return
        call.state = CallState.SERVING
        call.answered_at = now
        self.early.pop((call.caller_call_id, call.local_tag), None)
        self.stats["answered"] += 1
        self._answer_caller(call, sdp, now)

    def end_controlled(self, call: Call, now: float, status: int = 480,
                       reason: str = "Temporarily Unavailable", cause: str = "dial plan hung up",
                       disposition: Disposition | None = None) -> None:
        """The flow ends the call: a final answer when unanswered, else BYE."""
        if call.state is CallState.RINGING:
            self._fail(call, status, reason, disposition or disposition_of(status), cause, now)
        else:
            self._hang_up(call, now, cause)

    def stop_ring(self, call: Call, now: float) -> None:
        """Give the ring round up (its legs CANCELled, the controller not told) without ending the call."""
        if not call.ring_active:
            return
        call.ring_active = False
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        for leg in call.legs:
            self._cancel_leg(leg, now)

    def end_as_rung(self, call: Call, now: float) -> bool:
        """End an unanswered call with its last ring round's answer (486, 480...); False if none/answered."""
        if call.state is not CallState.RINGING or call.ring_outcome is None:
            return False
        status, reason, disposition, cause = call.ring_outcome
        self._fail(call, status, reason, disposition, cause, now)
        return True

    def _ring_over(self, call: Call, status: int, reason: str | None, disposition: Disposition, cause: str,
                   now: float) -> None:
        """A ring round ended unanswered: the controller decides what follows, else the caller gets it."""
        call.ring_active = False
        call.ring_outcome = (status, reason, disposition, cause)
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        controller = call.controller
        if controller is not None and call.state in (CallState.RINGING, CallState.SERVING):
            for leg in call.legs:
                self._cancel_leg(leg, now)
            controller.ring_ended(call, status, now)
            return
        self._fail(call, status, reason, disposition, cause, now)

    def refuse(self, invite: Request, tx: ServerTransaction, status: int, reason: str,
               disposition: Disposition, info: CallInfo, now: float, warning: str | None = None) -> None:
        """Answer a call that routing refused, and record it (unknown numbers and forbidden destinations
        belong in the CDRs too)."""
        resp = make_response(invite, status, reason, to_tag=self.endpoint.new_tag())
        if warning:
            resp.fields.append(Field("warning", warning_value(warning)))
        self.endpoint.respond(tx, resp, now)
        self.stats["calls"] += 1
        self.stats["failed"] += 1
        self.cdr.refused(info, status, warning or reason, disposition, now)

    def shutdown(self, now: float) -> None:
        """The engine is stopping: BYE every answered call, 503 every ringing one (CDRs written)."""
        for call in list(self.calls.values()):
            if call.state in (CallState.ANSWERED, CallState.SERVING):
                self._hang_up(call, now, "engine shutting down")
            elif call.state is CallState.RINGING:
                self._fail(call, 503, "Service Unavailable", Disposition.FAILED, "engine shutting down", now)
        # Legs still waiting for their 487 will not get to report it: record them as cancelled now.
        for call in list(self.calls.values()):
            for leg in call.legs:
                if self.legs.pop(leg.tx, None) is not None:
                    leg.status, leg.ended_at = leg.status or 487, now
            self._maybe_forget(call)

    def handle(self, event: Event, now: float) -> bool:
        """Act on an endpoint event if it belongs to a call; False when it is not ours."""
        try:
            return self._handle(event, now)
        except Exception:
            self.stats["internal_errors"] += 1
            logger.exception("internal error in call handling of %r", event)
            if isinstance(event, RequestReceived) and event.transaction is not None:
                answer(self.endpoint, event.transaction, event.request, 500, now)
                return True
            return isinstance(event, ResponseReceived) and event.transaction in self.legs

    def _handle(self, event: Event, now: float) -> bool:
        if isinstance(event, ResponseReceived):
            tx = event.transaction
            if tx is None:
                return False
            leg = self.legs.get(tx)
            if leg is not None:
                self._leg_response(leg, event.response, now)
                return True
            pending = self.sides.pending.get(tx)
            if pending is not None:
                self.sides.pending_response(tx, pending, event.response, now)
                return True
            sides = self.sides.acked.get(tx)
            if sides is not None:
                self.sides.another_2xx(tx, sides, event.response, now)
                return True
            return False
        if isinstance(event, RequestReceived):
            req = event.request
            tag = to_tag(req)
            if tag is None:
                return False
            side = self.dialogs.get((req.call_id, tag))
            if event.transaction is None:  # an ACK for a 2xx
                if side is not None:
                    self.sides.ack_received(side, req, now)
                return True
            if side is None and req.method in NOT_CALL_METHODS:
                return False  # e.g. a REGISTER whose To carries a tag: the registrar's business
            if side is None and req.method == "BYE":
                early = self.early.get((req.call_id, tag))
                if early is not None:
                    # §15: a caller may end an early dialog with BYE instead of CANCEL.
                    answer(self.endpoint, event.transaction, req, 200, now)
                    self._caller_cancelled(early, now)
                    return True
            if side is None:
                answer(self.endpoint, event.transaction, req, 481, now)
                return True
            self.sides.request(side, req, event.transaction, now)
            return True
        if isinstance(event, CancelReceived):
            call = self.by_invite.get(event.invite_transaction)
            if call is None:
                return self.sides.cancel_received(event.invite_transaction, now)  # a re-INVITE's CANCEL
            self._caller_cancelled(call, now)
            return True
        if isinstance(event, TransactionTimedOut):
            timed_out = event.transaction
            if isinstance(timed_out, ClientTransaction):
                leg = self.legs.get(timed_out)
                if leg is not None:
                    self._leg_final(leg, event.status, now)  # 408, or 503 for a transport error
                    return True
                pending = self.sides.pending.pop(timed_out, None)
                if pending is not None:
                    self.sides.pending_failed(pending, timed_out.method, event.status, now)
                    return True
                return False
            # Our final to the caller was never ACKed (Timer H) or the transport failed: nothing to undo.
            return isinstance(timed_out, ServerTransaction) and timed_out in self.by_invite
        return False

    # -- setting a call up -------------------------------------------------------------------------

    def _send_leg(self, call: Call, branch: Branch, now: float, *, auth: tuple[str, str] | None = None,
                  previous: Request | None = None) -> OutLeg:
        ep = self.endpoint
        dest = call.destination
        if previous is None:
            req = Request("INVITE", branch.uri)
            fields = req.fields
            mf = call.request.max_forwards
            fields.append(Field("max-forwards", str(min(70, (mf if mf is not None else 70) - 1))))
            fields.append(Field("from", f"{dest.from_address};tag={ep.new_tag()}"))
            fields.append(Field("to", dest.to_address))
            fields.append(Field("call-id", f"{ep.new_tag()}{ep.new_tag()}@pbx-engine"))
            fields.append(Field("cseq", "1 INVITE"))
            fields.append(Field("contact", self._contact(branch.peer)))
            fields.append(Field("allow", ALLOW))
            fields.append(Field("supported", SUPPORTED))
            for name, value in dest.headers:
                fields.append(Field(name.lower(), value))
            if call.callee_sdp:
                fields.append(Field("content-type", "application/sdp"))
                req.body = call.callee_sdp
        else:
            # §22.2: the retry with credentials is a new transaction: same Call-ID, From tag and To, CSeq + 1.
            req = Request("INVITE", previous.uri)
            req.fields = [f for f in previous.fields if f.name not in ("via", "cseq", "authorization",
                                                                         "proxy-authorization")]
            req.body = previous.body
            req.add("cseq", f"{previous.cseq.seq + 1} INVITE")
            if auth is not None:
                req.add(*auth)
        tx = ep.send_request(req, branch.peer, now)
        leg = OutLeg(call=call, branch=branch, invite=req, tx=tx, started_at=now, round=call.round)
        call.legs.append(leg)
        self.legs[tx] = leg
        return leg

    # -- responses on outbound legs ----------------------------------------------------------------

    def _leg_response(self, leg: OutLeg, resp: Response, now: float) -> None:
        status = resp.status
        call = leg.call
        if status < 200:
            action = self._leg_input(leg, LegInput.TRYING if status == 100 else LegInput.PROGRESS, now)
            if action is LegAction.RELAY and call.state is CallState.RINGING and call.adopt is None:
                self._relay_provisional(call, resp, now)
            return
        if status < 300:
            self._leg_answered(leg, resp, now)
            return
        if (status in (401, 407) and call.destination.credentials is not None and not leg.auth_tried
                and call.ring_active and leg.state not in (LegState.CANCEL_WAIT, LegState.CANCELLING)
                and self._retry_with_auth(leg, resp, now)):
            return
        self._leg_final(leg, status, now, resp)

    def _retry_with_auth(self, leg: OutLeg, resp: Response, now: float) -> bool:
        call = leg.call
        creds = call.destination.credentials
        assert creds is not None
        name = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
        challenge = resp.get(name)
        if challenge is None:
            return False
        try:
            value = answer_challenge(challenge, "INVITE", leg.request.uri, creds[0], creds[1],
                                     self.endpoint.new_tag())
        except ValueError as exc:
            logger.info("call %s: cannot answer the challenge of %s: %s", call.id, leg.branch.uri, exc)
            return False
        self._drop_leg(leg, now, resp.status)
        header = "authorization" if resp.status == 401 else "proxy-authorization"
        new = self._send_leg(call, leg.branch, now, auth=(header, value), previous=leg.request)
        new.auth_tried = True
        return True

    def _relay_provisional(self, call: Call, resp: Response, now: float) -> None:
        sdp = self.anchor.early_media(call, resp)
        if sdp:
            if sdp == call.early_sdp_sent:
                return
            call.early_sdp_sent = sdp
            out = caller_response(call, 183, "Session Progress", sdp)
        else:
            if call.ringing_sent or call.early_sdp_sent:
                return  # a 180 after early media would make the caller stop playing it
            call.ringing_sent = True
            out = caller_response(call, 180, "Ringing")
        self.endpoint.respond(call.tx, out, now)

    def _leg_answered(self, leg: OutLeg, resp: Response, now: float) -> None:
        call = leg.call
        try:
            dialog = Dialog.as_uac(leg.request, resp, leg.branch.peer)
        except SipParseError:
            logger.info("call %s: unusable 2xx from %s", call.id, leg.branch.uri)
            self._leg_final(leg, 502, now)
            return
        session = InviteSession.uac(dialog, self.endpoint.config.timers, reliable=dialog.peer.reliable,
                                    offer_sent=bool(leg.request.body))
        side = Side(call=call, dialog=dialog, session=session, rewriter=call.callee_rewriter,
                    media=None if call.relay is None else call.relay.b, last_sdp=call.callee_sdp)
        self.sides.remember_ack(leg.tx, side, leg.request.cseq.seq, now)
        wanted = leg.state in (LegState.CALLING, LegState.TRYING, LegState.EARLY)
        current = wanted and call.ring_active and leg.round == call.round
        late_offer = call.offer is None and current
        if not late_offer:
            self.sides.send_ack(side, session.ack())
        if not current:
            # Another branch won, or the caller gave up: this answer came too late. ACK it, then BYE it.
            self._leg_input(leg, LegInput.LATE, now)
            self._release_leg(leg, now, resp.status)
            self.sides.send_bye(side, now)
            return
        self._leg_input(leg, LegInput.ANSWER, now)
        leg.status = resp.status
        leg.answered_at = now
        self._release_leg(leg, now, resp.status, ended=False)
        try:
            answer = filter_codecs(parse_sdp(resp.body))
            sdp = self.anchor.for_caller(call, answer)
            side.remote_sdp = sdp_key(resp.body)
        except SdpError as exc:
            logger.info("call %s: bad SDP in the answer of %s: %s", call.id, leg.branch.uri, exc)
            self.sides.send_bye(side, now)
            self._fail(call, 502, "Bad Gateway", Disposition.FAILED, "callee answered with bad SDP", now)
            return
        if late_offer and not has_usable_audio(answer):
            # §13.2.2.4: even an offer we cannot take gets an answer in the ACK (every stream rejected,
            # port 0, as filter_codecs left them) before the BYE.
            self.sides.send_late_ack(side, call.callee_rewriter.passthrough(answer))
            self.sides.send_bye(side, now)
            self._fail(call, 488, "Not Acceptable Here", Disposition.FAILED, "no common codec", now)
            return
        served = call.state is CallState.SERVING
        call.state = CallState.ANSWERED
        call.ring_active = False
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None
        call.callee_side = side
        self.dialogs[(dialog.call_id, dialog.local_tag)] = side
        self.sides.refresher_from_callee(side, resp, now)
        for other in call.legs:
            if other is not leg:
                self._cancel_leg(other, now, COMPLETED_ELSEWHERE)
        if served:
            # The engine answered the caller before (prompts): move the caller's media onto the relay
            # towards the callee with a re-INVITE (its 2xx is ACKed through the pending machinery).
            caller = call.caller_side
            assert caller is not None
            if not caller.session.can_send_invite():
                # The caller's own re-INVITE (or our late offer) is open: one INVITE at a time (§14.1).
                self._hang_up(call, now, "the caller could not be moved to the callee")
                return
            caller.last_sdp = sdp
            self.sides.send_request(caller, caller.session.reinvite(sdp), now, offer=False)
        else:
            call.answered_at = now
            self.early.pop((call.caller_call_id, call.local_tag), None)
            self.stats["answered"] += 1
            caller = self._answer_caller(call, sdp, now)
        caller.media = None if call.relay is None else call.relay.a
        self.bridging.bridge(caller, side)
        self.sides.sync(side, now)
        if call.controller is not None:
            call.controller.bridged(call, now)
        if call.state is CallState.ANSWERED:
            # Bridged: what only answering and ringing needed goes; a held call keeps what it still uses
            # (the parsed INVITEs and the offer were half the memory of a held call).
            call.invite = call.offer = leg.invite = None

    def _answer_caller(self, call: Call, sdp: bytes, now: float) -> Side:
        """Send the caller our 200 with ``sdp`` and make its dialog the caller side of the call (a
        transfer's call moves its waiting leg here instead: ``Call.adopt``)."""
        if call.adopt is not None:
            return call.adopt(call, sdp, now)
        caller_dialog = Dialog.as_uas(call.request, call.local_tag, call.contact, call.caller_peer)
        session = InviteSession.uas(caller_dialog, self.endpoint.config.timers,
                                    reliable=caller_dialog.peer.reliable,
                                    offer_received=bool(call.request.body))
        caller = Side(call=call, dialog=caller_dialog, session=session, rewriter=call.caller_rewriter,
                      media=None, last_sdp=sdp)
        call.caller_side = caller
        self.dialogs[(caller_dialog.call_id, caller_dialog.local_tag)] = caller
        caller.remote_sdp = sdp_key(call.request.body)
        ok = caller_response(call, 200, "OK", sdp)
        if call.caller_session_expires:
            ok.fields.append(Field("session-expires", f"{call.caller_session_expires};refresher=uac"))
            ok.fields.append(Field("require", "timer"))
            # The caller refreshes (refresher=uac); without a refresh in time the call ends (RFC 4028 §10).
            session.expect_refresh(call.caller_session_expires, now)
        self.endpoint.respond(call.tx, ok, now)
        self.by_invite.pop(call.tx, None)
        self.sides.sent_2xx(caller, ok, now, with_offer=not call.request.body)
        return caller

    def _leg_final(self, leg: OutLeg, status: int, now: float, resp: Response | None = None) -> None:
        call = leg.call
        if resp is not None:
            leg.reason = resp.reason
        self._release_leg(leg, now, status)
        if not call.ring_active or leg.round != call.round or call.state is CallState.ENDED:
            return
        if status >= 600:
            # §16.7: a 6xx ends the search; the other branches are cancelled.
            for other in call.legs:
                self._cancel_leg(other, now)
            self._ring_over(call, status, resp.reason if resp is not None else None, disposition_of(status),
                            f"{status} {resp.reason if resp is not None else ''}".strip(), now)
            return
        this_round = [other for other in call.legs if other.round == call.round]
        if any(other.state in UNFINISHED for other in this_round):
            return
        best = best_status([other.status for other in this_round])
        reason = next((o.reason for o in this_round if o.status == best and o.reason), None)
        self._ring_over(call, best, reason, disposition_of(best), f"{best} {reason or ''}".strip(), now)

    def _release_leg(self, leg: OutLeg, now: float, status: int, *, ended: bool = True) -> None:
        """The leg's INVITE transaction is done (final response or timeout): stop tracking it."""
        self.legs.pop(leg.tx, None)
        if leg.guard is not None:
            leg.guard.cancel()
            leg.guard = None
        if leg.status == 0 or ended:
            leg.status = status
        if ended and leg.state is not LegState.ANSWERED:
            if leg.state is not LegState.ENDED:
                self._leg_input(leg, LegInput.FINAL, now)
            leg.ended_at = now
        self._maybe_forget(leg.call)

    def _drop_leg(self, leg: OutLeg, now: float, status: int) -> None:
        """A leg replaced by its authenticated retry: not part of the call's record."""
        self._release_leg(leg, now, status)
        if leg in leg.call.legs:
            leg.call.legs.remove(leg)

    def _cancel_leg(self, leg: OutLeg, now: float, reason: str | None = None) -> None:
        """Give the branch up: CANCEL it now, or once it sent a provisional response (§9.1)."""
        if leg.cancel_reason is None and leg.state in UNFINISHED:
            leg.cancel_reason = reason  # the first wish says why ("Call completed elsewhere")
        self._leg_input(leg, LegInput.CANCEL, now)

    def _leg_input(self, leg: OutLeg, inp: LegInput, now: float) -> LegAction:
        """Move the branch by the fork table (engine.call.fork) and do the CANCEL side of the move."""
        leg.state, action = leg_step(leg.state, inp)
        if action in (LegAction.GUARD, LegAction.CANCEL) and leg.guard is None:
            # §9.1: if the INVITE gets no final response within 64*T1 of the CANCEL, give the leg up.
            guard_at = now + self.endpoint.config.timers.timeout
            leg.guard = self.scheduler.call_at(guard_at, lambda: self._timer(self._leg_abandoned, leg))
        if action is LegAction.CANCEL:
            self.endpoint.cancel(leg.tx, now, leg.cancel_reason)
        return action

    def _leg_abandoned(self, leg: OutLeg, now: float) -> None:
        leg.guard = None
        if self.legs.get(leg.tx) is leg:
            self.endpoint.abandon(leg.tx)
            self._leg_final(leg, 487, now)

    # -- the caller's side -------------------------------------------------------------------------

    def _caller_cancelled(self, call: Call, now: float) -> None:
        if call.state is not CallState.RINGING:
            return
        for leg in call.legs:
            self._cancel_leg(leg, now)
        self._fail(call, 487, "Request Terminated", Disposition.CANCELLED, "caller hung up before answer",
                   now)

    def _ring_timeout(self, call: Call, now: float) -> None:
        call.ring_timer = None
        if not call.ring_active or call.state is CallState.ENDED:
            return
        for leg in call.legs:
            self._cancel_leg(leg, now)
        self._ring_over(call, 480, "No Answer", Disposition.NO_ANSWER, "ring timeout", now)

    def _max_duration(self, call: Call, now: float) -> None:
        if call.state is CallState.RINGING:
            # No further flow steps: the caller gets the answer (and the legs a CANCEL).
            self._fail(call, 480, "No Answer", Disposition.NO_ANSWER,
                       "ring timeout" if call.ring_active else "maximum call duration reached", now)
        elif call.state in (CallState.ANSWERED, CallState.SERVING):
            self._hang_up(call, now, "maximum call duration reached")

    def _fail(self, call: Call, status: int, reason: str | None, disposition: Disposition, cause: str,
              now: float, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Give the caller a final non-2xx answer and end the call."""
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ring_active = False
        for leg in call.legs:
            self._cancel_leg(leg, now)  # nobody else rings for a call that is over
        resp = make_response(call.request, status, reason, to_tag=call.local_tag)
        for name, value in headers:
            resp.fields.append(Field(name.lower(), value))
        if call.tx.state is TransactionState.PROCEEDING:
            self.endpoint.respond(call.tx, resp, now)
        self.stats["failed"] += 1
        call.final_status = status
        call.disposition = disposition
        call.cause = cause
        call.ended_at = now
        self._end(call)

    # -- ending ------------------------------------------------------------------------------------

    def _hang_up(self, call: Call, now: float, cause: str, from_side: Side | None = None,
                 disposition: Disposition = Disposition.ANSWERED) -> None:
        """End an answered call: BYE every leg of it that did not send the BYE itself (``from_side``), and the
        legs bridged with them (a two-party bridge with one party is over). A leg bridged into another call
        (a transfer) ends that call too once it has no leg left."""
        if call.state not in (CallState.ANSWERED, CallState.SERVING):
            return
        gone = [from_side] if from_side is not None else \
            [s for s in (call.caller_side, call.callee_side) if s is not None and not s.ended]
        touched = [call]
        for side in gone:
            peer = side.other
            self._leg_over(side, now, bye=side is not from_side)
            if peer is not None and not peer.ended:
                self._leg_over(peer, now, bye=True)
                if peer.call not in touched:
                    touched.append(peer.call)
        for each in touched:
            if not any(s is not None and not s.ended for s in (each.caller_side, each.callee_side)):
                self._finish(each, now, cause if each is call else f"bridged call: {cause}", disposition)

    def hang_up_leg(self, side: Side, now: float, cause: str = "leg hung up") -> None:
        """BYE one leg only (e.g. the transferor after ``replace``); its call ends when no leg of it is left.
        A leg still bridged is unbridged first, so its peer stays up."""
        if side.ended:
            return
        self.bridging.unbridge(side)
        self._leg_over(side, now, bye=True)
        call = side.call
        if call.state in (CallState.ANSWERED, CallState.SERVING) and not any(
                s is not None and not s.ended for s in (call.caller_side, call.callee_side)):
            self._finish(call, now, cause, Disposition.ANSWERED)

    def replace(self, old: Side, new: Side, now: float) -> None:
        """``new`` takes ``old``'s place in its bridge (REFER/Replaces: the transfer target takes the
        transferor's place) and ``old`` is hung up.

        Raises:
            BridgeError: ``old`` is in no bridge, or ``new`` cannot be bridged (ended, media released).
        """
        peer = old.other
        if peer is None:
            raise BridgeError("the leg to replace is in no bridge")
        self.bridging.bridge(peer, new)
        self.hang_up_leg(old, now, "replaced")

    def _leg_over(self, side: Side, now: float, *, bye: bool) -> None:
        """One leg ends: BYE it (unless it sent the BYE), leave its bridge, forget its dialog."""
        if side.ended:
            return
        if bye:
            self.sides.send_bye(side, now)
        self.bridging.unbridge(side)
        self.dialogs.pop((side.dialog.call_id, side.dialog.local_tag), None)
        self.sides.end_side(side, now)

    def _finish(self, call: Call, now: float, cause: str, disposition: Disposition) -> None:
        """The last leg of an answered call is gone: the call is over."""
        if call.state not in (CallState.ANSWERED, CallState.SERVING):
            return
        call.state = CallState.ENDED
        call.ring_active = False
        for leg in call.legs:
            self._cancel_leg(leg, now)  # a SERVING call may be ringing someone
        call.final_status = 200
        call.disposition = disposition
        call.cause = cause
        call.ended_at = now
        self._end(call)

    def _end(self, call: Call) -> None:
        """The call is over for the caller: free its media and timers. Outbound legs still waiting for
        their final response stay in ``legs`` until it comes (each bounded by its own timer); the CDR is
        written when the last one has it."""
        for handle in call.timers:
            handle.cancel()
        call.timers.clear()
        call.ring_timer = None
        controller = call.controller
        if controller is not None:
            try:
                controller.ended(call, call.ended_at if call.ended_at is not None else self.clock.now())
            except Exception:
                self.stats["internal_errors"] += 1
                logger.exception("call %s: the flow failed to end", call.id)
        for side in (call.caller_side, call.callee_side):
            if side is not None:
                self.dialogs.pop((side.dialog.call_id, side.dialog.local_tag), None)
        if call.relay is not None:
            call.relay.close()
        self.by_invite.pop(call.tx, None)
        self.early.pop((call.caller_call_id, call.local_tag), None)
        self.sides.end(call, self.clock.now())
        now_end = call.ended_at if call.ended_at is not None else call.started_at
        for leg in call.legs:
            if leg.ended_at is None and leg.state is LegState.ANSWERED:
                leg.ended_at = now_end
        self._maybe_forget(call)

    def _maybe_forget(self, call: Call) -> None:
        """Drop an ended call once every leg has its final answer (a cancelled leg's 487); write its CDR."""
        if call.state is CallState.ENDED and not any(self.legs.get(leg.tx) is leg for leg in call.legs) \
                and self.calls.pop(call.id, None) is not None:
            self.cdr.call_ended(call)
            # Break the call <-> leg/side/controller reference cycles so the call is freed by reference
            # counting, not left for the cyclic GC (whose passes over thousands of live calls stall the loop).
            call.legs = []
            call.caller_side = call.callee_side = None
            call.controller = None

    # -- helpers -----------------------------------------------------------------------------------

    def _timer(self, action: Callable[..., None], obj: object) -> None:
        """Run a timer action with the current time, then send what it queued."""
        now = self.clock.now()
        try:
            if obj is None:
                action(now)
            else:
                action(obj, now)
        except Exception:
            self.stats["internal_errors"] += 1
            logger.exception("internal error in a call timer")
        self.flush()

    def _contact(self, peer: Peer) -> str:
        cfg = self.endpoint.config
        suffix = "" if peer.transport == "UDP" else f";transport={peer.transport.lower()}"
        return f"<sip:{cfg.via_host}:{cfg.port_for(peer.transport)}{suffix}>"
