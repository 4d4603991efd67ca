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

The manager never reads a clock or sleeps: ``now`` comes with every input, timers go through the injected
``Scheduler`` (the event loop in production), and after acting on a timer it calls ``flush`` so the
transport sends what was queued.
"""

from __future__ import annotations

import enum
import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from engine.clock import Clock
from engine.media.io import RelaySession, RtpRelay
from engine.media.relay import RelayExhausted
from engine.model.cdr import CallRecord, Direction, Disposition, LegRecord
from engine.sip.auth import answer_challenge
from engine.sip.dialog import Dialog
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.events import CancelReceived, Event, RequestReceived, ResponseReceived, TransactionTimedOut
from engine.sip.invite import (
    RETRY_AFTER_S,
    AckMemo,
    ForkedAnswers,
    InviteSession,
    OfferInput,
    OfferState,
    SessionEvent,
    SessionState,
)
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.sdp import (
    SdpError,
    SdpRewriter,
    SessionDescription,
    filter_codecs,
    has_usable_audio,
    parse_sdp,
)
from engine.sip.transaction import ClientTransaction, Peer, ServerTransaction, TransactionState

logger = logging.getLogger(__name__)

ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"
SUPPORTED: Final = "timer"
COMPLETED_ELSEWHERE: Final = 'SIP;cause=200;text="Call completed elsewhere"'
DEFAULT_RING_TIMEOUT_S: Final = 30.0  # how long a line rings (pbx serve --ring-timeout)
DEFAULT_MAX_CALL_S: Final = 6 * 3600.0
MIN_SE: Final = 90  # RFC 4028 §5: the smallest Session-Expires we accept
#: Final statuses that mean "busy" wherever they come from (§21.4.24, §21.6.1).
BUSY: Final = frozenset({486, 600})
#: Methods that never belong to a call's dialog here, even with a To tag.
NOT_CALL_METHODS: Final = frozenset({"REGISTER", "OPTIONS", "SUBSCRIBE", "PUBLISH", "MESSAGE"})


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What the manager needs of the event loop: ``loop.call_at`` (monotonic time, like ``now``)."""

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


@dataclass(frozen=True, slots=True)
class Branch:
    """One place to ring: the Request-URI and the address the INVITE is sent to."""

    uri: str
    peer: Peer


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a routed call goes and how it presents itself there."""

    branches: tuple[Branch, ...]
    from_address: str  # the caller as the callee sees it, e.g. '"Anna Schmidt" <sip:201@pbx.example>'
    to_address: str  # e.g. '<sip:202@pbx.example>'
    headers: tuple[tuple[str, str], ...] = ()  # e.g. P-Asserted-Identity towards a carrier
    ring_timeout: float = DEFAULT_RING_TIMEOUT_S
    credentials: tuple[str, str] | None = None  # (username, password) when the far end challenges us
    media_release: bool = False  # both ends may exchange RTP directly (policy decided by the router)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Who called whom, for the CDR."""

    direction: Direction
    caller: str
    caller_name: str
    callee: str
    did: str | None = None
    trunk: str | None = None


class CallController(Protocol):
    """What runs a call's flow (``engine.call.flows``); the manager reports to it."""

    def ring_ended(self, call: Call, status: int, now: float) -> None:
        """A ring round ended unanswered (``status``: the best final answer, 480 for a timeout)."""

    def bridged(self, call: Call, now: float) -> None:
        """A branch answered: the call is now bridged to it and the flow is over."""

    def ended(self, call: Call, now: float) -> None:
        """The call is over (the caller hung up, a BYE, a timeout, shutdown)."""

    def dtmf(self, call: Call, key: str) -> None:
        """A DTMF key the caller sent by SIP INFO while the engine serves the call."""

    def path(self) -> tuple[str, ...]:
        """The dial-plan steps taken, for the CDR."""


class CallState(enum.Enum):
    RINGING = "ringing"  # not answered yet (outbound legs pending, or a controller deciding)
    SERVING = "serving"  # answered by the engine itself (prompts, voicemail); may ring legs
    ANSWERED = "answered"  # bridged
    ENDED = "ended"  # final answer given or BYE sent; only lingering legs may remain


class LegState(enum.Enum):
    CALLING = "calling"
    EARLY = "early"
    ANSWERED = "answered"
    ENDED = "ended"


@dataclass(eq=False, slots=True)
class _Pending:
    """An in-dialog request forwarded to the other side, waiting for that side's final response."""

    origin: ServerTransaction | None  # None: a request we originated (a session refresh)
    side: _Side
    offer: bool  # it carried SDP that we rewrote
    guard: TimerHandle | None = None  # a forwarded re-INVITE gets 64*T1 for its final (like Timer C)


@dataclass(eq=False, slots=True)
class _Side:
    """One bridged dialog of an answered call (caller side or callee side)."""

    call: Call
    dialog: Dialog
    #: the INVITE usage of the dialog: 2xx/ACK, glare, offer/answer and session-timer rules and deadlines
    session: InviteSession
    rewriter: SdpRewriter
    relay_index: int  # 0: relay side "a" (caller), 1: relay side "b" (callee)
    last_sdp: bytes = b""  # the last SDP we sent this side
    remote_sdp: bytes = b""  # the last SDP this side sent us, without its o= line (see _sdp_key)
    ack_seq: int = -1  # the CSeq of the INVITE whose 2xx from this side we ACK (or still must)
    timer: TimerHandle | None = None  # armed for session.get_timer() (see CallManager._sync)
    timer_at: float | None = None
    refresh_method: str = ""  # UPDATE or INVITE: how we refresh the session when we are the refresher

    @property
    def other(self) -> _Side:
        call = self.call
        assert call.caller_side is not None and call.callee_side is not None
        return call.callee_side if self is call.caller_side else call.caller_side


@dataclass(eq=False, slots=True)
class OutLeg:
    """One branch being rung: a client INVITE transaction, then (when it answers) the callee dialog."""

    call: Call
    branch: Branch
    request: Request
    tx: ClientTransaction
    started_at: float
    state: LegState = LegState.CALLING
    status: int = 0
    reason: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    provisional: bool = False
    cancel_pending: bool = False
    cancel_reason: str | None = None
    cancelled: bool = False
    auth_tried: bool = False
    guard: TimerHandle | None = None
    round: int = 0  # the call's ring round that sent it

    def record(self, wall_of: Callable[[float], float]) -> LegRecord:
        return LegRecord(target=self.branch.uri, started_at=wall_of(self.started_at),
                         answered_at=None if self.answered_at is None else wall_of(self.answered_at),
                         ended_at=wall_of(self.ended_at if self.ended_at is not None else self.started_at),
                         status=self.status)


@dataclass(eq=False, slots=True)
class Call:
    """One call: the caller's INVITE, its outbound legs, and once answered the two bridged sides."""

    id: str
    info: CallInfo
    invite: Request
    tx: ServerTransaction
    caller_peer: Peer
    destination: Destination
    local_tag: str
    contact: str
    started_at: float
    offer: SessionDescription | None
    relay: RelaySession | None
    caller_rewriter: SdpRewriter
    callee_rewriter: SdpRewriter
    callee_sdp: bytes
    state: CallState = CallState.RINGING
    legs: list[OutLeg] = field(default_factory=list)
    caller_side: _Side | None = None
    callee_side: _Side | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    final_status: int = 0
    disposition: Disposition | None = None
    cause: str = ""
    timers: list[TimerHandle] = field(default_factory=list)
    early_sdp_sent: bytes = b""
    ringing_sent: bool = False
    caller_session_expires: int = 0
    controller: CallController | None = None
    ring_active: bool = False  # a ring round is under way
    round: int = 0
    ring_timer: TimerHandle | None = None
    media_ready: bool = False  # the relay is open (or media released) and callee_sdp built
    #: how the last ring round ended (status, reason, disposition, cause): the caller's answer when the
    #: flow has nothing else to offer (``end_as_rung``)
    ring_outcome: tuple[int, str | None, Disposition, str] | None = None


CdrSink = Callable[[CallRecord], None]


class CallManager:
    """The transaction user for calls. See the module docstring."""

    def __init__(self, endpoint: SipEndpoint, scheduler: Scheduler, flush: Callable[[], None],
                 relay: RtpRelay | None, media_host: str, cdr_sink: CdrSink, clock: Clock, *,
                 max_call_seconds: float = DEFAULT_MAX_CALL_S) -> None:
        self.endpoint = endpoint
        self.scheduler = scheduler
        self.flush = flush
        self.relay = relay
        self.media_host = media_host
        self.cdr_sink = cdr_sink
        self.clock = clock
        self.max_call_seconds = max_call_seconds
        self.calls: dict[str, Call] = {}
        self.legs: dict[ClientTransaction, OutLeg] = {}
        self.dialogs: dict[tuple[str, str], _Side] = {}  # (Call-ID, our tag) -> side
        self.by_invite: dict[ServerTransaction, Call] = {}
        self.early: dict[tuple[str, str], Call] = {}  # (Call-ID, our tag) of calls still ringing
        self.pending: dict[ClientTransaction, _Pending] = {}
        #: INVITE client transactions that got a 2xx, until their Timer M: the dialogs formed from it, so
        #: that a retransmitted 2xx gets our ACK again and a forked second 2xx gets ACK + BYE (RFC 6026).
        self.acked: dict[ClientTransaction, ForkedAnswers] = {}
        self._ids = itertools.count(1)
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
        call = Call(id=call_id, info=info, invite=invite, tx=tx, caller_peer=peer, destination=destination,
                    local_tag=local_tag, contact=contact, started_at=now, offer=None, relay=None,
                    caller_rewriter=SdpRewriter(self._session_id()),
                    callee_rewriter=SdpRewriter(self._session_id()), callee_sdp=b"")
        self.calls[call_id] = call
        self.by_invite[tx] = call
        self.early[(invite.call_id, local_tag)] = call
        try:
            self._prepare(call, now)
        except _Reject as rej:
            self._fail(call, rej.status, rej.reason, rej.disposition, rej.reason, now, headers=rej.headers)
            return None
        except SipParseError as exc:
            self._fail(call, exc.status, exc.reason, Disposition.FAILED, exc.reason, now,
                       headers=exc.extra_headers)
            return None
        call.timers.append(self.scheduler.call_at(now + self.max_call_seconds,
                                                  lambda: self._timer(self._max_duration, call)))
        return call

    def ring(self, call: Call, destination: Destination, now: float) -> None:
        """Start a ring round: every branch of ``destination`` in parallel for its ring timeout. A call
        without a controller fails with the best answer when the round ends unanswered."""
        if call.state is CallState.ENDED or call.ring_active:
            return
        call.destination = destination
        if not call.media_ready:
            try:
                self._setup_media(call)
            except _Reject as rej:
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
        self.early.pop((call.invite.call_id, call.local_tag), None)
        self.stats["answered"] += 1
        self._answer_caller(call, sdp, now)

    def end_controlled(self, call: Call, now: float, status: int = 480,
                       reason: str = "Temporarily Unavailable", cause: str = "dial plan hung up",
                       disposition: Disposition | None = None) -> None:
        """The flow ends the call: a final answer when unanswered, else BYE."""
        if call.state is CallState.RINGING:
            self._fail(call, status, reason, disposition or _disposition(status), cause, now)
        else:
            self._hang_up(call, now, cause)

    def end_as_rung(self, call: Call, now: float) -> bool:
        """End an unanswered call with the answer its last ring round got (486 busy, 480 ring timeout...),
        as a call without a flow would have; False when it rang no round or was answered."""
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
            resp.fields.append(Field("warning", _warning(warning)))
        self.endpoint.respond(tx, resp, now)
        self.stats["calls"] += 1
        self.stats["failed"] += 1
        at = self.wall_of(now)
        self._sink(CallRecord(
            call_id=uuid.uuid4().hex, direction=info.direction, caller=info.caller,
            caller_name=info.caller_name, callee=info.callee, did=info.did, trunk=info.trunk, started_at=at,
            answered_at=None, ended_at=at, disposition=disposition, status=status,
            hangup_cause=warning or reason))

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
                self._answer(event.transaction, event.request, 500, now)
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
            pending = self.pending.get(tx)
            if pending is not None:
                self._pending_response(tx, pending, event.response, now)
                return True
            sides = self.acked.get(tx)
            if sides is not None:
                self._another_2xx(tx, sides, event.response, now)
                return True
            return False
        if isinstance(event, RequestReceived):
            req = event.request
            to_tag = _to_tag(req)
            if to_tag is None:
                return False
            side = self.dialogs.get((req.call_id, to_tag))
            if event.transaction is None:  # an ACK for a 2xx
                if side is not None:
                    self._ack_received(side, req, now)
                return True
            if side is None and req.method in NOT_CALL_METHODS:
                return False  # e.g. a REGISTER whose To carries a tag: the registrar's business
            if side is None and req.method == "BYE":
                early = self.early.get((req.call_id, to_tag))
                if early is not None:
                    # §15: a caller may end an early dialog with BYE instead of CANCEL.
                    self._answer(event.transaction, req, 200, now)
                    self._caller_cancelled(early, now)
                    return True
            if side is None:
                self._answer(event.transaction, req, 481, now)
                return True
            self._in_dialog(side, req, event.transaction, now)
            return True
        if isinstance(event, CancelReceived):
            call = self.by_invite.get(event.invite_transaction)
            if call is None:
                return False
            self._caller_cancelled(call, now)
            return True
        if isinstance(event, TransactionTimedOut):
            timed_out = event.transaction
            if isinstance(timed_out, ClientTransaction):
                leg = self.legs.get(timed_out)
                if leg is not None:
                    self._leg_final(leg, 408, now)
                    return True
                pending = self.pending.pop(timed_out, None)
                if pending is not None:
                    self._pending_failed(pending, timed_out.method, 408, now)
                    return True
                return False
            # Our final to the caller was never ACKed (Timer H) or the transport failed: nothing to undo.
            return isinstance(timed_out, ServerTransaction) and timed_out in self.by_invite
        return False

    # -- setting a call up -------------------------------------------------------------------------
    def _prepare(self, call: Call, now: float) -> None:
        """Read the caller's offer, open the relay, build the SDP the branches get."""
        invite = call.invite
        if invite.max_forwards is not None and invite.max_forwards <= 1:
            raise _Reject(483, "Too Many Hops", Disposition.FAILED)
        if not invite.addresses("contact"):
            raise _Reject(400, "Missing Contact", Disposition.FAILED)  # §8.1.1.8: the dialog needs it
        se = self._session_expires_request(invite)
        if se is not None and se < MIN_SE:
            raise _Reject(422, "Session Interval Too Small", Disposition.FAILED, (("Min-SE", str(MIN_SE)),))
        # RFC 4028 §9: we take part when the caller supports timers and refreshes itself (refresher=uac
        # or unset); otherwise the call runs without a session timer (its maximum duration still bounds it).
        value = (invite.get("session-expires") or "").replace(" ", "").lower()
        if se is not None and "timer" in invite.tokens("supported") and "refresher=uas" not in value:
            call.caller_session_expires = se
        if not invite.body:
            # Late offer (RFC 3261 §13.2.1, RFC 6337 §3.1): the branches get an INVITE without SDP, the
            # callee's 2xx carries the offer, and the caller's ACK the answer, which our ACK passes on.
            return
        try:
            offer = filter_codecs(parse_sdp(invite.body))
        except SdpError as exc:
            raise _Reject(400, "Bad SDP", Disposition.FAILED,
                          (("Warning", _warning(f"SDP: {exc}")),)) from None
        if not has_usable_audio(offer):
            raise _Reject(488, "Not Acceptable Here", Disposition.FAILED,
                          (("Warning", '305 pbx "no common codec: PCMU, PCMA"'),))
        call.offer = offer

    def _setup_media(self, call: Call) -> None:
        """Before the first ring round: open the relay (unless the round's destination releases media) and
        build the SDP the branches get. Deferred to here so that a flow's destination decides release."""
        call.media_ready = True
        offer = call.offer
        if offer is None:
            self._open_relay(call)
            return
        relay = self._open_relay(call)
        if relay is None:
            call.callee_sdp = call.callee_rewriter.passthrough(offer)
            return
        addr, port = _audio_address(offer)
        if addr is not None:
            relay.a.set_remote(addr, port)
        call.callee_sdp = call.callee_rewriter.rewrite(offer, self.media_host, _ports(offer, relay.b.port))

    def _open_relay(self, call: Call) -> RelaySession | None:
        """The call's RTP relay session, unless media is released (or the engine runs without a relay).
        A call the engine already answered is anchored whatever the policy: its caller talks to us."""
        if self.relay is None or (call.destination.media_release and call.state is CallState.RINGING):
            return None
        try:
            call.relay = self.relay.open_session()
        except RelayExhausted:
            raise _Reject(503, "Service Unavailable", Disposition.FAILED,
                          (("Warning", _warning("no free media ports")),)) from None
        return call.relay

    def _send_leg(self, call: Call, branch: Branch, now: float, *, auth: tuple[str, str] | None = None,
                  previous: Request | None = None) -> OutLeg:
        ep = self.endpoint
        dest = call.destination
        if previous is None:
            req = Request("INVITE", branch.uri)
            fields = req.fields
            mf = call.invite.max_forwards
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
        leg = OutLeg(call=call, branch=branch, request=req, tx=tx, started_at=now, round=call.round)
        call.legs.append(leg)
        self.legs[tx] = leg
        return leg

    # -- responses on outbound legs ----------------------------------------------------------------
    def _leg_response(self, leg: OutLeg, resp: Response, now: float) -> None:
        status = resp.status
        call = leg.call
        if status < 200:
            leg.provisional = True  # §9.1: any provisional response, 100 Trying included, allows CANCEL
            if leg.cancel_pending:
                self._cancel_leg(leg, now)
                return
            if status == 100:
                return
            if leg.state is LegState.CALLING:
                leg.state = LegState.EARLY
            if call.state is CallState.RINGING:
                self._relay_provisional(call, resp, now)
            return
        if status < 300:
            self._leg_answered(leg, resp, now)
            return
        if (status in (401, 407) and call.destination.credentials is not None and not leg.auth_tried
                and call.ring_active and not leg.cancelled
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
        sdp = self._early_media(call, resp)
        if sdp:
            if sdp == call.early_sdp_sent:
                return
            call.early_sdp_sent = sdp
            out = self._caller_response(call, 183, "Session Progress", sdp)
        else:
            if call.ringing_sent or call.early_sdp_sent:
                return  # a 180 after early media would make the caller stop playing it
            call.ringing_sent = True
            out = self._caller_response(call, 180, "Ringing")
        self.endpoint.respond(call.tx, out, now)

    def _early_media(self, call: Call, resp: Response) -> bytes:
        if not resp.body or call.offer is None or not _is_sdp(resp):
            return b""  # with a late offer, SDP in a provisional would be an offer: not relayed
        try:
            answer = filter_codecs(parse_sdp(resp.body))
        except SdpError:
            return b""
        return self._answer_sdp_for_caller(call, answer)

    def _answer_sdp_for_caller(self, call: Call, answer: SessionDescription) -> bytes:
        relay = call.relay
        if relay is None:
            return call.caller_rewriter.passthrough(answer)
        addr, port = _audio_address(answer)
        if addr is not None:
            relay.b.set_remote(addr, port)
        return call.caller_rewriter.rewrite(answer, self.media_host, _ports(answer, relay.a.port))

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
        side = _Side(call=call, dialog=dialog, session=session, rewriter=call.callee_rewriter, relay_index=1,
                     last_sdp=call.callee_sdp)
        side.ack_seq = leg.request.cseq.seq
        self._remember_ack(leg.tx, side, now)
        current = call.ring_active and not leg.cancelled and leg.round == call.round
        late_offer = call.offer is None and current
        if not late_offer:
            self._send_ack(side, dialog.ack(side.ack_seq))
        if not current:
            # Another branch won, or the caller gave up: this answer came too late. ACK it, then BYE it.
            self._release_leg(leg, now, resp.status)
            self._send_bye(side, now)
            return
        leg.state = LegState.ANSWERED
        leg.status = resp.status
        leg.answered_at = now
        self._release_leg(leg, now, resp.status, ended=False)
        try:
            answer = filter_codecs(parse_sdp(resp.body))
            sdp = self._answer_sdp_for_caller(call, answer)
            side.remote_sdp = _sdp_key(resp.body)
        except SdpError as exc:
            logger.info("call %s: bad SDP in the answer of %s: %s", call.id, leg.branch.uri, exc)
            self._send_bye(side, now)
            self._fail(call, 502, "Bad Gateway", Disposition.FAILED, "callee answered with bad SDP", now)
            return
        if late_offer and not has_usable_audio(answer):
            # §13.2.2.4: even an offer we cannot take gets an answer in the ACK (every stream rejected,
            # port 0, as filter_codecs left them) before the BYE.
            self._send_late_ack(side, call.callee_rewriter.passthrough(answer))
            self._send_bye(side, now)
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
        self._refresher_from_callee(side, resp, now)
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
            caller.session.send_invite(with_offer=True)
            reinvite = caller.dialog.request("INVITE", sdp, "application/sdp")
            ctx = self.endpoint.send_request(reinvite, caller.dialog.peer, now)
            self.pending[ctx] = _Pending(origin=None, side=side, offer=False)
            self._sync(caller, now)
        else:
            call.answered_at = now
            self.early.pop((call.invite.call_id, call.local_tag), None)
            self.stats["answered"] += 1
            self._answer_caller(call, sdp, now)
        self._sync(side, now)
        if call.controller is not None:
            call.controller.bridged(call, now)

    def _answer_caller(self, call: Call, sdp: bytes, now: float) -> _Side:
        """Send the caller our 200 with ``sdp`` and make its dialog the caller side of the call."""
        caller_dialog = Dialog.as_uas(call.invite, call.local_tag, call.contact, call.caller_peer)
        session = InviteSession.uas(caller_dialog, self.endpoint.config.timers,
                                    reliable=caller_dialog.peer.reliable,
                                    offer_received=bool(call.invite.body))
        caller = _Side(call=call, dialog=caller_dialog, session=session, rewriter=call.caller_rewriter,
                       relay_index=0, last_sdp=sdp)
        call.caller_side = caller
        self.dialogs[(caller_dialog.call_id, caller_dialog.local_tag)] = caller
        caller.remote_sdp = _sdp_key(call.invite.body)
        ok = self._caller_response(call, 200, "OK", sdp)
        if call.caller_session_expires:
            ok.fields.append(Field("session-expires", f"{call.caller_session_expires};refresher=uac"))
            ok.fields.append(Field("require", "timer"))
            # The caller refreshes (refresher=uac); without a refresh in time the call ends (RFC 4028 §10).
            session.expect_refresh(call.caller_session_expires, now)
        self.endpoint.respond(call.tx, ok, now)
        self.by_invite.pop(call.tx, None)
        self._sent_2xx(caller, ok, now, with_offer=not call.invite.body)
        return caller

    def _remember_ack(self, tx: ClientTransaction, side: _Side, now: float) -> None:
        """Keep what answering further 2xx of ``tx`` needs until its Timer M: a small memo per dialog, not
        the call (thousands of finished calls held for 32 s made the GC's passes long)."""
        memo = side.session.remember_ack(side.ack_seq)
        forks = self.acked.get(tx)
        if forks is None:
            self.acked[tx] = ForkedAnswers([memo])
            at = now + self.endpoint.config.timers.timeout  # Timer M: the transaction passes 2xx up till then
            self.scheduler.call_at(at, lambda: self.acked.pop(tx, None))
        else:
            forks.add(memo)

    def _send_ack(self, side: _Side, ack: Request, *, with_answer: bool = False) -> None:
        data = self.endpoint.send_ack(ack, side.dialog.peer)
        side.session.sent_ack(side.ack_seq, data, with_answer=with_answer)

    def _another_2xx(self, tx: ClientTransaction, forks: ForkedAnswers, resp: Response, now: float) -> None:
        """A 2xx after the first on the same INVITE transaction: a retransmission (same To tag) gets the same
        ACK again; a 2xx from another fork (new To tag) gets an ACK and a BYE (RFC 3261 §13.2.2.4)."""
        if not 200 <= resp.status < 300:
            return
        tag = _to_tag(resp)
        if not forks.is_new_fork(tag):
            data = forks.ack_again(tag, resp.cseq.seq)
            if data is not None:
                self.endpoint.send_raw(data, tx.peer)
            return
        if tx.method != "INVITE" or not isinstance(tx.request, Request):
            return
        try:
            dialog = Dialog.as_uac(tx.request, resp, tx.peer)
        except SipParseError:
            return
        seq = resp.cseq.seq
        data = self.endpoint.send_ack(dialog.ack(seq), dialog.peer)
        forks.add(AckMemo(dialog.remote_tag, seq, data))
        self.endpoint.send_request(dialog.request("BYE"), dialog.peer, now)

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
            self._ring_over(call, status, resp.reason if resp is not None else None, _disposition(status),
                            f"{status} {resp.reason if resp is not None else ''}".strip(), now)
            return
        this_round = [other for other in call.legs if other.round == call.round]
        if any(other.state in (LegState.CALLING, LegState.EARLY) for other in this_round):
            return
        best = _best_status([other.status for other in this_round])
        reason = next((o.reason for o in this_round if o.status == best and o.reason), None)
        self._ring_over(call, best, reason, _disposition(best), f"{best} {reason or ''}".strip(), now)

    def _release_leg(self, leg: OutLeg, now: float, status: int, *, ended: bool = True) -> None:
        """The leg's INVITE transaction is done (final response or timeout): stop tracking it."""
        self.legs.pop(leg.tx, None)
        if leg.guard is not None:
            leg.guard.cancel()
            leg.guard = None
        if leg.status == 0 or ended:
            leg.status = status
        if ended and leg.state is not LegState.ANSWERED:
            leg.state = LegState.ENDED
            leg.ended_at = now
        self._maybe_forget(leg.call)

    def _drop_leg(self, leg: OutLeg, now: float, status: int) -> None:
        """A leg replaced by its authenticated retry: not part of the call's record."""
        self._release_leg(leg, now, status)
        if leg in leg.call.legs:
            leg.call.legs.remove(leg)

    def _cancel_leg(self, leg: OutLeg, now: float, reason: str | None = None) -> None:
        if leg.state not in (LegState.CALLING, LegState.EARLY) or leg.cancelled:
            return
        if leg.guard is None:
            # §9.1: if the INVITE gets no final response within 64*T1 of the CANCEL, give the leg up.
            guard_at = now + self.endpoint.config.timers.timeout
            leg.guard = self.scheduler.call_at(guard_at, lambda: self._timer(self._leg_abandoned, leg))
        if not leg.provisional:
            # §9.1: no CANCEL before a provisional response; it goes out when one arrives (else Timer B or
            # the guard above ends the leg).
            leg.cancel_pending = True
            leg.cancel_reason = reason
            return
        leg.cancelled = True
        leg.cancel_pending = False
        self.endpoint.cancel(leg.tx, now, reason or leg.cancel_reason)

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

    def _caller_response(self, call: Call, status: int, reason: str, sdp: bytes = b"") -> Response:
        out = make_response(call.invite, status, reason, to_tag=call.local_tag)
        fields = out.fields
        for f in call.invite.fields:
            if f.name == "record-route":
                fields.append(f)
        fields.append(Field("contact", call.contact))
        if status >= 200:
            fields.append(Field("allow", ALLOW))
            fields.append(Field("supported", SUPPORTED))
        if sdp:
            fields.append(Field("content-type", "application/sdp"))
            out.body = sdp
        return out

    def _fail(self, call: Call, status: int, reason: str | None, disposition: Disposition, cause: str,
              now: float, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Give the caller a final non-2xx answer and end the call."""
        if call.state is CallState.ENDED:
            return
        call.state = CallState.ENDED
        call.ring_active = False
        for leg in call.legs:
            self._cancel_leg(leg, now)  # nobody else rings for a call that is over
        resp = make_response(call.invite, status, reason, to_tag=call.local_tag)
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

    # -- the INVITE sessions of the two sides ------------------------------------------------------
    def _sent_2xx(self, side: _Side, ok: Response, now: float, *, with_offer: bool) -> None:
        """Our 2xx to an INVITE from ``side`` is out: its session resends it until the ACK (§13.3.1.4)."""
        data = b"" if side.session.reliable else ok.serialize()
        side.session.sent_2xx(data, now, with_offer=with_offer)
        self._sync(side, now)

    def _sync(self, side: _Side, now: float) -> None:
        """Send what ``side``'s session queued, act on its events, and keep its one timer on its deadline."""
        session = side.session
        for data in session.datagrams_to_send():
            self.endpoint.send_raw(data, side.dialog.peer)
        while (event := session.next_event()) is not None:
            if event is SessionEvent.ACK_TIMED_OUT:
                # §13.3.1.4: no ACK within 64*T1: the dialog is confirmed and then ended with a BYE.
                self._hang_up(side.call, now, "no ACK for the 2xx", disposition=Disposition.FAILED)
            elif event is SessionEvent.SESSION_EXPIRED:
                self._hang_up(side.call, now, "session timer expired")
            elif event is SessionEvent.REFRESH_DUE:
                self._send_refresh(side, now)
        at = None if side.call.state is CallState.ENDED else session.get_timer()
        if at == side.timer_at:
            return
        if side.timer is not None:
            side.timer.cancel()
        side.timer_at = at
        side.timer = None if at is None else self.scheduler.call_at(
            at, lambda: self._timer(self._side_timer, side))

    def _side_timer(self, side: _Side, now: float) -> None:
        side.timer = None
        side.timer_at = None
        if side.call.state is CallState.ENDED:
            return
        side.session.handle_timer(now)
        self._sync(side, now)

    def _ack_received(self, side: _Side, ack: Request, now: float) -> None:
        side.session.receive_ack(has_answer=bool(ack.body))
        self._sync(side, now)
        call = side.call
        callee = call.callee_side
        if side is not call.caller_side or callee is None or callee.session.state is not \
                SessionState.ACK_PENDING or call.state is not CallState.ANSWERED:
            return
        # Late offer: the caller's ACK carries the answer; our ACK to the callee passes it on.
        try:
            answer = filter_codecs(parse_sdp(ack.body)) if ack.body else None
        except SdpError:
            answer = None
        if answer is None:
            self._send_late_ack(callee, b"")
            self._hang_up(call, now, "no SDP answer in the caller's ACK")
            return
        side.remote_sdp = _sdp_key(ack.body)
        callee.last_sdp = self._sdp_towards(callee, answer)
        self._send_late_ack(callee, callee.last_sdp)

    def _send_late_ack(self, side: _Side, body: bytes) -> None:
        self._send_ack(side, side.dialog.ack(side.ack_seq, body), with_answer=bool(body))

    # -- in-dialog requests ------------------------------------------------------------------------
    def _in_dialog(self, side: _Side, req: Request, tx: ServerTransaction, now: float) -> None:
        status = side.dialog.check_request(req)
        if status is not None:
            self._answer(tx, req, status, now)
            return
        method = req.method
        call = side.call
        if method == "BYE":
            self._answer(tx, req, 200, now)
            who = "caller" if side is call.caller_side else "callee"
            self._hang_up(call, now, f"{who} hung up", from_side=side)
        elif method in ("INVITE", "UPDATE"):
            self._offer_in_dialog(side, req, tx, now)
        elif method == "OPTIONS":
            self._answer(tx, req, 200, now)
        elif method == "INFO":
            if call.callee_side is None:
                self._answer(tx, req, 200, now)  # the engine serves the call: DTMF for the flow
                key = _info_dtmf(req)
                if key is not None and call.controller is not None:
                    call.controller.dtmf(call, key)
            else:
                self._forward(side, req, tx, now, body=req.body)
        else:
            self._answer(tx, req, 405 if method in ("REFER", "MESSAGE", "NOTIFY", "PRACK") else 501, now)

    def _offer_in_dialog(self, side: _Side, req: Request, tx: ServerTransaction, now: float) -> None:
        """re-INVITE / UPDATE: a session refresh (no SDP, or the same SDP version) is answered here; a new
        offer (hold, resume, codec change) goes to the other side with our addresses in it. The session of
        ``side`` refuses what its state does not allow (491 glare, 500 overlap)."""
        session = side.session
        is_invite = req.method == "INVITE"
        has_offer = bool(req.body)
        if is_invite:
            status = session.receive_invite(now, has_offer=has_offer)
        else:
            status = session.receive_update(now, has_offer=has_offer)
        if status is not None:
            resp = make_response(req, status, to_tag=side.dialog.local_tag)
            if status == 500:
                resp.fields.append(Field("retry-after", str(RETRY_AFTER_S)))
            self._respond(tx, resp, now)
            return
        self._sync(side, now)  # a refresh moved the expiry; an INVITE stopped our 2xx retransmissions
        if side.call.callee_side is None:
            # The engine itself serves the call: our session stays as it is (hold is not acted upon).
            self._answer_locally(side, req, tx, now)
            return
        offer: SessionDescription | None = None
        if req.body:
            try:
                offer = filter_codecs(parse_sdp(req.body))
            except SdpError as exc:
                resp = make_response(req, 488, to_tag=side.dialog.local_tag)
                resp.fields.append(Field("warning", _warning(f"SDP: {exc}")))
                self._respond(tx, resp, now)
                self._refused(side, req.method, offer=has_offer)
                return
        key = _sdp_key(req.body)
        if offer is None or key == side.remote_sdp:
            # A session refresh: no offer, or the same session (compared without o=: some phones do not
            # bump the version, others bump it on every refresh).
            self._answer_locally(side, req, tx, now)
            return
        other = side.other
        if not (other.session.can_send_invite() if is_invite else other.session.offer is OfferState.STABLE):
            # The other side has an INVITE or an offer of its own open: the offers crossed (§14.1).
            self._respond(tx, make_response(req, 491, to_tag=side.dialog.local_tag), now)
            self._refused(side, req.method, offer=True)
            return
        side.remote_sdp = key
        relay = side.call.relay
        if relay is None:
            body = other.rewriter.passthrough(offer)
        else:
            addr, port = _audio_address(offer)
            if addr is not None:
                (relay.a if side.relay_index == 0 else relay.b).set_remote(addr, port)
            port_other = (relay.a if other.relay_index == 0 else relay.b).port
            body = other.rewriter.rewrite(offer, self.media_host, _ports(offer, port_other))
        other.last_sdp = body
        self._forward(side, req, tx, now, body=body, offer=True)

    @staticmethod
    def _refused(side: _Side, method: str, *, offer: bool) -> None:
        """We answered ``side``'s re-INVITE/UPDATE with a failure: its offer is void (RFC 3264 §8)."""
        session = side.session
        if method == "INVITE":
            if session.state is SessionState.INVITE_IN:
                session.sent_final()
        elif offer and session.offer is OfferState.REMOTE_OFFER:
            session.offer_input(OfferInput.REJECTED)

    def _answer_locally(self, side: _Side, req: Request, tx: ServerTransaction, now: float) -> None:
        resp = make_response(req, 200, to_tag=side.dialog.local_tag)
        resp.fields.append(Field("contact", side.dialog.local_contact))
        interval = side.session.peer_refresh_interval
        if interval:
            resp.fields.append(Field("session-expires", f"{interval};refresher=uac"))
            resp.fields.append(Field("require", "timer"))
        if side.last_sdp and (req.method == "INVITE" or req.body):
            # An INVITE without SDP asks for our offer; an UPDATE without SDP must get none (RFC 3311).
            resp.fields.append(Field("content-type", "application/sdp"))
            resp.body = side.last_sdp
        self._respond(tx, resp, now)
        if req.method == "INVITE":
            self._sent_2xx(side, resp, now, with_offer=bool(resp.body) and not req.body)
        elif req.body and side.session.offer is OfferState.REMOTE_OFFER:
            side.session.offer_input(OfferInput.SEND_ANSWER if resp.body else OfferInput.REJECTED)

    def _forward(self, side: _Side, req: Request, tx: ServerTransaction, now: float, *, body: bytes,
                 offer: bool = False) -> None:
        other = side.other
        if req.method == "INVITE":
            other.session.send_invite(with_offer=bool(body))
        elif offer:
            other.session.offer_input(OfferInput.SEND_OFFER)
        out = other.dialog.request(req.method, body, req.get("content-type"))
        for name in ("content-disposition", "info-package", "recv-info"):
            value = req.get(name)
            if value is not None:
                out.fields.append(Field(name, value))
        ctx = self.endpoint.send_request(out, other.dialog.peer, now)
        pending = _Pending(origin=tx, side=side, offer=offer)
        self.pending[ctx] = pending
        if req.method == "INVITE":
            at = now + self.endpoint.config.timers.timeout
            pending.guard = self.scheduler.call_at(at, lambda: self._timer(self._pending_expired, ctx))
            self._sync(other, now)  # our INVITE stops the retransmissions of a 2xx still waiting for its ACK

    def _pending_expired(self, ctx: ClientTransaction, now: float) -> None:
        """A forwarded re-INVITE that only ever got provisional answers: CANCEL it, 408 to its sender."""
        pending = self.pending.pop(ctx, None)
        if pending is None:
            return
        pending.guard = None
        self._give_up_invite(ctx, now)
        self._pending_failed(pending, "INVITE", 408, now)

    def _pending_failed(self, pending: _Pending, method: str, status: int, now: float) -> None:
        """A forwarded request (or one of ours) ended without a final response: both sessions move on."""
        target = pending.side.other
        if method == "INVITE":
            target.session.invite_final(status, has_answer=False)
        elif pending.offer and target.session.offer is OfferState.LOCAL_OFFER:
            target.session.offer_input(OfferInput.REJECTED)
        origin = pending.origin
        if origin is not None and origin.request is not None:
            self._answer(origin, origin.request, status, now)
            self._refused(pending.side, method, offer=pending.offer)

    def _give_up_invite(self, ctx: ClientTransaction, now: float) -> None:
        """CANCEL a re-INVITE of ours that is still open, and forget its transaction if even the CANCEL
        brings no final response within 64*T1 (§9.1)."""
        if self.endpoint.cancel(ctx, now) is None:
            return

        def abandon(_now: float) -> None:
            if ctx.state in (TransactionState.CALLING, TransactionState.PROCEEDING):
                self.endpoint.abandon(ctx)

        at = now + self.endpoint.config.timers.timeout
        self.scheduler.call_at(at, lambda: self._timer(abandon, None))

    def _pending_response(self, ctx: ClientTransaction, pending: _Pending, resp: Response,
                          now: float) -> None:
        side = pending.side
        other = side.other
        if resp.status < 200:
            return
        self.pending.pop(ctx, None)
        if pending.guard is not None:
            pending.guard.cancel()
            pending.guard = None
        is_invite = ctx.method == "INVITE"
        ok = resp.status < 300
        if is_invite:
            other.session.invite_final(resp.status, has_answer=bool(resp.body))
            if ok:
                # Our ACK for this 2xx, resent for each of its retransmissions while the transaction lives.
                other.dialog.refresh_target(resp)
                other.ack_seq = ctx.request.cseq.seq
                self._remember_ack(ctx, other, now)
                self._send_ack(other, other.dialog.ack(other.ack_seq))
            self._sync(other, now)
        elif pending.offer and other.session.offer is OfferState.LOCAL_OFFER:
            other.session.offer_input(OfferInput.RECV_ANSWER if ok and resp.body else OfferInput.REJECTED)
        origin = pending.origin
        if side.call.state is not CallState.ANSWERED or origin is None:
            return
        request = origin.request
        if request is None:
            return
        out = make_response(request, resp.status, resp.reason, to_tag=side.dialog.local_tag)
        if ok:
            interval = side.session.peer_refresh_interval
            if interval:
                out.fields.append(Field("session-expires", f"{interval};refresher=uac"))
                out.fields.append(Field("require", "timer"))
            if pending.offer and resp.body:
                try:
                    answer = filter_codecs(parse_sdp(resp.body))
                except SdpError:
                    answer = None
                if answer is not None:
                    other.remote_sdp = _sdp_key(resp.body)
                    out.body = self._sdp_towards(side, answer)
                    side.last_sdp = out.body
                    out.fields.append(Field("content-type", "application/sdp"))
            elif resp.body:
                out.body = resp.body
                ctype = resp.get("content-type")
                if ctype:
                    out.fields.append(Field("content-type", ctype))
            out.fields.append(Field("contact", side.dialog.local_contact))
        self._respond(origin, out, now)
        if not ok:
            self._refused(side, ctx.method, offer=pending.offer)
        elif is_invite:
            self._sent_2xx(side, out, now, with_offer=False)
        elif pending.offer and side.session.offer is OfferState.REMOTE_OFFER:
            side.session.offer_input(OfferInput.SEND_ANSWER if out.body else OfferInput.REJECTED)

    def _sdp_towards(self, side: _Side, answer: SessionDescription) -> bytes:
        """``answer`` from the other side, as ``side`` should see it."""
        relay = side.call.relay
        if relay is None:
            return side.rewriter.passthrough(answer)
        other_relay = relay.b if side.relay_index == 0 else relay.a
        addr, port = _audio_address(answer)
        if addr is not None:
            other_relay.set_remote(addr, port)
        mine = (relay.a if side.relay_index == 0 else relay.b).port
        return side.rewriter.rewrite(answer, self.media_host, _ports(answer, mine))

    # -- session timers (RFC 4028) -----------------------------------------------------------------
    @staticmethod
    def _session_expires_request(req: Request) -> int | None:
        value = req.get("session-expires")
        if value is None:
            return None
        try:
            return int(value.split(";", 1)[0].strip())
        except ValueError:
            raise SipParseError(400, "Bad Session-Expires header", message=req) from None

    def _refresher_from_callee(self, side: _Side, resp: Response, now: float) -> None:
        """The callee's 2xx may make us the refresher (Session-Expires ...;refresher=uac): send a refresh
        (UPDATE without SDP when allowed, else re-INVITE with the same SDP) every half interval."""
        value = resp.get("session-expires")
        if value is None or "refresher=uac" not in value.replace(" ", "").lower():
            return
        try:
            seconds = int(value.split(";", 1)[0].strip())
        except ValueError:
            return
        allow = {t.upper() for t in resp.tokens("allow")} if resp.has("allow") else set()
        side.refresh_method = "UPDATE" if "UPDATE" in allow else "INVITE"
        side.session.refresh_as_us(seconds, now)

    def _send_refresh(self, side: _Side, now: float) -> None:
        """REFRESH_DUE: we are the refresher towards ``side``."""
        if side.call.state is not CallState.ANSWERED:
            return
        method = side.refresh_method
        body = side.last_sdp if method == "INVITE" else b""
        if method == "INVITE":
            if not side.session.can_send_invite():
                return  # an INVITE is open on the dialog, which refreshes it too; the next is due in SE/2
            side.session.send_invite(with_offer=bool(body))
        req = side.dialog.request(method, body, "application/sdp" if body else None)
        req.fields.append(Field("session-expires", f"{side.session.interval};refresher=uac"))
        ctx = self.endpoint.send_request(req, side.dialog.peer, now)
        self.pending[ctx] = _Pending(origin=None, side=side.other, offer=False)

    # -- ending ------------------------------------------------------------------------------------
    def _hang_up(self, call: Call, now: float, cause: str, from_side: _Side | None = None,
                 disposition: Disposition = Disposition.ANSWERED) -> None:
        """End an answered call: BYE every side that did not send the BYE itself."""
        if call.state not in (CallState.ANSWERED, CallState.SERVING):
            return
        call.state = CallState.ENDED
        call.ring_active = False
        for leg in call.legs:
            self._cancel_leg(leg, now)  # a SERVING call may be ringing someone
        for side in (call.caller_side, call.callee_side):
            if side is not None and side is not from_side:
                self._send_bye(side, now)
        call.final_status = 200
        call.disposition = disposition
        call.cause = cause
        call.ended_at = now
        self._end(call)

    def _send_bye(self, side: _Side, now: float) -> None:
        if side.session.state is SessionState.ACK_PENDING:
            self._send_late_ack(side, b"")  # a 2xx still waiting for the caller's answer is ACKed first
        bye = side.dialog.request("BYE")
        self.endpoint.send_request(bye, side.dialog.peer, now)
        side.session.end()

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
            if side is None:
                continue
            if side.timer is not None:
                side.timer.cancel()
            side.timer = side.timer_at = None
            side.session.end()
            self.dialogs.pop((side.dialog.call_id, side.dialog.local_tag), None)
        if call.relay is not None:
            call.relay.close()
        self.by_invite.pop(call.tx, None)
        self.early.pop((call.invite.call_id, call.local_tag), None)
        for ctx in [c for c, p in self.pending.items() if p.side.call is call]:
            pending = self.pending.pop(ctx)
            if pending.guard is not None:
                pending.guard.cancel()
                self._give_up_invite(ctx, self.clock.now())
            origin = pending.origin
            if origin is not None and origin.request is not None and origin.state in (
                    TransactionState.PROCEEDING, TransactionState.TRYING):
                # §15.1.2: a request still open when the session ends (a BYE crossed it) gets 487.
                self._answer(origin, origin.request, 487, self.clock.now())
        now_end = call.ended_at if call.ended_at is not None else call.started_at
        for leg in call.legs:
            if leg.ended_at is None and leg.state is LegState.ANSWERED:
                leg.ended_at = now_end
        self._maybe_forget(call)

    def _maybe_forget(self, call: Call) -> None:
        """Drop an ended call once every leg has its final answer, and write its CDR then (so a cancelled
        leg is recorded with its 487, which arrives after the caller already got its answer)."""
        if call.state is CallState.ENDED and not any(self.legs.get(leg.tx) is leg for leg in call.legs) \
                and self.calls.pop(call.id, None) is not None:
            self._write_cdr(call)
            # Break the call <-> leg/side reference cycles so the call is freed by reference counting, not
            # left for the cyclic GC (whose passes over thousands of live calls stall the loop).
            call.legs = []
            call.caller_side = call.callee_side = None

    def wall_of(self, t: float) -> float:
        """A monotonic instant as wall-clock epoch seconds (for records)."""
        return self.clock.wall() - (self.clock.now() - t)

    def _write_cdr(self, call: Call) -> None:
        wall = self.wall_of
        info = call.info
        ended = call.ended_at if call.ended_at is not None else call.started_at
        record = CallRecord(
            call_id=call.id, direction=info.direction, caller=info.caller, caller_name=info.caller_name,
            callee=info.callee, did=info.did, trunk=info.trunk, started_at=wall(call.started_at),
            answered_at=None if call.answered_at is None else wall(call.answered_at), ended_at=wall(ended),
            disposition=call.disposition or Disposition.FAILED, status=call.final_status,
            hangup_cause=call.cause, legs=tuple(leg.record(wall) for leg in call.legs),
            path=call.controller.path() if call.controller is not None else (),
        )
        self._sink(record)

    def _sink(self, record: CallRecord) -> None:
        try:
            self.cdr_sink(record)
        except Exception:
            logger.exception("call %s: writing the CDR failed", record.call_id)

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

    def _answer(self, tx: ServerTransaction, req: Request, status: int, now: float) -> None:
        tag = _to_tag(req) or self.endpoint.new_tag()
        self._respond(tx, make_response(req, status, to_tag=tag), now)

    def _respond(self, tx: ServerTransaction, resp: Response, now: float) -> None:
        if tx.state is TransactionState.TERMINATED:
            return
        self.endpoint.respond(tx, resp, now)

    def _contact(self, peer: Peer) -> str:
        cfg = self.endpoint.config
        suffix = "" if peer.transport == "UDP" else f";transport={peer.transport.lower()}"
        return f"<sip:{cfg.via_host}:{cfg.via_port}{suffix}>"

    def _session_id(self) -> int:
        return self.endpoint.new_session_id()


class _Reject(Exception):
    def __init__(self, status: int, reason: str, disposition: Disposition,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.disposition = disposition
        self.headers = headers


def _warning(text: str) -> str:
    """A Warning header value (RFC 3261 §20.43, code 399 "miscellaneous") whose quoted text is well formed."""
    return '399 pbx "' + text.replace("\\", "").replace('"', "'") + '"'


def _info_dtmf(req: Request) -> str | None:
    """The key of a SIP INFO DTMF body: ``application/dtmf-relay`` ("Signal=5") or ``application/dtmf``
    ("5"); None for anything else."""
    ctype = (req.get("content-type") or "").split(";", 1)[0].strip().lower()
    text = req.body.decode("ascii", "replace")
    if ctype == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value
                break
        else:
            return None
    elif ctype != "application/dtmf":
        return None
    key = text.strip()
    return key if len(key) == 1 and key in "0123456789*#ABCD" else None


def _to_tag(msg: Request | Response) -> str | None:
    try:
        return msg.to.tag
    except SipParseError:
        return None


def _is_sdp(msg: Request | Response) -> bool:
    ctype = msg.get("content-type")
    return ctype is not None and ctype.split(";", 1)[0].strip().lower() == "application/sdp"


def _sdp_key(body: bytes) -> bytes:
    """An SDP body without its o= line: what tells a new offer from a refresh of the same session."""
    return b"\n".join(line.strip() for line in body.splitlines() if not line.startswith(b"o="))


def _audio_address(sdp: SessionDescription) -> tuple[str | None, int]:
    """The connection address and port of the first active audio stream."""
    for m in sdp.media:
        if m.media == "audio" and m.port != 0:
            return m.connection_address(sdp), m.port
    return None, 0


def _ports(sdp: SessionDescription, relay_port: int) -> list[int]:
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


def _best_status(statuses: Sequence[int]) -> int:
    """§16.7 step 6, as a PBX reads it: busy anywhere is busy; otherwise the lowest 4xx, then 5xx; a
    branch that timed out counts as no answer (480)."""
    # A B2BUA cannot pass on a redirect (3xx: no Contact) or a challenge meant for itself (401/407).
    finals = [480 if 300 <= s < 400 else 403 if s in (401, 407) else s for s in statuses if s >= 300]
    if not finals:
        return 480
    if any(s in BUSY for s in finals):
        return 486
    for lo, hi in ((600, 700), (400, 500), (500, 600), (300, 400)):
        cls = [s for s in finals if lo <= s < hi and s != 408]
        if cls:
            return min(cls)
    return 480


def _disposition(status: int) -> Disposition:
    if status in BUSY:
        return Disposition.BUSY
    if status == 487:
        return Disposition.CANCELLED
    if status in (408, 480, 603):
        return Disposition.NO_ANSWER
    if status in (404, 484, 604):
        return Disposition.NOT_FOUND
    if status == 403:
        return Disposition.FORBIDDEN
    return Disposition.FAILED
