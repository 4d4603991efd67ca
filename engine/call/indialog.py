"""The answered call's in-dialog traffic: the two sides' INVITE sessions and what passes between them.

Once a call is answered it has two dialogs (``Side``): the caller's, where we are UAS, and the callee's, where
we are UAC. Each has an ``InviteSession`` (``engine.sip.invite``) that owns the rules of its INVITE usage:
2xx retransmission until the ACK, the ACK of every 2xx (again for a retransmission, ACK + BYE for a second
fork, RFC 6026), glare (491/500), the offer/answer state and the session timer. This module drives those
sessions: it arms one timer per side for its session's next deadline (``sync``), passes a re-INVITE or
UPDATE with a new offer to the other side with the SDP rewritten for the media anchor (``Pending`` until its
final response), answers a session refresh itself, passes INFO end to end, and refreshes the session when
the callee made us the refresher. Ending the call is the manager's (``hang_up``); this module calls it when
a session gives up (no ACK, session expired) or a side hangs up.

Music on hold (issue 19): when a phone holds (a new offer whose audio is sendonly or inactive, RFC 3264
§8.4) and both legs are anchored on the relay, its re-INVITE is answered here (recvonly or inactive, the
codec of its choice) instead of being passed on, its relay side is disconnected, and the other leg hears
the company's hold music out of its own relay port (``music``, a ``RelayMusic`` on the media clock): the
other phone is not re-INVITEd and keeps its session. The resume (a sendrecv offer) stops the music,
reconnects the relay and is passed on as any new offer, so both phones agree on the session again; if
that fails, the holder is still holding (its offer is void) and the music goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from engine.call.anchor import MediaAnchor, relay_ports, sdp_key
from engine.call.legs import (
    Call,
    CallState,
    Pending,
    Scheduler,
    Side,
    answer,
    info_dtmf,
    respond,
    to_tag,
    warning_value,
)
from engine.media.io import RelayMusic, RelaySide
from engine.model.cdr import Disposition
from engine.sip.dialog import Dialog
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.invite import (
    RETRY_AFTER_S,
    AckMemo,
    ForkedAnswers,
    OfferInput,
    OfferState,
    SessionEvent,
    SessionState,
)
from engine.sip.message import Field, Request, Response, make_response
from engine.sip.sdp import SdpError, SessionDescription, answer_audio, filter_codecs, parse_sdp
from engine.sip.transaction import ClientTransaction, ServerTransaction, TransactionState

logger = logging.getLogger(__name__)

#: How the manager ends an answered call: (call, now, cause, from_side, disposition).
HangUp = Callable[[Call, float, str, Side | None, Disposition], None]
#: Runs a timer action with the current time (and flushes the transport): (action, its object or None).
RunTimer = Callable[[Callable[..., None], object], None]
#: Starts hold music towards a leg: (its call, its relay side, the SDP we last sent it) -> the music, or
#: None when there is none to play (the leg then hears silence).
MusicOnHold = Callable[[Call, RelaySide, bytes], RelayMusic | None]
#: Takes a REFER from a leg (engine.call.transfer): (the leg, the REFER, its transaction, now).
Refer = Callable[[Side, Request, ServerTransaction, float], None]


def is_hold(offer: SessionDescription) -> bool:
    """Whether ``offer`` holds the call: it has active audio and none of it would receive from us
    (sendonly or inactive, RFC 3264 §8.4)."""
    audio = [m for m in offer.media if m.media == "audio" and m.port != 0]
    return bool(audio) and all(m.effective_direction(offer) in ("sendonly", "inactive") for m in audio)


class InDialog:
    """In-dialog requests and responses of answered calls, and their sides' session timers."""

    def __init__(self, endpoint: SipEndpoint, scheduler: Scheduler, anchor: MediaAnchor, hang_up: HangUp,
                 run_timer: RunTimer) -> None:
        self.endpoint = endpoint
        self.scheduler = scheduler
        self.anchor = anchor
        self._hang_up = hang_up
        self.run_timer = run_timer
        #: music on hold for a leg whose peer holds (set by the composition root; None: the hold offer is
        #: passed on to the other phone, which then hears whatever the holder sends, usually nothing)
        self.music: MusicOnHold | None = None
        #: transfers (set by the composition root; None: a REFER gets 405)
        self.refer: Refer | None = None
        self.pending: dict[ClientTransaction, Pending] = {}
        #: INVITE client transactions that got a 2xx, until their Timer M: the dialogs formed from it, so
        #: that a retransmitted 2xx gets our ACK again and a forked second 2xx gets ACK + BYE (RFC 6026).
        self.acked: dict[ClientTransaction, ForkedAnswers] = {}

    def hang_up(self, call: Call, now: float, cause: str, from_side: Side | None = None,
                disposition: Disposition = Disposition.ANSWERED) -> None:
        self._hang_up(call, now, cause, from_side, disposition)

    def sent_2xx(self, side: Side, ok: Response, now: float, *, with_offer: bool) -> None:
        """Our 2xx to an INVITE from ``side`` is out: its session resends it until the ACK (§13.3.1.4)."""
        data = b"" if side.session.reliable else ok.serialize()
        side.session.sent_2xx(data, now, with_offer=with_offer)
        self.sync(side, now)

    def sync(self, side: Side, now: float) -> None:
        """Send what ``side``'s session queued, act on its events, and keep its one timer on its deadline."""
        session = side.session
        for data in session.datagrams_to_send():
            self.endpoint.send_raw(data, side.dialog.peer)
        while (event := session.next_event()) is not None:
            if event is SessionEvent.ACK_TIMED_OUT:
                # §13.3.1.4: no ACK within 64*T1: the dialog is confirmed and then ended with a BYE.
                self.hang_up(side.call, now, "no ACK for the 2xx", disposition=Disposition.FAILED)
            elif event is SessionEvent.SESSION_EXPIRED:
                self.hang_up(side.call, now, "session timer expired")
            elif event is SessionEvent.REFRESH_DUE:
                self._send_refresh(side, now)
        at = None if side.ended or side.call.state is CallState.ENDED else session.get_timer()
        if at == side.timer_at:
            return
        if side.timer is not None:
            side.timer.cancel()
        side.timer_at = at
        side.timer = None if at is None else self.scheduler.call_at(
            at, lambda: self.run_timer(self._side_timer, side))

    def _side_timer(self, side: Side, now: float) -> None:
        side.timer = None
        side.timer_at = None
        if side.ended or side.call.state is CallState.ENDED:
            return
        side.session.handle_timer(now)
        self.sync(side, now)

    def ack_received(self, side: Side, ack: Request, now: float) -> None:
        side.session.receive_ack(has_answer=bool(ack.body))
        self.sync(side, now)
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
            self.send_late_ack(callee, b"")
            self.hang_up(call, now, "no SDP answer in the caller's ACK")
            return
        side.remote_sdp = sdp_key(ack.body)
        callee.last_sdp = self.anchor.towards(callee, answer, side)
        self.send_late_ack(callee, callee.last_sdp)

    def send_late_ack(self, side: Side, body: bytes) -> None:
        self.send_ack(side, side.session.ack(body), with_answer=bool(body))

    def remember_ack(self, tx: ClientTransaction, side: Side, seq: int, now: float) -> None:
        """Keep what answering further 2xx of ``tx`` (our INVITE with CSeq ``seq``) needs until its Timer M:
        a small memo per dialog, not the call (thousands of finished calls held for 32 s made the GC's
        passes long)."""
        memo = side.session.remember_ack(seq)
        forks = self.acked.get(tx)
        if forks is None:
            self.acked[tx] = ForkedAnswers([memo])
            at = now + self.endpoint.config.timers.timeout  # Timer M: the transaction passes 2xx up till then
            self.scheduler.call_at(at, lambda: self.acked.pop(tx, None))
        else:
            forks.add(memo)

    def send_ack(self, side: Side, ack: Request, *, with_answer: bool = False) -> None:
        data = self.endpoint.send_ack(ack, side.dialog.peer)
        side.session.sent_ack(data, with_answer=with_answer)

    def another_2xx(self, tx: ClientTransaction, forks: ForkedAnswers, resp: Response, now: float) -> None:
        """A 2xx after the first on the same INVITE transaction: a retransmission (same To tag) gets the same
        ACK again; a 2xx from another fork (new To tag) gets an ACK and a BYE (RFC 3261 §13.2.2.4)."""
        if not 200 <= resp.status < 300:
            return
        tag = to_tag(resp)
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

    def request(self, side: Side, req: Request, tx: ServerTransaction, now: float) -> None:
        status = side.dialog.check_request(req)
        if status is not None:
            answer(self.endpoint, tx, req, status, now)
            return
        method = req.method
        call = side.call
        if method == "BYE":
            answer(self.endpoint, tx, req, 200, now)
            who = "caller" if side is call.caller_side else "callee"
            self.hang_up(call, now, f"{who} hung up", from_side=side)
        elif method in ("INVITE", "UPDATE"):
            self._offer_in_dialog(side, req, tx, now)
        elif method == "OPTIONS":
            answer(self.endpoint, tx, req, 200, now)
        elif method == "INFO":
            if side.other is None:
                answer(self.endpoint, tx, req, 200, now)  # the engine serves the leg: DTMF for the flow
                key = info_dtmf(req)
                if key is not None and call.controller is not None:
                    call.controller.dtmf(call, key)
            else:
                self._forward(side, req, tx, now, body=req.body)
        elif method == "REFER" and self.refer is not None:
            self.refer(side, req, tx, now)
        else:
            status = 405 if method in ("REFER", "MESSAGE", "NOTIFY", "PRACK") else 501
            answer(self.endpoint, tx, req, status, now)

    def _offer_in_dialog(self, side: Side, req: Request, tx: ServerTransaction, now: float) -> None:
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
            respond(self.endpoint, tx, resp, now)
            return
        self.sync(side, now)  # a refresh moved the expiry; an INVITE stopped our 2xx retransmissions
        offer: SessionDescription | None = None
        if req.body:
            try:
                offer = filter_codecs(parse_sdp(req.body))
            except SdpError as exc:
                resp = make_response(req, 488, to_tag=side.dialog.local_tag)
                resp.fields.append(Field("warning", warning_value(f"SDP: {exc}")))
                respond(self.endpoint, tx, resp, now)
                self._refused(side, req.method, offer=has_offer)
                return
        key = sdp_key(req.body)
        if offer is None or key == side.remote_sdp:
            # A session refresh: no offer, or the same session (compared without o=: some phones do not
            # bump the version, others bump it on every refresh).
            self._answer_locally(side, req, tx, now)
            return
        other = side.other
        resumed = False
        if other is not None and self._plays_music(side, other):
            if is_hold(offer):
                self._hold_with_music(side, other, req, tx, offer, key, now)
                return
            if side.holding:
                self._stop_music(side, other)
                resumed = True
        if other is None or side.held or other.held or other.holding:
            # Nobody to pass the offer to: the engine serves the leg (prompts), it waits in no bridge, or
            # one end is on hold. Our answer stays our last SDP (a resume while the peer holds gets an
            # answer of its own); the relay port follows the new address.
            side.remote_sdp = key
            self.anchor.follow(side, offer)
            if resumed and not self._answer_of_ours(side, offer):
                self._refuse_offer(side, req, tx, now)
                return
            self._answer_locally(side, req, tx, now)
            return
        if not (other.session.can_send_invite() if is_invite else other.session.offer is OfferState.STABLE):
            # The other side has an INVITE or an offer of its own open: the offers crossed (§14.1).
            respond(self.endpoint, tx, make_response(req, 491, to_tag=side.dialog.local_tag), now)
            self._refused(side, req.method, offer=True)
            return
        previous, previous_other = side.remote_sdp, other.last_sdp
        side.remote_sdp = key
        body = self.anchor.offer_to_other(side, offer)
        other.last_sdp = body
        pending = self._forward(side, req, tx, now, body=body, offer=True)
        pending.previous_sdp, pending.previous_target_sdp = previous, previous_other
        if resumed:
            pending.done = lambda status: self._resume_finished(side, status)

    # -- music on hold (see the module docstring) ---------------------------------------------------------

    def _plays_music(self, side: Side, other: Side) -> bool:
        """Whether a hold from ``side`` is ours to serve: music is configured and both legs are anchored
        (a released call's RTP flows past us) and neither is on the engine's own hold."""
        return (self.music is not None and side.media is not None and other.media is not None
                and not side.held and not other.held)

    def _hold_with_music(self, side: Side, other: Side, req: Request, tx: ServerTransaction,
                         offer: SessionDescription, key: bytes, now: float) -> None:
        """``side`` holds: answer it here, cut its relay side off, and play music to ``other``."""
        if not self._answer_of_ours(side, offer):
            self._refuse_offer(side, req, tx, now)
            return
        side.remote_sdp = key
        self.anchor.follow(side, offer)
        if not side.holding:
            side.holding = True
            assert side.media is not None and other.media is not None and self.music is not None
            side.media.disconnect()
            if other.music is None:
                other.music = self.music(other.call, other.media, other.last_sdp)
        self._answer_locally(side, req, tx, now)

    def _answer_of_ours(self, side: Side, offer: SessionDescription) -> bool:
        """Make ``side.last_sdp`` our answer to its ``offer`` (one G.711 codec, the direction answering
        its own, RFC 3264 §6.1), on its relay port. False when the offer has no codec we carry."""
        answer = answer_audio(offer)
        if answer is None or side.media is None:
            return False
        side.last_sdp = side.rewriter.rewrite(answer.sdp, self.anchor.media_host,
                                              relay_ports(answer.sdp, side.media.port))
        return True

    def _refuse_offer(self, side: Side, req: Request, tx: ServerTransaction, now: float) -> None:
        resp = make_response(req, 488, to_tag=side.dialog.local_tag)
        resp.fields.append(Field("warning", warning_value("no G.711 audio in the offer")))
        respond(self.endpoint, tx, resp, now)
        self._refused(side, req.method, offer=True)

    def _stop_music(self, side: Side, other: Side) -> None:
        """``side`` no longer holds: ``other``'s music stops and the relay joins them again (unless
        ``other`` holds too)."""
        side.holding = False
        if other.music is not None:
            other.music.stop()
            other.music = None
        if not other.holding and side.media is not None and other.media is not None:
            side.media.connect(other.media)

    def _resume_finished(self, side: Side, status: int) -> None:
        """The resume passed on failed: ``side``'s offer is void, so it still holds (music again)."""
        other = side.other
        if 200 <= status < 300 or side.ended or other is None or other.ended or side.holding:
            return
        if not self._plays_music(side, other):
            return
        assert side.media is not None and other.media is not None and self.music is not None
        side.holding = True
        side.media.disconnect()
        if other.music is None:
            other.music = self.music(other.call, other.media, other.last_sdp)

    @staticmethod
    def stop_music(side: Side) -> None:
        """The leg leaves its bridge or ends: no more hold music to it, and its own hold is over."""
        side.holding = False
        if side.music is not None:
            side.music.stop()
            side.music = None

    @staticmethod
    def _refused(side: Side, method: str, *, offer: bool) -> None:
        """We answered ``side``'s re-INVITE/UPDATE with a failure: its offer is void (RFC 3264 §8)."""
        session = side.session
        if method == "INVITE":
            if session.state is SessionState.INVITE_IN:
                session.sent_final()
        elif offer and session.offer is OfferState.REMOTE_OFFER:
            session.offer_input(OfferInput.REJECTED)

    def _pending_refused(self, pending: Pending, method: str) -> None:
        """The offer ``pending`` passed on failed (refused, CANCELled, timed out): its sender's offer is
        void and its session is the one before, so the same offer sent again is passed on again."""
        side = pending.side
        if side is None:
            return
        self._refused(side, method, offer=pending.offer)
        if pending.offer and pending.previous_sdp:
            side.remote_sdp = pending.previous_sdp
            pending.target.last_sdp = pending.previous_target_sdp

    def _revert(self, side: Side, now: float) -> None:
        """A 2xx crossed our CANCEL of an offer its sender withdrew (§9.2): ``side`` now runs a session the
        other end never agreed to, so it is offered the previous one again (``last_sdp``, restored when the
        offer was withdrawn) in a re-INVITE of ours, its version bumped (RFC 3264 §8)."""
        if side.ended or not side.last_sdp or not side.session.can_send_invite():
            return
        try:
            previous = parse_sdp(side.last_sdp)
        except SdpError:
            return  # only ever our own SDP
        side.last_sdp = side.rewriter.passthrough(previous)
        self.send_request(side, side.session.reinvite(side.last_sdp), now, offer=True)

    def _answer_locally(self, side: Side, req: Request, tx: ServerTransaction, now: float) -> None:
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
        respond(self.endpoint, tx, resp, now)
        if req.method == "INVITE":
            self.sent_2xx(side, resp, now, with_offer=bool(resp.body) and not req.body)
        elif req.body and side.session.offer is OfferState.REMOTE_OFFER:
            side.session.offer_input(OfferInput.SEND_ANSWER if resp.body else OfferInput.REJECTED)

    def _forward(self, side: Side, req: Request, tx: ServerTransaction, now: float, *, body: bytes,
                 offer: bool = False) -> Pending:
        other = side.other
        assert other is not None
        ctype = req.get("content-type")
        if req.method == "INVITE":
            out = other.session.reinvite(body, ctype)
        elif req.method == "UPDATE":
            out = other.session.update(body if offer else b"", ctype)
        else:
            out = other.dialog.request(req.method, body, ctype)
        for name in ("content-disposition", "info-package", "recv-info"):
            value = req.get(name)
            if value is not None:
                out.fields.append(Field(name, value))
        ctx = self.endpoint.send_request(out, other.dialog.peer, now)
        pending = Pending(origin=tx, side=side, target=other, offer=offer)
        self.pending[ctx] = pending
        if req.method == "INVITE":
            at = now + self.endpoint.config.timers.timeout
            pending.guard = self.scheduler.call_at(at, lambda: self.run_timer(self._pending_expired, ctx))
            self.sync(other, now)  # our INVITE stops the retransmissions of a 2xx still waiting for its ACK
        return pending

    def cancel_received(self, tx: ServerTransaction, now: float) -> bool:
        """The peer CANCELled a re-INVITE we passed on (§9.2): it gets 487 at once and its offer is void;
        ours to the other side is CANCELled. Ours stays pending until its final response, so that a 2xx
        that crossed the CANCEL is still ACKed. False when ``tx`` is no request of ours to pass on."""
        found = next(((ctx, p) for ctx, p in self.pending.items() if p.origin is tx), None)
        if found is None:
            return False
        ctx, pending = found
        if tx.request is not None:
            answer(self.endpoint, tx, tx.request, 487, now)
        self._pending_refused(pending, ctx.method)
        pending.origin = None
        pending.cancelled = True
        self.endpoint.cancel(ctx, now)
        return True

    def _pending_expired(self, ctx: ClientTransaction, now: float) -> None:
        """A forwarded re-INVITE that only ever got provisional answers: CANCEL it, 408 to its sender."""
        pending = self.pending.pop(ctx, None)
        if pending is None:
            return
        pending.guard = None
        self._give_up_invite(ctx, now)
        self.pending_failed(pending, "INVITE", 408, now)

    def pending_failed(self, pending: Pending, method: str, status: int, now: float) -> None:
        """A forwarded request (or one of ours) ended without a final response: both sessions move on."""
        target = pending.target
        if method == "INVITE":
            target.session.invite_final(status, has_answer=False)
        elif pending.offer and target.session.offer is OfferState.LOCAL_OFFER:
            target.session.offer_input(OfferInput.REJECTED)
        if pending.done is not None:
            pending.done(status)
        origin = pending.origin
        if pending.guard is not None:
            pending.guard.cancel()  # a transport error ended it before its 64*T1
            pending.guard = None
        if origin is not None and origin.request is not None and pending.side is not None:
            answer(self.endpoint, origin, origin.request, status, now)
            self._pending_refused(pending, method)

    def _give_up_invite(self, ctx: ClientTransaction, now: float) -> None:
        """CANCEL a re-INVITE of ours that is still open, and forget its transaction if even the CANCEL
        brings no final response within 64*T1 (§9.1)."""
        if self.endpoint.cancel(ctx, now) is None:
            return

        def abandon(_now: float) -> None:
            if ctx.state in (TransactionState.CALLING, TransactionState.PROCEEDING):
                self.endpoint.abandon(ctx)

        at = now + self.endpoint.config.timers.timeout
        self.scheduler.call_at(at, lambda: self.run_timer(abandon, None))

    def pending_response(self, ctx: ClientTransaction, pending: Pending, resp: Response,
                          now: float) -> None:
        other = pending.target
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
                self.remember_ack(ctx, other, resp.cseq.seq, now)  # the 2xx repeats our INVITE's CSeq
                self.send_ack(other, other.session.ack())
            self.sync(other, now)
        elif pending.offer and other.session.offer is OfferState.LOCAL_OFFER:
            other.session.offer_input(OfferInput.RECV_ANSWER if ok and resp.body else OfferInput.REJECTED)
        if pending.done is not None:
            pending.done(resp.status)
        if ok and is_invite and pending.cancelled and pending.offer:
            self._revert(other, now)
        origin = pending.origin
        side = pending.side
        if side is None or side.ended or side.call.state is not CallState.ANSWERED or origin is None:
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
                    other.remote_sdp = sdp_key(resp.body)
                    out.body = self.anchor.towards(side, answer, other)
                    side.last_sdp = out.body
                    out.fields.append(Field("content-type", "application/sdp"))
            elif resp.body:
                out.body = resp.body
                ctype = resp.get("content-type")
                if ctype:
                    out.fields.append(Field("content-type", ctype))
            out.fields.append(Field("contact", side.dialog.local_contact))
        respond(self.endpoint, origin, out, now)
        if not ok:
            self._pending_refused(pending, ctx.method)
        elif is_invite:
            self.sent_2xx(side, out, now, with_offer=False)
        elif pending.offer and side.session.offer is OfferState.REMOTE_OFFER:
            side.session.offer_input(OfferInput.SEND_ANSWER if out.body else OfferInput.REJECTED)

    def refresher_from_callee(self, side: Side, resp: Response, now: float) -> None:
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

    def _send_refresh(self, side: Side, now: float) -> None:
        """REFRESH_DUE: we are the refresher towards ``side``."""
        if side.call.state is not CallState.ANSWERED:
            return
        if side.refresh_method == "UPDATE":
            req = side.session.update()
        elif side.session.can_send_invite():
            req = side.session.reinvite(side.last_sdp)  # the same SDP: a refresh, not a new offer
        else:
            return  # an INVITE is open on the dialog, which refreshes it too; the next is due in SE/2
        req.fields.append(Field("session-expires", f"{side.session.interval};refresher=uac"))
        ctx = self.endpoint.send_request(req, side.dialog.peer, now)
        self.pending[ctx] = Pending(origin=None, side=None, target=side, offer=False)

    def send_bye(self, side: Side, now: float) -> None:
        if side.session.state is SessionState.ACK_PENDING:
            self.send_late_ack(side, b"")  # a 2xx still waiting for the caller's answer is ACKed first
        self.endpoint.send_request(side.session.bye(), side.dialog.peer, now)

    def send_request(self, side: Side, req: Request, now: float, *, offer: bool,
                     done: Callable[[int], None] | None = None) -> None:
        """Send a request of ours (hold, resume, moving a leg) to ``side``; ``done`` hears its final."""
        ctx = self.endpoint.send_request(req, side.dialog.peer, now)
        pending = self.pending[ctx] = Pending(origin=None, side=None, target=side, offer=offer, done=done)
        if req.method == "INVITE":  # a re-INVITE answered only provisionally is given up after 64*T1
            at = now + self.endpoint.config.timers.timeout
            pending.guard = self.scheduler.call_at(at, lambda: self.run_timer(self._pending_expired, ctx))
        self.sync(side, now)

    def end_side(self, side: Side, now: float) -> None:
        """The leg is over (its BYE sent or received): its session ends and its timer stops; requests still
        pending to or from it are given up (a re-INVITE of ours is CANCELled) and their senders get 487
        (§15.1.2); then its ``on_end`` hears of it."""
        if side.ended:
            return
        side.ended = True
        self.stop_music(side)
        other = side.other
        if other is not None:
            self.stop_music(other)
        if side.timer is not None:
            side.timer.cancel()
        side.timer = side.timer_at = None
        side.session.end()
        for ctx in [c for c, p in self.pending.items() if p.target is side or p.side is side]:
            pending = self.pending.pop(ctx)
            if pending.guard is not None:
                pending.guard.cancel()
                self._give_up_invite(ctx, now)
            if pending.done is not None:
                pending.done(487)
            origin = pending.origin
            if origin is not None and origin.request is not None and origin.state in (
                    TransactionState.PROCEEDING, TransactionState.TRYING):
                # §15.1.2: a request still open when the session ends (a BYE crossed it) gets 487.
                answer(self.endpoint, origin, origin.request, 487, now)
        hook, side.on_end = side.on_end, None
        if hook is not None:
            hook(now)

    def end(self, call: Call, now: float) -> None:
        """The call is over: every leg of it still up ends (``end_side``)."""
        for side in (call.caller_side, call.callee_side):
            if side is not None:
                self.end_side(side, now)
