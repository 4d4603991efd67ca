"""The INVITE-session layer (engine.sip.invite): every state-table entry, refusal and timer."""

from __future__ import annotations

import itertools

import pytest

from engine.sip.dialog import Dialog
from engine.sip.errors import LocalProtocolError
from engine.sip.invite import (
    MIN_SE,
    OFFER_REFUSALS,
    OFFER_REMOTE_INPUTS,
    OFFER_TABLE,
    REMOTE_INPUTS,
    SESSION_REFUSALS,
    SESSION_TABLE,
    AckMemo,
    ForkedAnswers,
    InviteSession,
    OfferInput,
    OfferState,
    Role,
    SessionEvent,
    SessionInput,
    SessionState,
)
from engine.sip.transaction import Peer, TimerConfig

TIMERS = TimerConfig(t1=0.5, t2=4.0, t4=5.0)
UDP = Peer("UDP", "127.0.0.1", 5070)
S = SessionState
In = SessionInput


def _dialog(remote_tag: str = "them") -> Dialog:
    return Dialog(call_id="c1", local_tag="us", remote_tag=remote_tag, local_uri="<sip:pbx@127.0.0.1>",
                  remote_uri="<sip:a@127.0.0.1>", remote_target="sip:a@127.0.0.1:5070", route_set=(),
                  local_seq=1, remote_seq=1, local_contact="<sip:127.0.0.1:5060>", peer=UDP)


def _session(state: SessionState, offer: OfferState = OfferState.STABLE, *, reliable: bool = False
             ) -> InviteSession:
    return InviteSession(_dialog(), Role.UAS, TIMERS, state, reliable=reliable, offer=offer)


# -- the tables, pair by pair -------------------------------------------------------------------------
@pytest.mark.parametrize(("state", "inp"), list(itertools.product(SessionState, SessionInput)))
def test_every_session_state_input_pair_moves_is_refused_or_is_local_misuse(
        state: SessionState, inp: SessionInput) -> None:
    session = _session(state)
    key = (state, inp)
    if key in SESSION_TABLE:
        assert session._input(inp) is None
        assert session.state is SESSION_TABLE[key]
    elif key in SESSION_REFUSALS:
        assert session._input(inp) == SESSION_REFUSALS[key]
        assert session.state is state, "a refusal does not move the session"
    else:
        assert inp not in REMOTE_INPUTS, f"the peer can make the session raise: {key}"
        with pytest.raises(LocalProtocolError):
            session._input(inp)
        assert session.state is state


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(OfferState, OfferInput)))
def test_every_offer_state_input_pair_moves_is_refused_or_is_local_misuse(
        state: OfferState, inp: OfferInput) -> None:
    session = _session(S.CONFIRMED, state)
    key = (state, inp)
    if key in OFFER_TABLE:
        assert session.offer_input(inp) is None
        assert session.offer is OFFER_TABLE[key]
    elif key in OFFER_REFUSALS:
        assert session.offer_input(inp) == OFFER_REFUSALS[key]
        assert session.offer is state
    else:
        assert inp not in OFFER_REMOTE_INPUTS, f"the peer can make the offer state raise: {key}"
        with pytest.raises(LocalProtocolError):
            session.offer_input(inp)


def test_the_tables_mention_no_pair_twice_and_terminated_is_final() -> None:
    assert not set(SESSION_TABLE) & set(SESSION_REFUSALS)
    assert not set(OFFER_TABLE) & set(OFFER_REFUSALS)
    assert all(new is S.TERMINATED for (old, _), new in SESSION_TABLE.items() if old is S.TERMINATED)
    assert all(status in (481, 491, 500) for status in SESSION_REFUSALS.values())


# -- the UAS: 2xx retransmission and the ACK (RFC 3261 §13.3.1.4) -------------------------------------
def _answered(now: float = 0.0, *, reliable: bool = False, offer: bool = True) -> InviteSession:
    session = InviteSession.uas(_dialog(), TIMERS, reliable=reliable, offer_received=offer)
    session.sent_2xx(b"SIP/2.0 200 OK\r\n\r\n", now, with_offer=not offer)
    return session


def test_uas_resends_its_2xx_t1_doubling_up_to_t2_then_ends_at_64_t1_without_ack() -> None:
    session = _answered()
    assert session.state is S.WAIT_ACK and session.offer is OfferState.STABLE
    sent_at: list[float] = []
    while (at := session.get_timer()) is not None:
        session.handle_timer(at)
        if session.datagrams_to_send():
            sent_at.append(at)
        event = session.next_event()
        if event is not None:
            assert event is SessionEvent.ACK_TIMED_OUT and at == 64 * TIMERS.t1
            break
    gaps = [b - a for a, b in itertools.pairwise([0.0, *sent_at])]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[4:]) == {4.0}
    assert session.state is S.TERMINATED and session.get_timer() is None


def test_the_ack_stops_the_retransmissions_and_confirms() -> None:
    session = _answered()
    session.handle_timer(0.5)
    assert session.datagrams_to_send() == [b"SIP/2.0 200 OK\r\n\r\n"]
    assert session.receive_ack(has_answer=False) is True
    assert session.state is S.CONFIRMED and session.get_timer() is None
    assert session.receive_ack(has_answer=False) is False, "a retransmitted ACK confirms nothing new"


def test_over_a_reliable_transport_the_2xx_is_sent_once_but_the_ack_is_still_awaited() -> None:
    session = _answered(reliable=True)
    assert session.get_timer() == 64 * TIMERS.t1
    session.handle_timer(64 * TIMERS.t1)
    assert session.datagrams_to_send() == []
    assert session.next_event() is SessionEvent.ACK_TIMED_OUT


def test_late_offer_our_2xx_offers_and_the_ack_answers() -> None:
    session = _answered(offer=False)
    assert session.offer is OfferState.LOCAL_OFFER and session.answer_pending
    session.receive_ack(has_answer=True)
    assert session.offer is OfferState.STABLE and not session.answer_pending


def test_late_offer_an_ack_without_the_answer_does_not_leave_the_offer_outstanding() -> None:
    session = _answered(offer=False)
    session.receive_ack(has_answer=False)
    assert session.offer is OfferState.STABLE
    assert session.receive_invite(1.0, has_offer=True) is None, "the next offer is not refused with 491"


def test_a_reinvite_before_the_ack_stops_the_retransmissions_and_is_served() -> None:
    session = _answered()
    assert session.receive_invite(0.2, has_offer=True) is None
    assert session.state is S.INVITE_IN and session.offer is OfferState.REMOTE_OFFER
    assert session.get_timer() is None and session.datagrams_to_send() == []


# -- the UAC: ACK for every 2xx, forks (RFC 6026) ---------------------------------------------------
def test_uac_with_offer_acks_at_once_and_keeps_the_ack_for_retransmitted_2xx() -> None:
    session = InviteSession.uac(_dialog(), TIMERS, reliable=False, offer_sent=True)
    assert session.state is S.ACK_PENDING and session.offer is OfferState.STABLE
    memo = session.remember_ack(1)
    forks = ForkedAnswers()
    forks.add(memo)
    assert forks.ack_again("them", 1) is None, "nothing to resend before the ACK went out"
    session.sent_ack(b"ACK")
    assert session.state is S.CONFIRMED
    assert forks.ack_again("them", 1) == b"ACK"
    assert forks.ack_again("them", 2) is None, "another CSeq is not this ACK's 2xx"
    assert not forks.is_new_fork("them") and forks.is_new_fork("fork-2")


def test_uac_late_offer_the_ack_carries_our_answer() -> None:
    session = InviteSession.uac(_dialog(), TIMERS, reliable=False, offer_sent=False)
    assert session.offer is OfferState.REMOTE_OFFER
    assert session.receive_invite(0.0, has_offer=True) == 491, "our ACK is not out yet"
    session.sent_ack(b"ACK with SDP", with_answer=True)
    assert session.state is S.CONFIRMED and session.offer is OfferState.STABLE


def test_a_fork_memo_for_another_dialog_does_not_answer_for_this_one() -> None:
    forks = ForkedAnswers([AckMemo("a", 1, b"ACK-a")])
    assert forks.ack_again("b", 1) is None and forks.is_new_fork("b")


# -- re-INVITEs and glare (§14) --------------------------------------------------------------------
def test_glare_our_reinvite_open_refuses_theirs_with_491() -> None:
    session = _session(S.CONFIRMED)
    assert session.can_send_invite()
    session.send_invite(with_offer=True)
    assert not session.can_send_invite()
    assert session.receive_invite(1.0, has_offer=True) == 491
    assert session.state is S.INVITE_OUT and session.offer is OfferState.LOCAL_OFFER
    session.invite_final(200, has_answer=True)
    assert session.state is S.CONFIRMED and session.offer is OfferState.STABLE
    session.sent_ack(b"ACK")
    assert session.state is S.CONFIRMED


def test_an_overlapping_reinvite_from_the_peer_gets_500() -> None:
    session = _session(S.CONFIRMED)
    assert session.receive_invite(0.0, has_offer=False) is None
    assert session.receive_invite(0.1, has_offer=False) == 500
    session.sent_final()
    assert session.state is S.CONFIRMED


def test_a_failed_reinvite_of_ours_restores_the_offer_state() -> None:
    session = _session(S.CONFIRMED)
    session.send_invite(with_offer=True)
    session.invite_final(488, has_answer=False)
    assert session.state is S.CONFIRMED and session.offer is OfferState.STABLE


def test_our_reinvite_without_sdp_its_2xx_offers_and_our_ack_answers() -> None:
    session = _session(S.CONFIRMED)
    session.send_invite(with_offer=False)
    session.invite_final(200, has_answer=True)
    assert session.offer is OfferState.REMOTE_OFFER
    session.sent_ack(b"ACK", with_answer=True)
    assert session.offer is OfferState.STABLE


def test_offering_or_reinviting_out_of_turn_is_local_misuse() -> None:
    session = _session(S.INVITE_IN)
    with pytest.raises(LocalProtocolError):
        session.send_invite(with_offer=False)
    session = _session(S.CONFIRMED, OfferState.REMOTE_OFFER)
    with pytest.raises(LocalProtocolError):
        session.send_invite(with_offer=True)


def test_update_offers_follow_the_offer_table() -> None:
    session = _session(S.CONFIRMED)
    assert session.receive_update(0.0, has_offer=True) is None
    assert session.receive_update(0.0, has_offer=True) == 500, "an offer before we answered the last"
    session.offer_input(OfferInput.SEND_ANSWER)
    session.offer_input(OfferInput.SEND_OFFER)
    assert session.receive_update(0.0, has_offer=True) == 491, "crossed offers"
    assert session.receive_update(0.0, has_offer=False) is None, "an UPDATE without SDP is not an offer"
    session.end()
    assert session.receive_update(0.0, has_offer=False) == 481


def test_after_the_end_nothing_is_sent_and_requests_get_481() -> None:
    session = _answered()
    session.end()
    assert session.state is S.TERMINATED and session.get_timer() is None
    assert session.receive_invite(1.0, has_offer=True) == 481
    session.handle_timer(100.0)
    assert session.datagrams_to_send() == [] and session.next_event() is None


# -- session timers (RFC 4028 §10) -------------------------------------------------------------------
def test_the_peer_refreshes_the_session_expires_without_a_refresh() -> None:
    session = _answered()
    session.receive_ack(has_answer=False)
    session.expect_refresh(1800, 0.0)
    assert session.peer_refresh_interval == 1800
    assert session.get_timer() == 1800 - 32
    assert session.receive_invite(1000.0, has_offer=False) is None  # a refresh
    session.sent_2xx(b"200", 1000.0, with_offer=True)
    session.receive_ack(has_answer=True)
    assert session.get_timer() == 1000.0 + 1800 - 32
    assert session.receive_update(1500.0, has_offer=False) is None  # a refresh by UPDATE
    session.handle_timer(1500.0 + 1800 - 32)
    assert session.next_event() is SessionEvent.SESSION_EXPIRED
    assert session.get_timer() is None


def test_a_short_interval_expires_a_third_early() -> None:
    session = _session(S.CONFIRMED)
    session.expect_refresh(90, 10.0)
    assert session.get_timer() == 10.0 + 60


def test_we_refresh_every_half_interval_never_below_min_se() -> None:
    session = _session(S.CONFIRMED)
    session.refresh_as_us(30, 0.0)
    assert session.interval == MIN_SE and session.peer_refresh_interval == 0
    due = []
    for _ in range(3):
        at = session.get_timer()
        assert at is not None
        session.handle_timer(at)
        assert session.next_event() is SessionEvent.REFRESH_DUE
        due.append(at)
    assert due == [45.0, 90.0, 135.0]


def test_a_refresh_from_the_peer_does_not_move_our_own_refresh() -> None:
    session = _session(S.CONFIRMED)
    session.refresh_as_us(600, 0.0)
    session.receive_update(100.0, has_offer=False)
    assert session.get_timer() == 300.0


# -- our requests: the session moves, the dialog builds them -----------------------------------------
def test_a_reinvite_of_ours_moves_the_session_and_takes_the_next_cseq() -> None:
    session = _session(S.CONFIRMED)
    req = session.reinvite(b"v=0\r\n")
    assert (req.method, req.cseq.seq, req.get("content-type")) == ("INVITE", 2, "application/sdp")
    assert req.get("contact") == "<sip:127.0.0.1:5060>" and req.uri == "sip:a@127.0.0.1:5070"
    assert session.state is S.INVITE_OUT and session.offer is OfferState.LOCAL_OFFER
    with pytest.raises(LocalProtocolError):
        session.reinvite(b"")  # one INVITE at a time (§14.1)
    assert session.dialog.local_seq == 2, "a refused request takes no CSeq"


def test_an_update_offers_with_a_body_and_refreshes_without() -> None:
    session = _session(S.CONFIRMED)
    refresh = session.update()
    assert refresh.method == "UPDATE" and not refresh.body and session.offer is OfferState.STABLE
    session.update(b"v=0\r\n")
    assert session.offer is OfferState.LOCAL_OFFER
    with pytest.raises(LocalProtocolError):
        session.update(b"v=0\r\n")  # an offer is outstanding


def test_the_ack_answers_the_2xx_of_the_invite_it_remembers_and_bye_ends_the_session() -> None:
    session = InviteSession.uac(_dialog(), TIMERS, reliable=False, offer_sent=True)
    session.remember_ack(1)
    ack = session.ack()
    assert (ack.method, ack.cseq.seq, ack.cseq.method) == ("ACK", 1, "ACK")
    session.sent_ack(ack.serialize())
    bye = session.bye()
    assert bye.method == "BYE" and bye.cseq.seq == 2 and session.state is S.TERMINATED
