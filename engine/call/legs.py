"""The call layer's data: calls, their outbound legs and the two sides of an answered call, with the few
rules every part of the layer shares (the best final answer of a fork, CDR dispositions, DTMF by INFO).

A ``Call`` is the caller's INVITE and what became of it. ``OutLeg`` is one branch being rung (a client INVITE
transaction until it answers). Once answered, the call has two ``Side`` objects, one per dialog (the
caller's, where we are UAS, and the callee's, where we are UAC), each with its ``InviteSession``
(``engine.sip.invite``). ``Pending`` is an in-dialog request passed from one side to the other. Who acts on
them: ``engine.call.b2bua`` (calls and forking), ``engine.call.indialog`` (the answered call's in-dialog
traffic), ``engine.call.anchor`` (media) and ``engine.call.cdr`` (records).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from engine.call.fork import LegState
from engine.media.io import RelayMusic, RelaySession, RelaySide
from engine.model.cdr import CallRecord, Direction, Disposition, LegRecord, QueueVisit
from engine.sip.dialog import Dialog
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.invite import InviteSession
from engine.sip.message import Request, Response, make_response
from engine.sip.sdp import SdpRewriter, SessionDescription
from engine.sip.transaction import ClientTransaction, Peer, ServerTransaction, TransactionState

ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, REGISTER"
SUPPORTED: Final = "timer"
COMPLETED_ELSEWHERE: Final = 'SIP;cause=200;text="Call completed elsewhere"'
DEFAULT_RING_TIMEOUT_S: Final = 30.0  # how long a line rings (pbx serve --ring-timeout)
DEFAULT_MAX_CALL_S: Final = 6 * 3600.0
MIN_SE: Final = 90  # RFC 4028 §5: the smallest Session-Expires we accept
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
    line: str = ""  # the line whose registered phone this is ("" for a trunk): who transfers from it


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


@dataclass(eq=False, slots=True)
class Pending:
    """An in-dialog request we sent to ``target``, waiting for its final response: one passed on from the
    side ``side`` (its server transaction ``origin``), or one of our own (``side`` and ``origin`` None: a
    session refresh, moving a caller onto the relay, hold and resume)."""

    origin: ServerTransaction | None  # None: nobody waits for the answer (ours, or the sender CANCELled)
    side: Side | None  # the side the request came from (None: ours)
    target: Side  # the side it was sent to
    offer: bool  # it carried SDP that we rewrote (an offer passed on)
    guard: TimerHandle | None = None  # a forwarded re-INVITE gets 64*T1 for its final (like Timer C)
    #: told the final status of a request of ours (engine.call.bridging: a hold that was refused)
    done: Callable[[int], None] | None = None
    #: the ``remote_sdp`` of ``side`` before this offer: its session again if the offer fails (RFC 3264 §8)
    previous_sdp: bytes = b""
    #: the ``last_sdp`` of ``target`` before this offer: what it has again if the offer fails
    previous_target_sdp: bytes = b""
    cancelled: bool = False  # its sender CANCELled it (a 2xx may still cross our CANCEL)


@dataclass(eq=False, slots=True)
class Bridge:
    """Connects the media and the in-dialog traffic of the legs in it: a two-party relay bridge.

    Each leg (``Side``) is in at most one bridge. While two legs are in it, RTP relays between their relay
    ports (``RelaySide.connect``) and a re-INVITE, UPDATE or INFO from one goes to the other. A held leg
    stays in its bridge with its media disconnected. Later bridge kinds (the conference mixer, music on
    hold) take the place of the peer here: the legs' media then goes to the engine's own media.
    """

    sides: list[Side] = field(default_factory=list)

    def other(self, side: Side) -> Side | None:
        for member in self.sides:
            if member is not side:
                return member
        return None


@dataclass(eq=False, slots=True)
class Side:
    """A leg of an answered call: one dialog (the caller's, where we are UAS, or a callee's, where we are
    UAC) with its media endpoint, in at most one bridge."""

    call: Call  # the call whose record this leg belongs to
    dialog: Dialog
    #: the INVITE usage of the dialog: 2xx/ACK, glare, offer/answer and session-timer rules and deadlines
    session: InviteSession
    rewriter: SdpRewriter
    media: RelaySide | None  # the leg's relay port (None: media released, or the engine's own media)
    last_sdp: bytes = b""  # the last SDP we sent this side
    remote_sdp: bytes = b""  # the last SDP this side sent us, without its o= line (anchor.sdp_key)
    timer: TimerHandle | None = None  # armed for session.get_timer() (see InDialog.sync)
    timer_at: float | None = None
    refresh_method: str = ""  # UPDATE or INVITE: how we refresh the session when we are the refresher
    bridge: Bridge | None = None
    held: bool = False  # we put this leg on hold (engine.call.bridging): its media is not relayed
    #: this leg's phone holds the call (its offer was sendonly or inactive): its peer hears hold music
    holding: bool = False
    music: RelayMusic | None = None  # the hold music this leg hears while its peer holds
    ended: bool = False  # its dialog is over (BYE sent or received): the leg is gone
    #: told once when the leg ends (engine.call.transfer watches the legs of a transfer in progress)
    on_end: Callable[[float], None] | None = None
    #: the line whose phone is on this leg, once known better than the call says (a transferred leg)
    line: str | None = None

    @property
    def other(self) -> Side | None:
        """The leg this one is bridged with (of this call or, after a transfer, of another), or None."""
        bridge = self.bridge
        return None if bridge is None else bridge.other(self)


@dataclass(eq=False, slots=True)
class OutLeg:
    """One branch being rung: a client INVITE transaction, then (when it answers) the callee dialog."""

    call: Call
    branch: Branch
    invite: Request | None  # our INVITE; dropped once this branch is the bridged callee side
    tx: ClientTransaction
    started_at: float
    state: LegState = LegState.CALLING
    status: int = 0
    reason: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    cancel_reason: str | None = None  # the Reason of our CANCEL (RFC 3326), kept from the first wish
    auth_tried: bool = False  # this leg is the retry with credentials: a second challenge ends it
    guard: TimerHandle | None = None
    round: int = 0  # the call's ring round that sent it

    @property
    def request(self) -> Request:
        """Our INVITE (only asked for while the branch rings); ``Call.request`` is the caller's."""
        assert self.invite is not None, "the INVITE of the bridged branch was dropped"
        return self.invite

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
    #: the caller's INVITE and its offer, kept while the call may still answer or ring (RINGING, SERVING);
    #: dropped once it is bridged (``CallManager`` drops them: a held call keeps only what it still uses)
    invite: Request | None
    caller_call_id: str  # the Call-ID of the caller's dialog
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
    caller_side: Side | None = None
    callee_side: Side | None = None
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
    #: a transfer's call (engine.call.transfer): its caller is a leg of another call already, and
    #: answering it moves that leg here (a re-INVITE) instead of sending a 200; returns that leg
    adopt: Callable[[Call, bytes, float], Side] | None = None
    #: the call queues its caller waited in (monotonic times; engine.call.queuewait), for the CDR
    queue_visits: list[QueueVisit] = field(default_factory=list)

    @property
    def request(self) -> Request:
        """The caller's INVITE (only asked for before the call is bridged)."""
        assert self.invite is not None, "the INVITE of a bridged call was dropped"
        return self.invite


CdrSink = Callable[[CallRecord], None]


class Reject(Exception):
    def __init__(self, status: int, reason: str, disposition: Disposition,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.disposition = disposition
        self.headers = headers


def warning_value(text: str) -> str:
    """A Warning header value (RFC 3261 §20.43, code 399 "miscellaneous") whose quoted text is well formed."""
    return '399 pbx "' + text.replace("\\", "").replace('"', "'") + '"'


def info_dtmf(req: Request) -> str | None:
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


def to_tag(msg: Request | Response) -> str | None:
    try:
        return msg.to.tag
    except SipParseError:
        return None


def is_sdp(msg: Request | Response) -> bool:
    ctype = msg.get("content-type")
    return ctype is not None and ctype.split(";", 1)[0].strip().lower() == "application/sdp"


def respond(endpoint: SipEndpoint, tx: ServerTransaction, resp: Response, now: float) -> None:
    """Send ``resp`` on ``tx`` unless the transaction is over already (a crossing request ended it)."""
    if tx.state is TransactionState.TERMINATED:
        return
    endpoint.respond(tx, resp, now)


def answer(endpoint: SipEndpoint, tx: ServerTransaction, req: Request, status: int, now: float) -> None:
    """Answer ``req`` with a bare ``status``."""
    tag = to_tag(req) or endpoint.new_tag()
    respond(endpoint, tx, make_response(req, status, to_tag=tag), now)
