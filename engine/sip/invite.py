"""INVITE sessions: the dialog-usage rules above the transaction layer, sans-IO (pjsip's ``sip_inv``).

A transaction ends with its final response; the rules of the session an INVITE sets up outlive it, and
they are the same for every call feature, so they live here and not in the call layer:

- **2xx and ACK** (RFC 3261 §13.3.1.4): the UAS core, not the transaction, resends its 2xx (T1 doubling up
  to T2) until the ACK arrives; with no ACK within 64*T1 the session is ended (``ACK_TIMED_OUT``). The UAC
  core ACKs every 2xx itself and sends the same ACK again for each retransmission of that 2xx (§13.2.2.4);
  a 2xx from a second fork of the same INVITE is ACKed and then ended with a BYE (``ForkedAnswers``, RFC 6026
  §7.1: the INVITE client transaction passes such 2xx up until Timer M).
- **Glare** (§14.1, §14.2): one INVITE transaction at a time per dialog. A re-INVITE that arrives while ours
  is open gets 491; one that arrives while an earlier one is unanswered gets 500 (with Retry-After).
- **Offer/answer** (RFC 3264, RFC 3311 §5.2, RFC 6337): STABLE, LOCAL_OFFER, REMOTE_OFFER. A late offer (an
  INVITE without SDP) makes our 2xx the offer and the ACK the answer; an offer that arrives while ours is
  unanswered gets 491, while the peer's previous offer is unanswered 500.
- **Session timers** (RFC 4028 §10): when the peer refreshes, the session expires at the interval minus
  min(32, interval/3) after the last refresh (``SESSION_EXPIRED``); when we refresh, ``REFRESH_DUE`` comes at
  half the interval.

Both tables are data, as the transactions' are. Every (state, input) pair of a remote input is in the table
(a move) or in the refusals (the status to answer with): a peer can never make the session raise. A local
input missing from the table is our own misuse and raises ``LocalProtocolError``.

Nothing here reads a clock or sends: ``now`` is an argument, deadlines are kept on the object
(``get_timer``/``handle_timer``), bytes to resend are queued (``datagrams_to_send``) for the dialog's peer and
events (``next_event``) for the transaction user.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Final

from engine.sip.dialog import Dialog
from engine.sip.errors import LocalProtocolError
from engine.sip.message import Request
from engine.sip.transaction import TimerConfig

logger = logging.getLogger(__name__)

MIN_SE: Final = 90  # RFC 4028 §5: the smallest Session-Expires a UA may ask for
RETRY_AFTER_S: Final = 2  # §14.2: the Retry-After of a 500 to an INVITE that overlaps an earlier one


class Role(enum.Enum):
    UAS = "uas"  # we answered the INVITE that formed the dialog
    UAC = "uac"  # we sent it


class SessionState(enum.Enum):
    ACK_PENDING = "ack-pending"  # UAC: 2xx received; our ACK waits for the answer it must carry (late offer)
    WAIT_ACK = "wait-ack"  # UAS: our 2xx is out and resent until its ACK (§13.3.1.4)
    CONFIRMED = "confirmed"  # no INVITE transaction open in either direction
    INVITE_IN = "invite-in"  # an INVITE from the peer that we have not answered yet
    INVITE_OUT = "invite-out"  # a re-INVITE of ours without its final response yet
    TERMINATED = "terminated"


class SessionInput(enum.Enum):
    # local inputs: our own actions (a missing pair raises LocalProtocolError)
    SEND_2XX = "send-2xx"
    SEND_FINAL = "send-final"  # a non-2xx final response to the peer's INVITE
    SEND_ACK = "send-ack"
    SEND_INVITE = "send-invite"
    END = "end"  # BYE sent or received, or the call is torn down
    # remote inputs: what the peer does (every pair is a move or a refusal)
    RECV_INVITE = "recv-invite"
    RECV_ACK = "recv-ack"
    RECV_FINAL = "recv-final"  # the final response to our re-INVITE (or its timeout, or our CANCEL's 487)
    # timers
    ACK_TIMEOUT = "ack-timeout"


class SessionEvent(enum.Enum):
    ACK_TIMED_OUT = "ack-timed-out"  # §13.3.1.4: no ACK for our 2xx within 64*T1: the TU ends the session
    SESSION_EXPIRED = "session-expired"  # RFC 4028 §10: no refresh in time: the TU sends BYE
    REFRESH_DUE = "refresh-due"  # RFC 4028 §10: we are the refresher and half the interval has passed


S = SessionState
I = SessionInput  # noqa: E741 (the transactions' table spelling)
_LIVE: Final = (S.ACK_PENDING, S.WAIT_ACK, S.CONFIRMED, S.INVITE_IN, S.INVITE_OUT)

#: (state, input) -> next state.
SESSION_TABLE: Final[dict[tuple[SessionState, SessionInput], SessionState]] = {
    (S.INVITE_IN, I.SEND_2XX): S.WAIT_ACK,
    (S.INVITE_IN, I.SEND_FINAL): S.CONFIRMED,
    (S.ACK_PENDING, I.SEND_ACK): S.CONFIRMED,
    # The ACK of the 2xx to a re-INVITE of ours: that 2xx ended the INVITE transaction already.
    (S.CONFIRMED, I.SEND_ACK): S.CONFIRMED,
    (S.CONFIRMED, I.SEND_INVITE): S.INVITE_OUT,
    # Our INVITE while our 2xx waits for its ACK (a B2BUA passing on the other side's re-INVITE, or moving
    # the caller onto a branch that just answered): the peer has a transaction of ours to answer, which shows
    # it alive as the ACK would; the 2xx retransmissions stop (the ACK, when it comes, is absorbed).
    (S.WAIT_ACK, I.SEND_INVITE): S.INVITE_OUT,
    (S.CONFIRMED, I.RECV_INVITE): S.INVITE_IN,
    # An INVITE before the ACK of our last 2xx: the peer has its 2xx (it sends in the dialog), so the ACK
    # was lost or is still on its way; the retransmissions stop and the new INVITE is served.
    (S.WAIT_ACK, I.RECV_INVITE): S.INVITE_IN,
    (S.WAIT_ACK, I.RECV_ACK): S.CONFIRMED,
    (S.WAIT_ACK, I.ACK_TIMEOUT): S.TERMINATED,
    # A retransmitted ACK (or the ACK of a 2xx we did not resend) changes nothing.
    (S.CONFIRMED, I.RECV_ACK): S.CONFIRMED,
    (S.INVITE_IN, I.RECV_ACK): S.INVITE_IN,
    (S.INVITE_OUT, I.RECV_ACK): S.INVITE_OUT,
    (S.ACK_PENDING, I.RECV_ACK): S.ACK_PENDING,
    (S.TERMINATED, I.RECV_ACK): S.TERMINATED,
    (S.INVITE_OUT, I.RECV_FINAL): S.CONFIRMED,
    # A final response to a re-INVITE that no longer matters (the session moved on or ended): absorbed.
    (S.CONFIRMED, I.RECV_FINAL): S.CONFIRMED,
    (S.WAIT_ACK, I.RECV_FINAL): S.WAIT_ACK,
    (S.INVITE_IN, I.RECV_FINAL): S.INVITE_IN,
    (S.ACK_PENDING, I.RECV_FINAL): S.ACK_PENDING,
    (S.TERMINATED, I.RECV_FINAL): S.TERMINATED,
    **{(state, I.END): S.TERMINATED for state in (*_LIVE, S.TERMINATED)},
}

#: (state, remote input) -> the status the request is refused with (the state does not move).
SESSION_REFUSALS: Final[dict[tuple[SessionState, SessionInput], int]] = {
    (S.INVITE_OUT, I.RECV_INVITE): 491,  # §14.2: glare
    # Our ACK (with the answer) is not out yet: as if our INVITE were still open.
    (S.ACK_PENDING, I.RECV_INVITE): 491,
    (S.INVITE_IN, I.RECV_INVITE): 500,  # §14.2: an earlier INVITE is unanswered (Retry-After)
    (S.TERMINATED, I.RECV_INVITE): 481,  # the session is over
}

#: The remote inputs (every state has each of them in the table or in the refusals).
REMOTE_INPUTS: Final = (I.RECV_INVITE, I.RECV_ACK, I.RECV_FINAL)


class OfferState(enum.Enum):
    STABLE = "stable"  # no offer outstanding
    LOCAL_OFFER = "local-offer"  # we sent an offer and wait for the answer
    REMOTE_OFFER = "remote-offer"  # the peer sent an offer we have not answered


class OfferInput(enum.Enum):
    SEND_OFFER = "send-offer"
    SEND_ANSWER = "send-answer"
    RECV_OFFER = "recv-offer"
    RECV_ANSWER = "recv-answer"
    REJECTED = "rejected"  # the request that carried the outstanding offer failed: back to the last session


O = OfferState  # noqa: E741 (as above)
OI = OfferInput

OFFER_TABLE: Final[dict[tuple[OfferState, OfferInput], OfferState]] = {
    (O.STABLE, OI.SEND_OFFER): O.LOCAL_OFFER,
    (O.STABLE, OI.RECV_OFFER): O.REMOTE_OFFER,
    (O.LOCAL_OFFER, OI.RECV_ANSWER): O.STABLE,
    (O.REMOTE_OFFER, OI.SEND_ANSWER): O.STABLE,
    (O.LOCAL_OFFER, OI.REJECTED): O.STABLE,
    (O.REMOTE_OFFER, OI.REJECTED): O.STABLE,
    (O.STABLE, OI.REJECTED): O.STABLE,
    # RFC 3264 §5: an answer without an offer is not one; the body is taken as a description, nothing moves.
    (O.STABLE, OI.RECV_ANSWER): O.STABLE,
    (O.REMOTE_OFFER, OI.RECV_ANSWER): O.REMOTE_OFFER,
}

OFFER_REFUSALS: Final[dict[tuple[OfferState, OfferInput], int]] = {
    (O.LOCAL_OFFER, OI.RECV_OFFER): 491,  # RFC 3311 §5.2 / RFC 6337 §3.2: offers crossed (glare)
    (O.REMOTE_OFFER, OI.RECV_OFFER): 500,  # RFC 3311 §5.2: a new offer before we answered the last one
}

OFFER_REMOTE_INPUTS: Final = (OI.RECV_OFFER, OI.RECV_ANSWER, OI.REJECTED)


@dataclass(eq=False, slots=True)
class AckMemo:
    """Our ACK for one dialog's 2xx (by the INVITE's CSeq): sent again when that 2xx is retransmitted.
    Small on purpose: an INVITE client transaction keeps these until Timer M, not the session."""

    remote_tag: str | None
    seq: int
    data: bytes | None = None  # None until sent (a late offer's ACK waits for the answer)


@dataclass(eq=False, slots=True)
class ForkedAnswers:
    """The 2xx responses one INVITE client transaction has had, until its Timer M (RFC 6026 §7.1).

    A retransmission of a 2xx we ACKed gets that ACK again (``ack_again``); a 2xx from another fork
    (``is_new_fork``) is ACKed by the TU and that dialog ended with a BYE (§13.2.2.4), then recorded
    (``add``).
    """

    memos: list[AckMemo] = field(default_factory=list)

    def add(self, memo: AckMemo) -> None:
        self.memos.append(memo)

    def ack_again(self, remote_tag: str | None, seq: int) -> bytes | None:
        """Our ACK to send again for a retransmitted 2xx (None: not ACKed yet, or another CSeq)."""
        for memo in self.memos:
            if memo.remote_tag == remote_tag:
                return memo.data if memo.seq == seq else None
        return None

    def is_new_fork(self, remote_tag: str | None) -> bool:
        """A 2xx from a dialog this INVITE has not formed yet (§13.2.2.4: ACK it, then BYE)."""
        return all(memo.remote_tag != remote_tag for memo in self.memos)


class InviteSession:
    """The INVITE usage of one dialog, in either role (see the module docstring)."""

    __slots__ = (
        "_events", "_expires_at", "_ok_data", "_ok_deadline", "_ok_interval", "_ok_next", "_out",
        "_refresh_at", "ack_memo", "dialog", "interval", "offer", "reliable", "role", "state", "timers",
        "we_refresh",
    )

    def __init__(
        self, dialog: Dialog, role: Role, timers: TimerConfig, state: SessionState, *, reliable: bool,
        offer: OfferState = OfferState.STABLE,
    ) -> None:
        """Build with ``uas`` or ``uac``."""
        self.dialog = dialog
        self.role = role
        self.timers = timers
        self.state = state
        self.reliable = reliable
        self.offer = offer
        self.ack_memo: AckMemo | None = None  # our ACK for the last 2xx we got (UAC of that INVITE)
        self.interval = 0  # RFC 4028 session interval in seconds; 0: no session timer
        self.we_refresh = False
        self._ok_data: bytes | None = None
        self._ok_next: float | None = None
        self._ok_interval = 0.0
        self._ok_deadline: float | None = None
        self._expires_at: float | None = None
        self._refresh_at: float | None = None
        self._out: list[bytes] = []
        self._events: list[SessionEvent] = []

    @classmethod
    def uas(
        cls, dialog: Dialog, timers: TimerConfig, *, reliable: bool, offer_received: bool
    ) -> InviteSession:
        """The session of an INVITE we are about to answer with a 2xx (``sent_2xx`` follows)."""
        return cls(dialog, Role.UAS, timers, S.INVITE_IN, reliable=reliable,
                   offer=O.REMOTE_OFFER if offer_received else O.STABLE)

    @classmethod
    def uac(cls, dialog: Dialog, timers: TimerConfig, *, reliable: bool, offer_sent: bool) -> InviteSession:
        """The session of a 2xx to our INVITE. With our offer in the INVITE the 2xx carried the answer and the
        ACK goes out at once; without (late offer) the 2xx carried an offer and the ACK must wait for ours."""
        session = cls(dialog, Role.UAC, timers, S.ACK_PENDING, reliable=reliable,
                      offer=O.LOCAL_OFFER if offer_sent else O.STABLE)
        session.offer_input(OI.RECV_ANSWER if offer_sent else OI.RECV_OFFER)
        return session

    # -- the table walk ----------------------------------------------------------------------------
    def _input(self, inp: SessionInput) -> int | None:
        """Move by the table; the refusal status for a remote input the state refuses."""
        key = (self.state, inp)
        new = SESSION_TABLE.get(key)
        if new is None:
            refusal = SESSION_REFUSALS.get(key)
            if refusal is not None:
                return refusal
            raise LocalProtocolError(f"INVITE session: {inp.value!r} not allowed in state {self.state.value}")
        old = self.state
        self.state = new
        if new is not old:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("INVITE session %s;%s: %s -> %s", self.dialog.call_id, self.dialog.local_tag,
                             old.value, new.value)
            if old is S.WAIT_ACK:
                self._stop_ok()
            if new is S.TERMINATED:
                self._stop_ok()
                self._expires_at = self._refresh_at = None
        return None

    def offer_input(self, inp: OfferInput) -> int | None:
        """Move the offer/answer state; the status to refuse a remote offer with, else None.

        Raises:
            LocalProtocolError: we offered or answered out of turn.
        """
        key = (self.offer, inp)
        new = OFFER_TABLE.get(key)
        if new is None:
            refusal = OFFER_REFUSALS.get(key)
            if refusal is not None:
                return refusal
            raise LocalProtocolError(f"offer/answer: {inp.value!r} not allowed in state {self.offer.value}")
        self.offer = new
        return None

    # -- INVITE transactions on the dialog ---------------------------------------------------------
    def receive_invite(self, now: float, *, has_offer: bool) -> int | None:
        """An INVITE from the peer in this dialog: None when it may be served (the session then waits for
        our final answer), else the status to refuse it with (491, 500, 481)."""
        status = self._input_checked(I.RECV_INVITE, OI.RECV_OFFER if has_offer else None)
        if status is None and self.interval and not self.we_refresh:
            self._expires_at = now + self._expiry_delay()  # a re-INVITE is a refresh (RFC 4028 §10)
        return status

    def receive_update(self, now: float, *, has_offer: bool) -> int | None:
        """An UPDATE (RFC 3311): no INVITE transaction, but an offer it carries must fit the offer state."""
        if self.state is S.TERMINATED:
            return 481
        if has_offer:
            status = self.offer_input(OI.RECV_OFFER)
            if status is not None:
                return status
        if self.interval and not self.we_refresh:
            self._expires_at = now + self._expiry_delay()
        return None

    def _input_checked(self, inp: SessionInput, offer: OfferInput | None) -> int | None:
        """A remote request: the session table first, then the offer table; nothing moves on a refusal."""
        if (self.state, inp) in SESSION_REFUSALS:
            return SESSION_REFUSALS[(self.state, inp)]
        if offer is not None and (self.offer, offer) in OFFER_REFUSALS:
            return OFFER_REFUSALS[(self.offer, offer)]
        self._input(inp)
        if offer is not None:
            self.offer_input(offer)
        return None

    def sent_2xx(self, data: bytes, now: float, *, with_offer: bool = False) -> None:
        """Our 2xx to the peer's INVITE is out (``data``, its bytes): resent until the ACK (§13.3.1.4)."""
        self._input(I.SEND_2XX)
        self.offer_input(OI.SEND_ANSWER if self.offer is O.REMOTE_OFFER else
                         OI.SEND_OFFER if with_offer else OI.REJECTED)
        self._ok_deadline = now + self.timers.timeout
        if self.reliable:
            self._ok_data = None
            self._ok_next = None
        else:
            self._ok_data = data
            self._ok_interval = self.timers.t1
            self._ok_next = now + self.timers.t1

    def sent_final(self) -> None:
        """A non-2xx final answer to the peer's re-INVITE: the offer it made is void (RFC 3264 §8)."""
        self._input(I.SEND_FINAL)
        self.offer_input(OI.REJECTED)

    def receive_ack(self, *, has_answer: bool) -> bool:
        """An ACK in the dialog; True when it confirmed our 2xx (a late offer's answer then comes with it)."""
        confirmed = self.state is S.WAIT_ACK
        self._input(I.RECV_ACK)
        if confirmed and self.offer is O.LOCAL_OFFER:
            # An ACK without the answer our 2xx asked for leaves the previous session in place (RFC 3264
            # §8 treats a failed offer so): the dialog must not stay stuck in LOCAL_OFFER, refusing offers.
            self.offer_input(OI.RECV_ANSWER if has_answer else OI.REJECTED)
        return confirmed

    def sent_ack(self, data: bytes, *, with_answer: bool = False) -> None:
        """Our ACK for the 2xx ``remember_ack`` noted is out: kept for that 2xx's retransmissions."""
        self._input(I.SEND_ACK)
        if self.offer is O.REMOTE_OFFER:  # the 2xx offered (late offer): the ACK answers
            self.offer_input(OI.SEND_ANSWER if with_answer else OI.REJECTED)
        if self.ack_memo is not None:
            self.ack_memo.data = data

    def send_invite(self, *, with_offer: bool) -> None:
        """We are about to send a re-INVITE (or a refresh).

        Raises:
            LocalProtocolError: an INVITE transaction is open on the dialog (§14.1), or an offer is
                outstanding.
        """
        if with_offer and self.offer is not O.STABLE:
            raise LocalProtocolError(f"offer/answer: cannot offer in state {self.offer.value}")
        self._input(I.SEND_INVITE)
        if with_offer:
            self.offer_input(OI.SEND_OFFER)

    def can_send_invite(self) -> bool:
        return (self.state, I.SEND_INVITE) in SESSION_TABLE and self.offer is O.STABLE

    def invite_final(self, status: int, *, has_answer: bool) -> None:
        """The final response to our re-INVITE (408 for its timeout, 487 after our CANCEL)."""
        was_out = self.state is S.INVITE_OUT
        self._input(I.RECV_FINAL)
        if not was_out:
            return
        if 200 <= status < 300:
            if self.offer is O.LOCAL_OFFER and has_answer:
                self.offer_input(OI.RECV_ANSWER)
            elif self.offer is O.STABLE and has_answer:
                self.offer_input(OI.RECV_OFFER)  # our INVITE without SDP: its 2xx offers, our ACK answers
        else:
            self.offer_input(OI.REJECTED)

    def remember_ack(self, seq: int) -> AckMemo:
        """The memo our ACK for the 2xx of INVITE ``seq`` goes into (shared with ``ForkedAnswers``)."""
        memo = AckMemo(self.dialog.remote_tag, seq)
        self.ack_memo = memo
        return memo

    def end(self) -> None:
        """BYE sent or received, or the call is torn down: no more timers, events or retransmissions."""
        self._input(I.END)
        self._out.clear()

    # -- our requests on the dialog: the session moves, the dialog builds them (§12.2.1.1) -------------
    def reinvite(self, body: bytes, content_type: str | None = None) -> Request:
        """A re-INVITE of ours (a new offer, or a refresh; none: ask the peer for an offer in its 2xx).

        Raises:
            LocalProtocolError: an INVITE transaction is open on the dialog, or an offer is outstanding.
        """
        self.send_invite(with_offer=bool(body))
        return self.dialog.request("INVITE", body, content_type)

    def update(self, body: bytes = b"", content_type: str | None = None) -> Request:
        """An UPDATE of ours (RFC 3311): with a body, an offer; without, a session refresh.

        Raises:
            LocalProtocolError: an offer is outstanding.
        """
        if self.state is S.TERMINATED:
            raise LocalProtocolError("INVITE session: no UPDATE after the end")
        if body:
            self.offer_input(OI.SEND_OFFER)
        return self.dialog.request("UPDATE", body, content_type)

    def ack(self, body: bytes = b"") -> Request:
        """The ACK for the last 2xx the peer sent to our INVITE (``sent_ack`` records it once sent)."""
        seq = self.ack_memo.seq if self.ack_memo is not None else self.dialog.local_seq
        return self.dialog.ack(seq, body)

    def bye(self) -> Request:
        """Our BYE: the session ends with it (no more retransmissions, timers or events)."""
        self.end()
        return self.dialog.request("BYE")

    @property
    def peer_refresh_interval(self) -> int:
        """The Session-Expires the peer refreshes within (our 2xx repeat it), 0 when it does not."""
        return 0 if self.we_refresh else self.interval

    @property
    def answer_pending(self) -> bool:
        """Our 2xx offered (a late offer): the peer's ACK must carry the answer."""
        return self.offer is O.LOCAL_OFFER and self.role is Role.UAS

    # -- session timers (RFC 4028) -----------------------------------------------------------------
    def expect_refresh(self, interval: int, now: float) -> None:
        """The peer refreshes every ``interval`` seconds; without one the session expires (§10)."""
        self.interval, self.we_refresh = interval, False
        self._refresh_at = None
        self._expires_at = now + self._expiry_delay()

    def refresh_as_us(self, interval: int, now: float) -> None:
        """We refresh: ``REFRESH_DUE`` at half the interval, and again after each ``refreshed``."""
        self.interval, self.we_refresh = max(MIN_SE, interval), True
        self._expires_at = None
        self._refresh_at = now + self.interval / 2

    def _expiry_delay(self) -> float:
        return self.interval - min(32, self.interval / 3)

    # -- timers, output, events --------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """The earliest deadline (2xx retransmission, ACK wait, session expiry or refresh), or None."""
        due = (self._ok_next, self._ok_deadline, self._expires_at, self._refresh_at)
        times = [t for t in due if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Act on every deadline due at ``now``."""
        if self._ok_deadline is not None and now >= self._ok_deadline:
            self._input(I.ACK_TIMEOUT)  # stops the retransmissions
            self._events.append(SessionEvent.ACK_TIMED_OUT)
            return
        if self._ok_next is not None and now >= self._ok_next and self._ok_data is not None:
            self._out.append(self._ok_data)
            self._ok_interval = min(2 * self._ok_interval, self.timers.t2)
            self._ok_next = now + self._ok_interval
        if self._expires_at is not None and now >= self._expires_at:
            self._expires_at = None
            self._events.append(SessionEvent.SESSION_EXPIRED)
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = now + self.interval / 2
            self._events.append(SessionEvent.REFRESH_DUE)

    def datagrams_to_send(self) -> list[bytes]:
        """Bytes to send to the dialog's peer (2xx retransmissions), oldest first."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> SessionEvent | None:
        return self._events.pop(0) if self._events else None

    def _stop_ok(self) -> None:
        self._ok_data = None
        self._ok_next = self._ok_deadline = None
