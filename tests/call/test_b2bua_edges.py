"""The B2BUA's corner cases: CANCEL after a bare 100, 2xx retransmissions and forks, requests crossing a BYE,
session timer headers, malformed or incomplete INVITEs, refused late offers, own DIDs, shutdown.

Same topology as tests/call/test_b2bua.py (alice 10.0.0.1 -> pbx 10.0.0.2 -> bob 10.0.0.3/.4, media
released); the DID test drives SipApplication with the routing helpers of tests/call/test_routing.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from engine.call.app import SipApplication
from engine.call.b2bua import CallManager
from engine.call.config import CurrentConfig, EngineConfig
from engine.model.cdr import CallRecord, Disposition
from engine.sip.auth import DigestAuthenticator
from engine.sip.events import Event, RequestReceived
from engine.sip.message import Request, Response
from engine.sip.registrar import Registrar
from engine.sip.transaction import ClientTransaction
from tests.call.phone import Phone
from tests.call.test_b2bua import PBX_URI, NetClock, Rig
from tests.call.test_routing import PHONE, invite, router
from tests.sip.harness import (
    Datagram,
    Match,
    Network,
    Node,
    build_request,
    is_request,
    is_response,
    sent_from,
)

TIMER = (("Session-Expires", "1800;refresher=uac"), ("Supported", "timer"))


def pbx_sent(rig: Rig, match: Match) -> list[Datagram]:
    """What the pbx put on the wire that ``match``es."""
    return [d for d in rig.net.sent if sent_from(rig.pbx)(d) and match(d)]


def to(node: Node, match: Match) -> Match:
    return lambda d: d.dst == node.peer and match(d)


def response(d: Datagram) -> Response:
    msg = d.parsed()
    assert isinstance(msg, Response)
    return msg


def to_tag(d: Datagram) -> str | None:
    """The To tag of a datagram."""
    return d.parsed().to.tag


def leaves_unanswered(phone: Phone, ignore: Callable[[Request], bool]) -> None:
    """``phone`` records but never answers the requests that ``ignore`` picks (its endpoint still sends
    100 Trying to an INVITE)."""
    answer = phone.node.tu
    assert answer is not None

    def tu(node: Node, event: Event) -> None:
        if isinstance(event, RequestReceived) and event.transaction is not None and ignore(event.request):
            phone.requests.append(event.request)
            return
        answer(node, event)

    phone.node.tu = tu


def in_dialog(method: str) -> Callable[[Request], bool]:
    return lambda req: req.method == method and req.to.tag is not None


def dialog_request(phone: Phone, method: str, body: bytes = b"", content_type: str | None = None) -> Request:
    """A new request in ``phone``'s dialog."""
    assert phone.dialog is not None
    return phone.dialog.request(method, body, content_type)


def send_in_dialog(phone: Phone, req_of: Callable[[Phone], Request]) -> Callable[[], None]:
    """An action for ``Rig.at``: ``phone`` sends the request that ``req_of`` builds in its dialog."""
    def send() -> None:
        assert phone.dialog is not None
        phone.ep.send_request(req_of(phone), phone.dialog.peer, phone.net.now)
    return send


@dataclass(eq=False)
class G729Phone(Phone):
    """A phone that speaks G.729 only (no codec in common with the engine's PCMU/PCMA)."""

    def sdp(self) -> bytes:
        host = self.node.host
        return (f"v=0\r\no=g729 1 {self.sdp_version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
                "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n").encode()


# -- CANCEL and the 100 Trying -----------------------------------------------------------------------------
def test_caller_cancel_after_only_100_trying_is_passed_on_and_the_call_ends_clean() -> None:
    """The callee answers nothing but its endpoint's 100 Trying; the caller CANCELs at 2 s. RFC 3261 §9.1:
    a CANCEL may go out once any provisional response, 100 included, has arrived, so the pbx CANCELs the
    branch at once, the callee's 487 ends it and the caller gets 487."""
    rig = Rig(modes=("silent",))
    bob = rig.bobs[0]
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(2.0, rig.alice.cancel)
    rig.net.run(until=120.0)
    early = [response(d).status for d in rig.net.sent if sent_from(bob.node)(d) and d.sent_at < 2.0]
    assert early == [100]
    cancels = pbx_sent(rig, is_request("CANCEL"))
    assert [(d.dst, d.sent_at) for d in cancels] == [(bob.node.peer, 2.125)]  # times on the harness are exact
    assert rig.alice.statuses[-1] == 487
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.CANCELLED
    assert [leg.status for leg in cdr.legs] == [487]
    rig.assert_clean()


def test_ring_timeout_after_only_100_trying_cancels_the_branch_and_answers_480() -> None:
    """The callee never gets past 100 Trying; the ring timeout (7 s) fires. RFC 3261 §9.1: the 100 allows
    the CANCEL, which goes out at the timeout; the caller hears 480 and nothing is left behind."""
    rig = Rig(modes=("silent",), ring_timeout=7.0)
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=120.0)
    assert [s for s in rig.alice.statuses if s >= 200] == [480]
    assert [d.sent_at for d in pbx_sent(rig, is_request("CANCEL"))] == [pytest.approx(7.125)]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.NO_ANSWER and cdr.hangup_cause == "ring timeout"
    assert [leg.status for leg in cdr.legs] == [487]
    rig.assert_clean()


# -- 2xx retransmissions and forks -------------------------------------------------------------------------
def test_a_retransmitted_2xx_from_the_callee_gets_the_ack_again() -> None:
    """Our first ACK to the callee is lost and its 200 comes again 0.5 s later. RFC 3261 §13.2.2.4 (and
    RFC 6026 §8.4, the transaction passes 2xx retransmissions up until Timer M): every 2xx gets an ACK,
    and a retransmission the same ACK; the caller sees one 200."""
    rig = Rig()
    bob = rig.bobs[0]
    rig.net.drop(sent_from(rig.pbx, is_request("ACK")), times=1)
    rig.net.duplicate(sent_from(bob.node, is_response(200, "INVITE")), times=1, gap=0.5)
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=120.0)
    acks = pbx_sent(rig, to(bob.node, is_request("ACK")))
    assert [d.sent_at for d in acks] == [pytest.approx(1.375), pytest.approx(1.875)]
    assert acks[0].data == acks[1].data
    assert len(pbx_sent(rig, to(rig.alice.node, is_response(200, "INVITE")))) == 1
    assert rig.cdrs[0].disposition is Disposition.ANSWERED and rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_a_second_2xx_from_another_fork_is_acked_then_ended_with_bye() -> None:
    """The callee is a forking proxy: a second 200 with another To tag arrives on the same INVITE
    transaction. RFC 3261 §13.2.2.4: that 2xx forms a second dialog, which the UAC must ACK and, as it
    wants only one, end with a BYE; the first dialog (the call) goes on undisturbed."""
    rig = Rig()
    bob = rig.bobs[0]

    def second_2xx() -> None:
        (ok,) = [d for d in rig.net.sent if sent_from(bob.node, is_response(200, "INVITE"))(d)]
        fork = ok.data.replace(f"tag={bob.local_tag}".encode(), b"tag=fork2tag")
        rig.net.send_raw(fork, bob.node.peer, rig.pbx.peer)

    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(1.5, second_2xx)
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=120.0)
    on_fork = [r.method for r in bob.requests if r.to.tag == "fork2tag"]
    assert on_fork == ["ACK", "BYE"]
    assert [r.method for r in bob.requests if r.to.tag == bob.local_tag] == ["ACK", "BYE"]
    byes = [(to_tag(d), d.sent_at) for d in pbx_sent(rig, to(bob.node, is_request("BYE")))]
    assert byes == [("fork2tag", 1.625), (bob.local_tag, 5.125)]
    assert len(pbx_sent(rig, to(rig.alice.node, is_response(200, "INVITE")))) == 1
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED and cdr.hangup_cause == "caller hung up"
    assert [leg.status for leg in cdr.legs] == [200]
    rig.assert_clean()


# -- requests still open when the call ends ----------------------------------------------------------------
def test_a_bye_crossing_a_forwarded_reinvite_gets_the_caller_487_and_leaves_nothing_behind() -> None:
    """The caller's re-INVITE (hold) is forwarded; the callee never answers it and hangs up instead. RFC 3261
    §15.1.2: requests still pending when the dialog ends get a final response, 487 recommended; our own
    forwarded re-INVITE is CANCELled (§9.1), and no transaction or timer is left."""
    rig = Rig()
    bob = rig.bobs[0]
    leaves_unanswered(bob, in_dialog("INVITE"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(4.0, bob.bye)
    rig.net.run(until=120.0)
    assert [r.method for r in bob.requests if r.method == "INVITE"] == ["INVITE", "INVITE"]
    (rejected,) = pbx_sent(rig, to(rig.alice.node, is_response(487, "INVITE")))
    assert response(rejected).cseq.seq == 2 and rejected.sent_at == 4.125  # as the BYE arrives
    assert [d.sent_at for d in pbx_sent(rig, to(bob.node, is_request("CANCEL")))] == [4.125]
    assert [r.method for r in rig.alice.requests] == ["BYE"]
    assert rig.cdrs[0].hangup_cause == "callee hung up"
    rig.assert_clean()


def test_a_pending_info_is_answered_487_when_the_call_ends() -> None:
    """The caller sends INFO (DTMF); the callee is slow to answer it and the caller hangs up meanwhile.
    RFC 3261 §15.1.2: the pending INFO still gets a final response, 487 (Request Terminated)."""
    rig = Rig()
    leaves_unanswered(rig.bobs[0], in_dialog("INFO"))
    rig.alice.call(PBX_URI, rig.pbx)
    dtmf = b"Signal=1\r\nDuration=100\r\n"
    rig.at(3.0, send_in_dialog(
        rig.alice, lambda p: dialog_request(p, "INFO", dtmf, "application/dtmf-relay")))
    rig.at(4.0, rig.alice.bye)
    rig.net.run(until=120.0)
    assert [r.method for r in rig.bobs[0].requests] == ["INVITE", "ACK", "INFO", "BYE"]
    (info_final,) = pbx_sent(rig, to(rig.alice.node, is_response(None, "INFO")))
    assert response(info_final).status == 487 and info_final.sent_at == 4.125  # as the BYE arrives
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def send_hold(phone: Phone, now: float) -> ClientTransaction:
    """``phone`` sends a hold (re-INVITE, a=sendonly) and keeps its transaction, to CANCEL it."""
    assert phone.dialog is not None
    phone.direction = "sendonly"
    phone.sdp_version += 1
    req = phone.dialog.request("INVITE", phone.sdp(), "application/sdp")
    return phone.ep.send_request(req, phone.dialog.peer, now)  # type: ignore[no-any-return]


def test_a_cancelled_reinvite_gets_487_at_once_and_ours_is_cancelled_too() -> None:
    """The caller CANCELs its re-INVITE while the callee has not answered ours: RFC 3261 §9.2, the
    re-INVITE gets 487 at once and we CANCEL the one we passed on; both sessions are stable after it, so
    the next re-INVITE goes through."""
    rig = Rig()
    bob = rig.bobs[0]
    leaves_unanswered(bob, lambda req: req.method == "INVITE" and req.to.tag is not None
                      and req.cseq.seq == 2)
    sent: list[ClientTransaction] = []
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: sent.append(send_hold(rig.alice, rig.net.now)))
    rig.at(3.5, lambda: rig.alice.ep.cancel(sent[0], rig.net.now))
    rig.at(6.0, lambda: rig.alice.reinvite("inactive"))
    rig.at(9.0, rig.alice.bye)
    rig.net.run(until=120.0)
    (terminated,) = pbx_sent(rig, to(rig.alice.node, is_response(487, "INVITE")))
    assert terminated.sent_at == 3.625 and response(terminated).cseq.seq == 2
    (cancel,) = pbx_sent(rig, to(bob.node, is_request("CANCEL")))
    assert cancel.sent_at == 3.625
    oks = [response(d) for d in pbx_sent(rig, to(rig.alice.node, is_response(200, "INVITE")))]
    assert 3 in [r.cseq.seq for r in oks], "the next re-INVITE was passed on and answered"
    assert [r.method for r in bob.requests].count("INVITE") == 3
    rig.assert_clean()


def test_a_2xx_crossing_our_cancel_of_a_withdrawn_reinvite_is_acked_and_the_old_session_re_offered() -> None:
    """The caller CANCELs its hold (487 at once), but the callee's 200 to the hold we passed on crosses our
    CANCEL (§9.2): the callee now holds a session the caller never got. We ACK that 200 and re-INVITE the
    callee with the session before (sendrecv, the version bumped), so both ends agree again; the caller's
    next re-INVITE still goes through."""
    rig = Rig()
    bob = rig.bobs[0]
    sent: list[ClientTransaction] = []
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: sent.append(send_hold(rig.alice, rig.net.now)))
    rig.at(3.1, lambda: rig.alice.ep.cancel(sent[0], rig.net.now))  # reaches us before bob's 200 does
    rig.at(6.0, lambda: rig.alice.reinvite("inactive"))
    rig.at(9.0, rig.alice.bye)
    rig.net.run(until=120.0)
    (terminated,) = pbx_sent(rig, to(rig.alice.node, is_response(487, "INVITE")))
    assert response(terminated).cseq.seq == 2
    invites = [r for r in bob.requests if r.method == "INVITE"]
    assert len(invites) == 4  # the call, the withdrawn hold, our revert, the caller's next re-INVITE
    hold, revert, later = invites[1:]
    assert b"a=sendonly" in hold.body and b"a=sendrecv" in revert.body and b"a=inactive" in later.body
    version = [int(r.body.split(b"o=")[1].split()[2]) for r in (hold, revert)]
    assert version[1] == version[0] + 1
    acks = pbx_sent(rig, to(bob.node, is_request("ACK")))
    assert len(acks) == 4  # every 2xx bob sent was ACKed, the one that crossed our CANCEL too
    rig.assert_clean()


# -- transport errors (RFC 3261 §8.1.3.1) -------------------------------------------------------------------
def test_a_branch_the_transport_cannot_reach_fails_at_once_as_503() -> None:
    """The INVITE to a contact cannot be sent (a refused TCP connect): the endpoint ends the transaction
    at once and the leg ends with 503, instead of ringing into Timer B (32 s)."""
    rig = Rig(modes=("silent",))
    bob = rig.bobs[0]
    rig.net.drop(to(bob.node, is_request("INVITE")), times=None)

    def refused() -> None:
        (invite,) = pbx_sent(rig, to(bob.node, is_request("INVITE")))
        rig.pbx.endpoint.transport_error(invite.data, bob.node.peer, rig.net.now)

    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(0.2, refused)
    rig.net.run(until=60.0)
    (cdr,) = rig.cdrs
    assert [leg.status for leg in cdr.legs] == [503]
    assert rig.alice.statuses[-1] == 503
    (final,) = pbx_sent(rig, to(rig.alice.node, is_response(503, "INVITE")))
    assert final.sent_at < 1.0
    rig.assert_clean()


# -- glare (RFC 3261 §14, RFC 3311 §5.2): the sides' INVITE sessions refuse what crosses ------------------
def test_crossing_reinvites_the_second_gets_491_and_the_call_goes_on() -> None:
    """The caller's re-INVITE is forwarded to the callee, who sends a re-INVITE of its own before answering
    it: our INVITE towards the callee is open, so its INVITE gets 491 (§14.2) and is not passed on."""
    rig = Rig()
    bob = rig.bobs[0]
    leaves_unanswered(bob, in_dialog("INVITE"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(3.5, lambda: bob.reinvite("sendonly"))
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=120.0)
    (glare,) = pbx_sent(rig, to(bob.node, is_response(491, "INVITE")))
    assert glare.sent_at == 3.625
    assert [r.method for r in rig.alice.requests] == [], "the callee's re-INVITE never reached the caller"
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_a_reinvite_while_the_same_sides_last_one_is_unanswered_gets_500_with_retry_after() -> None:
    rig = Rig()
    leaves_unanswered(rig.bobs[0], in_dialog("INVITE"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(3.5, lambda: rig.alice.reinvite("inactive"))
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=120.0)
    (overlap,) = pbx_sent(rig, to(rig.alice.node, is_response(500, "INVITE")))
    assert response(overlap).get("retry-after") == "2"
    assert [r.method for r in rig.bobs[0].requests].count("INVITE") == 2, "only the first was passed on"
    rig.assert_clean()


def test_an_update_offer_crossing_our_forwarded_offer_gets_491() -> None:
    rig = Rig()
    bob = rig.bobs[0]
    leaves_unanswered(bob, in_dialog("INVITE"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(3.5, send_in_dialog(bob, lambda p: dialog_request(p, "UPDATE", p.sdp(), "application/sdp")))
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=120.0)
    assert len(pbx_sent(rig, to(bob.node, is_response(491, "UPDATE")))) == 1
    assert "UPDATE" not in [r.method for r in rig.alice.requests]
    rig.assert_clean()


def test_after_a_refused_offer_and_a_timed_out_reinvite_the_next_offer_passes() -> None:
    """A 491 leaves both sessions as they were, and a forwarded re-INVITE that is never answered (408 to
    its sender after 64*T1, CANCEL to the callee) leaves no INVITE or offer open: the callee's next offer
    is forwarded as usual."""
    rig = Rig()
    bob = rig.bobs[0]
    leaves_unanswered(bob, in_dialog("INVITE"))

    def new_offer(p: Phone) -> Request:
        p.sdp_version += 1
        p.direction = "sendonly"  # hold: a new session, not a refresh
        return dialog_request(p, "UPDATE", p.sdp(), "application/sdp")

    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(3.5, send_in_dialog(bob, new_offer))
    rig.at(40.0, send_in_dialog(bob, new_offer))
    rig.at(45.0, rig.alice.bye)
    rig.net.run(until=120.0)
    assert len(pbx_sent(rig, to(bob.node, is_response(491, "UPDATE")))) == 1
    (timeout,) = pbx_sent(rig, to(rig.alice.node, is_response(408, "INVITE")))
    assert timeout.sent_at < 40.0
    assert [r.method for r in rig.alice.requests] == ["UPDATE"]
    body = rig.alice.requests[0].body
    assert b"o=pbx-engine" in body and b"a=sendonly" in body, "the new offer reached the caller"
    rig.assert_clean()


# -- session timers (RFC 4028) -----------------------------------------------------------------------------
def test_the_2xx_to_a_forwarded_session_refresh_carries_session_expires_and_require_timer() -> None:
    """The caller refreshes the session with a re-INVITE that also changes the SDP (hold), so it is
    forwarded to the callee. RFC 4028 §9: the 2xx to a session refresh carries Session-Expires, and with
    the caller as refresher Require: timer, exactly as the 2xx to the initial INVITE did."""
    rig = Rig()
    alice = rig.alice

    def hold(phone: Phone) -> Request:
        phone.sdp_version += 1
        phone.direction = "sendonly"
        req = dialog_request(phone, "INVITE", phone.sdp(), "application/sdp")
        for name, value in TIMER:
            req.add(name, value)
        return req

    alice.call(PBX_URI, rig.pbx, extra=TIMER)
    rig.at(3.0, send_in_dialog(alice, hold))
    rig.at(10.0, alice.bye)
    rig.net.run(until=120.0)
    reinvite = [r for r in rig.bobs[0].requests if r.method == "INVITE"][1]
    assert b"a=sendonly" in reinvite.body
    oks = [response(d) for d in pbx_sent(rig, to(alice.node, is_response(200, "INVITE")))]
    assert [ok.cseq.seq for ok in oks] == [1, 2]
    for ok in oks:
        assert ok.get("session-expires") == "1800;refresher=uac"
        assert "timer" in ok.tokens("require")
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_the_200_to_an_update_without_sdp_has_no_body() -> None:
    """The caller refreshes the session with an UPDATE without SDP (answered locally). RFC 3311 §5.2: an
    UPDATE without an offer must get a 2xx without one, so no SDP (and no Content-Type) in the 200; the
    refresh itself is confirmed with Session-Expires (RFC 4028 §9)."""
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "120;refresher=uac"), ("Supported", "timer")))
    rig.at(30.0, send_in_dialog(rig.alice, lambda p: dialog_request(p, "UPDATE")))
    rig.at(40.0, rig.alice.bye)
    rig.net.run(until=120.0)
    (ok,) = [response(d) for d in pbx_sent(rig, is_response(200, "UPDATE"))]
    assert ok.body == b"" and ok.get("content-type") is None
    assert ok.get("session-expires") == "120;refresher=uac"
    assert [r.method for r in rig.bobs[0].requests] == ["INVITE", "ACK", "BYE"]
    rig.assert_clean()


def test_a_malformed_session_expires_gets_400_and_leaves_no_call() -> None:
    """``Session-Expires: soon`` is no delta-seconds (RFC 4028 §4 grammar). RFC 3261 §21.4.1: a malformed
    request gets 400; the callee is never rung and no call, transaction or timer stays behind."""
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "soon"), ("Supported", "timer")))
    rig.net.run(until=120.0)
    assert rig.alice.statuses == [100, 400]
    (bad,) = [response(d) for d in pbx_sent(rig, is_response(400, "INVITE"))]
    assert bad.reason == "Bad Session-Expires header"
    assert rig.bobs[0].requests == []
    assert rig.manager.stats["internal_errors"] == 0
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.FAILED and cdr.status == 400
    rig.assert_clean()


def test_require_timer_is_accepted_and_the_call_is_answered() -> None:
    """The caller demands session timers (Require: timer). We support RFC 4028, so RFC 3261 §8.2.2.3's 420
    (Bad Extension) does not apply: the call is answered and the 200 confirms the timer."""
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(*TIMER, ("Require", "timer")))
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=120.0)
    assert 420 not in rig.alice.statuses
    (ok,) = [response(d) for d in pbx_sent(rig, to(rig.alice.node, is_response(200, "INVITE")))]
    assert ok.get("session-expires") == "1800;refresher=uac" and "timer" in ok.tokens("require")
    assert rig.cdrs[0].disposition is Disposition.ANSWERED
    rig.assert_clean()


# -- INVITEs the engine cannot take ------------------------------------------------------------------------
def test_an_invite_without_contact_gets_400_and_nothing_rings() -> None:
    """An INVITE without a Contact header. RFC 3261 §8.1.1.8: Contact must be present in a request that
    can establish a dialog (there would be no remote target), so 400 "Missing Contact"; no branch rings."""
    rig = Rig()
    alice = rig.alice
    req = build_request("INVITE", PBX_URI, from_uri="sip:alice@10.0.0.1", from_tag="t1", call_id="c1@x",
                        extra=(("Content-Type", "application/sdp"),), body=alice.sdp())
    alice.invite_tx = alice.ep.send_request(req, rig.pbx.peer, 0.0)
    rig.net.run(until=120.0)
    assert alice.statuses == [100, 400]
    (bad,) = [response(d) for d in pbx_sent(rig, is_response(400, "INVITE"))]
    assert bad.reason == "Missing Contact"
    assert [d for d in rig.net.sent if d.dst == rig.bobs[0].node.peer] == []
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.FAILED and cdr.status == 400 and cdr.legs == ()
    rig.assert_clean()


def test_a_late_offer_answered_without_a_common_codec_gets_488_and_cancels_the_other_branch() -> None:
    """A late-offer call (INVITE without SDP) rings two phones; the first answers with an offer of G.729
    only. That call cannot go on: the caller gets 488 (RFC 3264 §6, RFC 3261 §21.4.26), the answering
    branch is ended with a BYE (§13.2.2.4), and, as for any final answer upstream, the branch still ringing
    is CANCELled (§16.7 step 10) instead of ringing on for nobody."""
    rig = Rig(callees=2, modes=("answer", "ring"))
    rig.bobs[0] = G729Phone(rig.net, rig.bobs[0].node)
    bob0, bob1 = rig.bobs
    rig.alice.call(PBX_URI, rig.pbx, late_offer=True)
    rig.net.run(until=120.0)
    assert [s for s in rig.alice.statuses if s >= 200] == [488]
    cancels = pbx_sent(rig, is_request("CANCEL"))
    assert [(d.dst, d.sent_at) for d in cancels] == [(bob1.node.peer, 1.375)]
    assert [r.method for r in bob0.requests] == ["INVITE", "ACK", "BYE"]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.FAILED and cdr.status == 488
    assert cdr.hangup_cause == "no common codec"
    assert [leg.status for leg in cdr.legs] == [200, 487]
    rig.assert_clean()


# -- our own DIDs dialled from inside ----------------------------------------------------------------------
@dataclass
class AppRig:
    """SipApplication as the pbx's transaction user on the in-memory network (routing of test_routing.py:
    line 201's phone at 192.0.2.10, the company DID +49 30 23125100 on line 202)."""

    net: Network
    pbx: Node
    manager: CallManager
    cdrs: list[CallRecord]

    @classmethod
    def build(cls) -> AppRig:
        net = Network()
        pbx = net.add_endpoint("pbx", "192.0.2.1", 5060, seed=2)
        cdrs: list[CallRecord] = []
        manager = CallManager(pbx.endpoint, net, lambda: None, None, "192.0.2.1", cdrs.append, NetClock(net))
        r = router()
        auth = DigestAuthenticator("pbx.test", b"k" * 32, rng=random.Random(3))
        config = CurrentConfig(EngineConfig(1, {}, r.config))
        app = SipApplication(pbx.endpoint, auth, Registrar(r.location), config, NetClock(net), None, manager)
        pbx.tu = lambda node, event: app.handle(event, net.now)
        return cls(net, pbx, manager, cdrs)

    def first_answer(self, req: Request) -> Response:
        """Send ``req`` from the phone's address; the first final response it gets."""
        phone = self.net.add_raw("phone", PHONE.host, PHONE.port)
        phone.send(req.serialize(), self.pbx)
        self.net.run(until=64.0)
        finals = [r for r in phone.responses() if r.status >= 200]
        assert finals
        return finals[0]


def test_a_phone_dialling_our_own_did_is_challenged_and_a_stranger_gets_403() -> None:
    """Our own DID (local form 23125100) dialled from an address that is no trunk. A phone of ours (From
    names line 201) must be challenged like any call from a line (RFC 3261 §22.3: 407 with
    Proxy-Authenticate), not refused; an unknown From at that address is a carrier we do not know: 403
    (§21.4.4), never a challenge. Neither rings anything before it is authenticated."""
    line = AppRig.build()
    challenge = line.first_answer(invite("sip:23125100@pbx.test", frm="<sip:201@pbx.test>;tag=1"))
    assert challenge.status == 407
    assert any('realm="pbx.test"' in v for v in challenge.get_all("proxy-authenticate"))
    stranger = AppRig.build()
    refused = stranger.first_answer(invite("sip:23125100@pbx.test", frm="<sip:+4940123456@carrier>;tag=1"))
    assert (refused.status, refused.reason) == (403, "Source is not a trusted trunk")
    for rig in (line, stranger):
        assert [d for d in rig.net.sent if is_request("INVITE")(d) and sent_from(rig.pbx)(d)] == []
        assert rig.manager.stats["calls"] == 0 and rig.manager.calls == {} and rig.cdrs == []
        assert rig.pbx.endpoint.transaction_count == 0


# -- shutdown ----------------------------------------------------------------------------------------------
def test_shutdown_while_ringing_writes_the_cdr_before_the_sockets_close() -> None:
    """The engine stops while a call rings (the callee sent only 100 Trying). The caller gets 503 (RFC 3261
    §21.5.4), the branch is CANCELled (§9.1), and the CDR is written at once, with the leg recorded as
    cancelled (487): the engine closes its sockets 0.2 s later, so the callee's 487 would come too late.
    When that 487 does arrive it writes no second CDR."""
    rig = Rig(modes=("silent",))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(2.0, lambda: rig.manager.shutdown(rig.net.now))
    rig.net.run(until=2.2)
    assert rig.alice.statuses[-1] == 503
    assert [d.dst for d in pbx_sent(rig, is_request("CANCEL"))] == [rig.bobs[0].node.peer]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.FAILED and cdr.status == 503
    assert cdr.hangup_cause == "engine shutting down"
    assert [leg.status for leg in cdr.legs] == [487]
    rig.net.run(until=120.0)
    assert len(rig.cdrs) == 1
    rig.assert_clean()
