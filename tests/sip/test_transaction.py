"""RFC 3261 §17 transactions (with RFC 6026 Accepted): every timer path with exact deadlines, and every
(state, input) pair of every table.

Time is a float advanced by hand: a timer fires when the test calls ``handle_timer`` at its deadline, so
each retransmission is asserted at its exact instant (no tolerances). A ``FakeHost`` stands in for the
endpoint and records transmissions, events, reschedules and forgets.
"""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sip.errors import LocalProtocolError
from engine.sip.events import Event, RequestReceived, ResponseReceived, TransactionTimedOut
from engine.sip.message import Request, Response, make_response
from engine.sip.parser import parse_message
from engine.sip.transaction import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    Peer,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    ServerTransaction,
    TimerConfig,
    Transaction,
    TransactionInput,
    TransactionState,
    build_non2xx_ack,
)

S = TransactionState
Inp = TransactionInput
UDP = Peer("UDP", "192.0.2.10", 5060)
TCP = Peer("TCP", "192.0.2.10", 5060)
DEFAULT = TimerConfig()
BRANCH = "z9hG4bKtx-1"


class FakeHost:
    """A TransactionHost that records everything, stamped with the ``now`` the test set."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[tuple[float, bytes, Peer]] = []
        self.events: list[tuple[float, Event]] = []
        self.reschedules: list[tuple[float, float | None]] = []
        self.forgotten: list[Transaction] = []
        self.req: Request = make_request()  # the request the transaction under test was created with

    def transmit(self, data: bytes, peer: Peer) -> None:
        self.sent.append((self.now, data, peer))

    def deliver(self, event: Event) -> None:
        self.events.append((self.now, event))

    def reschedule(self, tx: Transaction) -> None:
        self.reschedules.append((self.now, tx.deadline))

    def forget(self, tx: Transaction) -> None:
        self.forgotten.append(tx)

    def sent_times(self) -> list[float]:
        return [t for t, _, _ in self.sent]

    def clear(self) -> None:
        self.sent.clear()
        self.events.clear()
        self.reschedules.clear()
        self.forgotten.clear()


def at(host: FakeHost, now: float) -> float:
    host.now = now
    return now


def run_timers(tx: Transaction, host: FakeHost, until: float) -> list[float]:
    """Fire ``tx``'s timers at their exact deadlines up to ``until``; return the firing times."""
    fired: list[float] = []
    while tx.deadline is not None and tx.deadline <= until:
        fired.append(at(host, tx.deadline))
        tx.handle_timer(host.now)
    return fired


# -- messages --------------------------------------------------------------------------------------------
def make_request(method: str = "OPTIONS", *, branch: str = BRANCH, cseq: int = 7,
                 route: bool = False) -> Request:
    lines = [
        f"{method} sip:201@pbx.example.com SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport",
        "Via: SIP/2.0/UDP 192.0.2.99:5070;branch=z9hG4bKolder",
        "Max-Forwards: 70",
        "From: \"Alice\" <sip:alice@example.com>;tag=from-1",
        "To: <sip:201@pbx.example.com>",
        "Call-ID: tx-call-1@example.com",
        f"CSeq: {cseq} {method}",
    ]
    if route:
        lines.append("Route: <sip:proxy.example.com;lr>")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def response_to(req: Request, status: int, to_tag: str = "to-srv") -> Response:
    return make_response(req, status, to_tag=to_tag if status > 100 else None)


def ack_for(req: Request, response: Response) -> Request:
    return build_non2xx_ack(req, response)


# -- factories -------------------------------------------------------------------------------------------
def client_nict(peer: Peer = UDP, config: TimerConfig = DEFAULT
                ) -> tuple[ClientNonInviteTransaction, FakeHost]:
    host = FakeHost()
    req = host.req = make_request("OPTIONS")
    tx = ClientNonInviteTransaction(req, (BRANCH, "OPTIONS"), peer, host, config)
    tx.start(at(host, 0.0))
    return tx, host


def client_ict(peer: Peer = UDP, config: TimerConfig = DEFAULT) -> tuple[ClientInviteTransaction, FakeHost]:
    host = FakeHost()
    req = host.req = make_request("INVITE", route=True)
    tx = ClientInviteTransaction(req, (BRANCH, "INVITE"), peer, host, config)
    tx.start(at(host, 0.0))
    return tx, host


def server_nist(peer: Peer = UDP, config: TimerConfig = DEFAULT
                ) -> tuple[ServerNonInviteTransaction, FakeHost]:
    host = FakeHost()
    req = host.req = make_request("OPTIONS")
    tx = ServerNonInviteTransaction(req, (BRANCH, "192.0.2.1:5060", "OPTIONS"), peer, host, config)
    return tx, host


def server_ist(peer: Peer = UDP, config: TimerConfig = DEFAULT) -> tuple[ServerInviteTransaction, FakeHost]:
    host = FakeHost()
    req = host.req = make_request("INVITE")
    tx = ServerInviteTransaction(req, (BRANCH, "192.0.2.1:5060", "INVITE"), peer, host, config)
    return tx, host


def events_of(host: FakeHost, kind: type[Event]) -> list[tuple[float, Event]]:
    return [(t, e) for t, e in host.events if isinstance(e, kind)]


# ===========================================================================================================
# Client non-INVITE (§17.1.2)


def test_nict_timer_e_doubles_to_t2_in_trying_then_f_times_out() -> None:
    tx, host = client_nict()
    assert tx.state is S.TRYING
    assert tx.timer_deadlines() == {"e": 0.5, "f": 32.0}
    assert tx.deadline == 0.5
    run_timers(tx, host, 40.0)
    # E: T1, 2*T1, 4*T1, then capped at T2 = 4 s; F = 64*T1 = 32 s.
    assert host.sent_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert {data for _, data, _ in host.sent} == {host.req.serialize()}
    assert all(peer == UDP for _, _, peer in host.sent)
    timeouts = events_of(host, TransactionTimedOut)
    assert [t for t, _ in timeouts] == [32.0]
    assert timeouts[0][1].transaction is tx and not timeouts[0][1].transport_error  # type: ignore[union-attr]
    assert tx.state is S.TERMINATED
    assert tx.deadline is None and tx.timer_deadlines() == {}
    assert host.forgotten == [tx]


def test_nict_timer_e_fires_every_t2_in_proceeding() -> None:
    tx, host = client_nict()
    run_timers(tx, host, 0.5)
    assert tx.timer_deadlines() == {"e": 1.5, "f": 32.0}
    tx.receive_response(response_to(host.req, 100), at(host, 0.75))
    assert tx.state is S.PROCEEDING
    assert [type(e) for _, e in host.events] == [ResponseReceived]
    run_timers(tx, host, 32.0)
    assert host.sent_times() == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [32.0]
    assert tx.state is S.TERMINATED


def test_nict_final_response_stops_retransmissions_and_arms_k_t4_over_udp() -> None:
    tx, host = client_nict()
    run_timers(tx, host, 1.5)
    ok = response_to(host.req, 200)
    tx.receive_response(ok, at(host, 2.0))
    assert tx.state is S.COMPLETED
    assert tx.timer_deadlines() == {"k": 7.0}
    assert tx.deadline == 7.0
    assert [(t, e.response) for t, e in events_of(host, ResponseReceived)] == [(2.0, ok)]  # type: ignore[union-attr]
    # Retransmitted finals are absorbed in Completed.
    tx.receive_response(response_to(host.req, 200), at(host, 3.0))
    assert len(host.events) == 1
    assert run_timers(tx, host, 100.0) == [7.0]
    assert host.sent_times() == [0.0, 0.5, 1.5]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]
    assert events_of(host, TransactionTimedOut) == []


def test_nict_over_tcp_has_no_retransmission_timer_and_k_is_zero() -> None:
    tx, host = client_nict(TCP)
    assert tx.timer_deadlines() == {"f": 32.0}
    tx.receive_response(response_to(host.req, 404), at(host, 3.0))
    assert tx.state is S.TERMINATED
    assert tx.deadline is None
    assert host.forgotten == [tx]
    assert host.sent_times() == [0.0]
    assert len(events_of(host, ResponseReceived)) == 1


def test_nict_over_tcp_times_out_with_f_and_sends_once() -> None:
    tx, host = client_nict(TCP)
    assert run_timers(tx, host, 100.0) == [32.0]
    assert host.sent_times() == [0.0]
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [32.0]


def test_nict_transport_error_terminates_and_informs_tu() -> None:
    tx, host = client_nict()
    tx.transport_error(at(host, 0.1))
    assert tx.state is S.TERMINATED
    (_, event), = host.events
    assert isinstance(event, TransactionTimedOut) and event.transport_error
    assert host.forgotten == [tx]


# ===========================================================================================================
# Client INVITE (§17.1.1)


def test_ict_timer_a_doubles_without_cap_until_b() -> None:
    tx, host = client_ict()
    assert tx.state is S.CALLING
    assert tx.timer_deadlines() == {"a": 0.5, "b": 32.0}
    run_timers(tx, host, 100.0)
    # A doubles past T2 (no cap for INVITE): 0.5, 1, 2, 4, 8, 16.
    assert host.sent_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [32.0]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]


def test_ict_provisional_stops_timer_a() -> None:
    tx, host = client_ict()
    run_timers(tx, host, 0.5)
    ringing = response_to(host.req, 180)
    tx.receive_response(ringing, at(host, 1.0))
    assert tx.state is S.PROCEEDING
    assert "a" not in tx.timer_deadlines()
    assert [e.response for _, e in events_of(host, ResponseReceived)] == [ringing]  # type: ignore[union-attr]
    tx.receive_response(response_to(host.req, 183), at(host, 2.0))
    assert len(events_of(host, ResponseReceived)) == 2  # every 1xx goes to the TU
    run_timers(tx, host, 31.0)
    assert host.sent_times() == [0.0, 0.5]


def test_ict_ringing_longer_than_timer_b_does_not_time_out() -> None:
    """RFC 3261 §17.1.1.2 / Figure 5: Timer B only fires "if the client transaction is still in the
    'Calling' state"; a phone may ring for minutes once a 1xx has moved the transaction to Proceeding."""
    tx, host = client_ict()
    tx.receive_response(response_to(host.req, 180), at(host, 0.2))
    run_timers(tx, host, 300.0)
    assert tx.state is S.PROCEEDING
    assert events_of(host, TransactionTimedOut) == []
    ok = response_to(host.req, 200)
    tx.receive_response(ok, at(host, 300.0))
    assert tx.state is S.ACCEPTED


def test_ict_non2xx_final_builds_and_sends_ack_per_17_1_1_3() -> None:
    tx, host = client_ict()
    busy = response_to(host.req, 486, to_tag="busy-tag")
    tx.receive_response(busy, at(host, 1.0))
    assert tx.state is S.COMPLETED
    assert tx.timer_deadlines() == {"d": 33.0}
    assert [e.response for _, e in events_of(host, ResponseReceived)] == [busy]  # type: ignore[union-attr]
    assert host.sent_times() == [0.0, 1.0]
    _, data, peer = host.sent[-1]
    assert peer == UDP
    ack = parse_message(data)
    assert isinstance(ack, Request)
    invite = host.req
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert [v.serialize() for v in ack.vias] == [invite.vias[0].serialize()]  # only the top Via, same branch
    assert ack.top_via.branch == BRANCH
    assert ack.call_id == invite.call_id
    assert ack.get("from") == invite.get("from")
    assert ack.to.tag == "busy-tag"
    assert ack.cseq.seq == invite.cseq.seq and ack.cseq.method == "ACK"
    assert ack.get_all("route") == invite.get_all("route") == ["<sip:proxy.example.com;lr>"]
    assert ack.max_forwards == 70
    assert ack.body == b""


def test_ict_ack_resent_for_each_retransmitted_final_then_d_ends() -> None:
    tx, host = client_ict()
    tx.receive_response(response_to(host.req, 486), at(host, 1.0))
    first_ack = host.sent[-1][1]
    tx.receive_response(response_to(host.req, 486), at(host, 1.5))
    tx.receive_response(response_to(host.req, 486), at(host, 2.5))
    assert host.sent_times() == [0.0, 1.0, 1.5, 2.5]
    assert [data for _, data, _ in host.sent[1:]] == [first_ack] * 3
    assert len(events_of(host, ResponseReceived)) == 1  # the TU sees the final once
    tx.receive_response(response_to(host.req, 200), at(host, 3.0))  # a stray 2xx in Completed: ignored
    assert len(host.events) == 1 and tx.state is S.COMPLETED
    assert run_timers(tx, host, 100.0) == [33.0]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]


def test_ict_timer_d_is_zero_over_tcp() -> None:
    tx, host = client_ict(TCP)
    assert tx.timer_deadlines() == {"b": 32.0}
    tx.receive_response(response_to(host.req, 603), at(host, 2.0))
    assert tx.state is S.TERMINATED
    assert host.sent_times() == [0.0, 2.0]  # the INVITE and one ACK
    assert parse_message(host.sent[-1][1]).start_line().startswith("ACK ")
    assert host.forgotten == [tx]


def test_ict_2xx_goes_to_accepted_with_m_and_every_2xx_reaches_the_tu() -> None:
    tx, host = client_ict()
    tx.receive_response(response_to(host.req, 180), at(host, 0.25))
    ok = response_to(host.req, 200)
    tx.receive_response(ok, at(host, 2.0))
    assert tx.state is S.ACCEPTED
    assert tx.timer_deadlines() == {"m": 34.0}
    again = response_to(host.req, 200)
    tx.receive_response(again, at(host, 2.5))
    tx.receive_response(response_to(host.req, 180), at(host, 2.6))  # late 1xx: absorbed
    passed = [e.response for _, e in events_of(host, ResponseReceived)]  # type: ignore[union-attr]
    assert passed[1:] == [ok, again]
    assert host.sent_times() == [0.0]  # the transaction never ACKs a 2xx: that is the TU's job
    assert run_timers(tx, host, 100.0) == [34.0]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]


def _parsed_messages_held(tx: Transaction) -> list[object]:
    """The parsed messages (or their header fields) ``tx`` itself references."""
    return [obj for obj in gc.get_referents(tx) if isinstance(obj, (Request, Response, list))]


@pytest.mark.parametrize("status", [200, 486])
def test_a_finished_client_invite_keeps_bytes_not_parsed_messages(status: int) -> None:
    """Accepted (Timer M) and Completed (Timer D) live 32 s: no parsed request or response in them, yet the
    request can still be had (parsed again from the bytes sent) and retransmissions are still handled."""
    tx, host = client_ict()
    assert _parsed_messages_held(tx), "while it runs, the transaction has its request"
    tx.receive_response(response_to(host.req, 180), at(host, 0.25))
    tx.receive_response(response_to(host.req, status), at(host, 1.0))
    assert tx.state is (S.ACCEPTED if status == 200 else S.COMPLETED)
    assert _parsed_messages_held(tx) == []
    again = tx.request
    assert again.method == "INVITE" and again.call_id == host.req.call_id and again.uri == host.req.uri
    assert again.cseq == host.req.cseq and again.get_all("route") == host.req.get_all("route")
    host.clear()
    tx.receive_response(response_to(host.req, status), at(host, 1.5))
    if status == 200:
        assert len(events_of(host, ResponseReceived)) == 1, "a retransmitted 2xx still reaches the TU"
    else:
        assert len(host.sent) == 1 and host.sent[0][1].startswith(b"ACK "), "and a 486 gets its ACK again"
    assert _parsed_messages_held(tx) == []


def test_a_completed_client_non_invite_keeps_bytes_not_parsed_messages() -> None:
    tx, host = client_nict()
    tx.receive_response(response_to(host.req, 200), at(host, 0.1))
    assert tx.state is S.COMPLETED and tx.method == "OPTIONS"
    assert _parsed_messages_held(tx) == []


# ===========================================================================================================
# Server non-INVITE (§17.2.2)


def test_nist_trying_absorbs_retransmissions_silently() -> None:
    tx, host = server_nist()
    assert tx.state is S.TRYING and tx.deadline is None
    tx.receive_request(make_request("OPTIONS"), at(host, 0.5))
    tx.receive_request(make_request("OPTIONS"), at(host, 1.5))
    assert host.sent == [] and host.events == []
    assert tx.state is S.TRYING


def test_nist_proceeding_resends_the_last_provisional() -> None:
    tx, host = server_nist()
    trying = response_to(host.req, 100)
    tx.respond(trying, at(host, 0.1))
    assert tx.state is S.PROCEEDING
    tx.receive_request(make_request("OPTIONS"), at(host, 0.5))
    assert [(t, d) for t, d, _ in host.sent] == [(0.1, trying.serialize()), (0.5, trying.serialize())]
    assert tx.deadline is None


def test_nist_completed_resends_final_and_j_is_64_t1_over_udp() -> None:
    tx, host = server_nist()
    ok = response_to(host.req, 200)
    tx.respond(ok, at(host, 1.0))
    assert tx.state is S.COMPLETED
    assert tx.timer_deadlines() == {"j": 33.0}
    tx.receive_request(make_request("OPTIONS"), at(host, 1.5))
    tx.receive_request(make_request("OPTIONS"), at(host, 32.9))
    assert [(t, d) for t, d, _ in host.sent] == [(1.0, ok.serialize()), (1.5, ok.serialize()),
                                                   (32.9, ok.serialize())]
    assert run_timers(tx, host, 100.0) == [33.0]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]
    tx.receive_request(make_request("OPTIONS"), at(host, 40.0))  # Terminated absorbs quietly
    assert len(host.sent) == 3


def test_nist_timer_j_is_zero_over_tcp() -> None:
    tx, host = server_nist(TCP)
    tx.respond(response_to(host.req, 200), at(host, 1.0))
    assert tx.state is S.TERMINATED
    assert tx.deadline is None and host.forgotten == [tx]
    assert [p for _, _, p in host.sent] == [TCP]


def test_nist_second_final_response_is_local_misuse() -> None:
    tx, host = server_nist()
    tx.respond(response_to(host.req, 200), at(host, 1.0))
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 486), at(host, 1.1))
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 180), at(host, 1.2))
    assert tx.state is S.COMPLETED
    assert len(host.sent) == 1


def test_nist_refused_response_does_not_replace_the_one_retransmitted() -> None:
    """A response the table refuses must leave the transaction as it was (h11: a LocalProtocolError
    changes nothing); the next retransmitted request must still get the 200 that was really sent."""
    tx, host = server_nist()
    ok = response_to(host.req, 200)
    tx.respond(ok, at(host, 1.0))
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 486), at(host, 1.1))
    tx.receive_request(make_request("OPTIONS"), at(host, 1.5))
    assert [d for _, d, _ in host.sent] == [ok.serialize(), ok.serialize()]


def test_nist_stateless_final_is_sent_once_and_keeps_no_state() -> None:
    """§8.2.7: a stateless answer (the registrar's 401 challenge) ends the transaction at once, with no
    Timer J; the endpoint forgets it, so a retransmitted request is a new one for the TU."""
    tx, host = server_nist()
    challenge = response_to(host.req, 401)
    tx.respond(challenge, at(host, 1.0), stateless=True)
    assert tx.state is S.TERMINATED
    assert tx.deadline is None and tx.timer_deadlines() == {} and host.reschedules == []
    assert host.forgotten == [tx]
    assert host.sent == [(1.0, challenge.serialize(), UDP)]
    assert tx.request is None


def test_nist_stateless_is_refused_for_provisionals_and_once_proceeding() -> None:
    tx, host = server_nist()
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 180), at(host, 0.5), stateless=True)
    assert (tx.state, host.sent) == (S.TRYING, [])
    trying = response_to(host.req, 100)
    tx.respond(trying, at(host, 1.0))
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 401), at(host, 1.1), stateless=True)
    assert tx.state is S.PROCEEDING and host.forgotten == []
    assert [d for _, d, _ in host.sent] == [trying.serialize()]


def test_invite_server_transaction_never_answers_statelessly() -> None:
    tx, host = server_ist()
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 407), at(host, 0.5), stateless=True)
    assert tx.state is S.PROCEEDING and host.forgotten == []


# ===========================================================================================================
# Server INVITE (§17.2.1, RFC 6026)


def test_ist_proceeding_resends_the_last_provisional() -> None:
    tx, host = server_ist()
    assert tx.state is S.PROCEEDING and tx.deadline is None
    trying = response_to(host.req, 100)
    tx.respond(trying, at(host, 0.0))
    tx.receive_request(make_request("INVITE"), at(host, 0.5))
    ringing = response_to(host.req, 180)
    tx.respond(ringing, at(host, 0.7))
    tx.receive_request(make_request("INVITE"), at(host, 1.5))
    assert [(t, d) for t, d, _ in host.sent] == [(0.0, trying.serialize()), (0.5, trying.serialize()),
                                                   (0.7, ringing.serialize()), (1.5, ringing.serialize())]
    assert tx.deadline is None


def test_ist_timer_g_doubles_up_to_t2_and_h_times_out_without_ack() -> None:
    tx, host = server_ist()
    busy = response_to(host.req, 486)
    tx.respond(busy, at(host, 1.0))
    assert tx.state is S.COMPLETED
    assert tx.timer_deadlines() == {"g": 1.5, "h": 33.0}
    run_timers(tx, host, 100.0)
    assert host.sent_times() == [1.0, 1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5]
    assert {d for _, d, _ in host.sent} == {busy.serialize()}
    timeouts = events_of(host, TransactionTimedOut)
    assert [t for t, _ in timeouts] == [33.0]
    assert not timeouts[0][1].transport_error  # type: ignore[union-attr]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]


def test_ist_completed_resends_final_on_invite_retransmission() -> None:
    tx, host = server_ist()
    busy = response_to(host.req, 486)
    tx.respond(busy, at(host, 1.0))
    tx.receive_request(make_request("INVITE"), at(host, 1.2))
    assert [(t, d) for t, d, _ in host.sent] == [(1.0, busy.serialize()), (1.2, busy.serialize())]
    assert tx.timer_deadlines() == {"g": 1.5, "h": 33.0}  # a retransmission does not move Timer G


def test_ist_ack_confirms_and_timer_i_is_t4_over_udp() -> None:
    tx, host = server_ist()
    busy = response_to(host.req, 486)
    tx.respond(busy, at(host, 1.0))
    run_timers(tx, host, 1.5)
    tx.receive_request(ack_for(host.req, busy), at(host, 2.0))
    assert tx.state is S.CONFIRMED
    assert tx.timer_deadlines() == {"i": 7.0}
    tx.receive_request(ack_for(host.req, busy), at(host, 3.0))  # ACK retransmissions absorbed
    tx.receive_request(make_request("INVITE"), at(host, 4.0))
    assert run_timers(tx, host, 100.0) == [7.0]
    assert host.sent_times() == [1.0, 1.5]
    assert host.events == []
    assert tx.state is S.TERMINATED and host.forgotten == [tx]


def test_ist_over_tcp_no_timer_g_h_still_64_t1_and_i_zero() -> None:
    tx, host = server_ist(TCP)
    busy = response_to(host.req, 486)
    tx.respond(busy, at(host, 1.0))
    assert tx.timer_deadlines() == {"h": 33.0}
    tx.receive_request(ack_for(host.req, busy), at(host, 1.25))
    assert tx.state is S.TERMINATED
    assert tx.deadline is None and host.forgotten == [tx]
    assert host.sent_times() == [1.0]


def test_ist_over_tcp_h_still_fires_without_ack() -> None:
    tx, host = server_ist(TCP)
    tx.respond(response_to(host.req, 486), at(host, 1.0))
    assert run_timers(tx, host, 100.0) == [33.0]
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [33.0]
    assert host.sent_times() == [1.0]


def test_ist_2xx_goes_to_accepted_with_timer_l() -> None:
    tx, host = server_ist()
    tx.respond(response_to(host.req, 180), at(host, 0.0))
    ok = response_to(host.req, 200)
    tx.respond(ok, at(host, 2.0))
    assert tx.state is S.ACCEPTED
    assert tx.timer_deadlines() == {"l": 34.0}
    tx.receive_request(make_request("INVITE"), at(host, 2.5))  # RFC 6026: absorbed, the TU resends 2xx
    assert host.sent_times() == [0.0, 2.0]
    tx.respond(ok, at(host, 3.0))  # the TU's own 2xx retransmission passes through
    assert [(t, d) for t, d, _ in host.sent[1:]] == [(2.0, ok.serialize()), (3.0, ok.serialize())]
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 486), at(host, 3.5))
    assert run_timers(tx, host, 100.0) == [34.0]
    assert tx.state is S.TERMINATED and host.forgotten == [tx]
    assert host.events == []


def test_ist_refused_response_does_not_change_what_timer_g_retransmits() -> None:
    """After a 486, a refused 200 from the TU (LocalProtocolError) must not become the response that
    Timer G keeps retransmitting (§17.2.1: G retransmits the final response that was sent)."""
    tx, host = server_ist()
    busy = response_to(host.req, 486)
    tx.respond(busy, at(host, 1.0))
    with pytest.raises(LocalProtocolError):
        tx.respond(response_to(host.req, 200), at(host, 1.2))
    run_timers(tx, host, 1.5)
    assert [d for _, d, _ in host.sent] == [busy.serialize(), busy.serialize()]


# ===========================================================================================================
# Custom T1/T2/T4: every deadline follows the TimerConfig


CONFIGS = [TimerConfig(), TimerConfig(t1=0.25, t2=2.0, t4=3.0), TimerConfig(t1=1.0, t2=8.0, t4=10.0)]


def _ids(c: TimerConfig) -> str:
    return f"t1={c.t1},t2={c.t2},t4={c.t4}"


def expected_schedule(first: float, t1: float, cap: float | None, end: float) -> list[float]:
    """Send times of a retransmission timer: at 0, then after T1, 2*T1, ... (capped at ``cap``) before end."""
    times, t, interval = [0.0], first, t1
    while t < end:
        times.append(t)
        interval = 2 * interval if cap is None else min(2 * interval, cap)
        t += interval
    return times


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_custom_timers_client_non_invite(config: TimerConfig) -> None:
    tx, host = client_nict(config=config)
    assert tx.timer_deadlines() == {"e": config.t1, "f": 64 * config.t1}
    run_timers(tx, host, 1000.0)
    assert host.sent_times() == expected_schedule(config.t1, config.t1, config.t2, 64 * config.t1)
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [64 * config.t1]
    tx2, host2 = client_nict(config=config)
    tx2.receive_response(response_to(host2.req, 200), at(host2, 0.125))
    assert tx2.timer_deadlines() == {"k": 0.125 + config.t4}


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_custom_timers_client_invite(config: TimerConfig) -> None:
    tx, host = client_ict(config=config)
    assert tx.timer_deadlines() == {"a": config.t1, "b": 64 * config.t1}
    run_timers(tx, host, 1000.0)
    assert host.sent_times() == expected_schedule(config.t1, config.t1, None, 64 * config.t1)
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [64 * config.t1]
    tx2, host2 = client_ict(config=config)
    tx2.receive_response(response_to(host2.req, 500), at(host2, 0.125))
    # Timer D: "> 32 s for UDP" (Table 4), whatever T1 is; the engine uses max(32 s, 64*T1).
    assert tx2.timer_deadlines() == {"d": 0.125 + max(32.0, 64 * config.t1)}
    tx3, host3 = client_ict(config=config)
    tx3.receive_response(response_to(host3.req, 200), at(host3, 0.125))
    assert tx3.timer_deadlines() == {"m": 0.125 + 64 * config.t1}


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_custom_timers_server_invite(config: TimerConfig) -> None:
    tx, host = server_ist(config=config)
    busy = response_to(host.req, 486)
    tx.respond(busy, at(host, 0.0))
    assert tx.timer_deadlines() == {"g": config.t1, "h": 64 * config.t1}
    run_timers(tx, host, 1000.0)
    assert host.sent_times() == expected_schedule(config.t1, config.t1, config.t2, 64 * config.t1)
    assert [t for t, _ in events_of(host, TransactionTimedOut)] == [64 * config.t1]
    tx2, host2 = server_ist(config=config)
    tx2.respond(busy, at(host2, 0.0))
    tx2.receive_request(ack_for(host2.req, busy), at(host2, 0.125))
    assert tx2.timer_deadlines() == {"i": 0.125 + config.t4}
    tx3, host3 = server_ist(config=config)
    tx3.respond(response_to(host3.req, 200), at(host3, 0.125))
    assert tx3.timer_deadlines() == {"l": 0.125 + 64 * config.t1}


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_custom_timers_server_non_invite(config: TimerConfig) -> None:
    tx, host = server_nist(config=config)
    tx.respond(response_to(host.req, 200), at(host, 0.125))
    assert tx.timer_deadlines() == {"j": 0.125 + 64 * config.t1}
    assert run_timers(tx, host, 1000.0) == [0.125 + 64 * config.t1]


def test_timer_config_timeout_is_64_t1() -> None:
    assert TimerConfig().timeout == 32.0
    assert TimerConfig(t1=0.25).timeout == 16.0


# ===========================================================================================================
# Every (state, input) pair of every table


KINDS: dict[str, type[Transaction]] = {
    "client-non-invite": ClientNonInviteTransaction,
    "client-invite": ClientInviteTransaction,
    "server-non-invite": ServerNonInviteTransaction,
    "server-invite": ServerInviteTransaction,
}
TIMER_INPUTS = {i for i in Inp if i.name.startswith("TIMER_")}


def new_tx(kind: str, peer: Peer = UDP) -> tuple[Transaction, FakeHost]:
    if kind == "client-non-invite":
        return client_nict(peer)
    if kind == "client-invite":
        return client_ict(peer)
    if kind == "server-non-invite":
        return server_nist(peer)
    return server_ist(peer)


#: How each kind really gets to each state it can be in, as steps from a fresh UDP transaction.
PATHS: dict[str, dict[TransactionState, tuple[str, ...]]] = {
    "client-non-invite": {S.TRYING: (), S.PROCEEDING: ("recv 180",), S.COMPLETED: ("recv 404",),
                          S.TERMINATED: ("recv 404", "timers")},
    "client-invite": {S.CALLING: (), S.PROCEEDING: ("recv 180",), S.COMPLETED: ("recv 486",),
                      S.ACCEPTED: ("recv 200",), S.TERMINATED: ("recv 486", "timers")},
    "server-non-invite": {S.TRYING: (), S.PROCEEDING: ("send 180",), S.COMPLETED: ("send 200",),
                          S.TERMINATED: ("send 200", "timers")},
    "server-invite": {S.PROCEEDING: ("send 100",), S.COMPLETED: ("send 486",),
                      S.CONFIRMED: ("send 486", "ack"), S.ACCEPTED: ("send 200",),
                      S.TERMINATED: ("send 486", "ack", "timers")},
}


def step(tx: Transaction, host: FakeHost, what: str) -> None:
    if what == "timers":
        run_timers(tx, host, 1000.0)
    elif what == "ack":
        assert isinstance(tx, ServerTransaction)
        tx.receive_request(ack_for(host.req, response_to(host.req, 486)), host.now)
    else:
        verb, status = what.split()
        if verb == "recv":
            assert isinstance(tx, ClientTransaction)
            tx.receive_response(response_to(host.req, int(status)), host.now)
        else:
            assert isinstance(tx, ServerTransaction)
            tx.respond(response_to(host.req, int(status)), host.now)


def reach(kind: str, state: TransactionState) -> tuple[Transaction, FakeHost]:
    """A UDP transaction of ``kind`` brought to ``state`` by the inputs that really lead there (states a
    kind never enters are forced, to check that its table refuses every input there)."""
    tx, host = new_tx(kind)
    at(host, 0.25)
    steps = PATHS[kind].get(state)
    if steps is None:
        tx.state = state
    else:
        for what in steps:
            step(tx, host, what)
    assert tx.state is state
    host.clear()
    at(host, 1000.0 if state is S.TERMINATED else 0.75)
    return tx, host


def feed(tx: Transaction, host: FakeHost, inp: TransactionInput, now: float) -> None:
    """Give ``inp`` to ``tx`` through its public API (timers and inputs a kind has no API for go straight
    to the table walk: a timer cannot be armed in a state whose table does not list it)."""
    if isinstance(tx, ServerTransaction):
        if inp in (Inp.SEND_1XX, Inp.SEND_2XX, Inp.SEND_FINAL):
            status = {Inp.SEND_1XX: 180, Inp.SEND_2XX: 200, Inp.SEND_FINAL: 486}[inp]
            tx.respond(response_to(host.req, status), now)
            return
        if inp is Inp.SEND_STATELESS:
            tx.respond(response_to(host.req, 401), now, stateless=True)
            return
        if inp is Inp.RECV_REQUEST:
            tx.receive_request(make_request(host.req.method), now)
            return
        if inp is Inp.RECV_ACK:
            tx.receive_request(ack_for(host.req, response_to(host.req, 486)), now)
            return
    if isinstance(tx, ClientTransaction) and inp in (Inp.RECV_1XX, Inp.RECV_2XX, Inp.RECV_FINAL):
        status = {Inp.RECV_1XX: 180, Inp.RECV_2XX: 200, Inp.RECV_FINAL: 486}[inp]
        tx.receive_response(response_to(host.req, status), now)
        return
    if inp is Inp.TRANSPORT_ERROR:
        tx.transport_error(now)
        return
    tx._input(inp, now)


def _sent_kinds(host: FakeHost) -> list[str]:
    return [d.split(b" ", 1)[0].decode() if not d.startswith(b"SIP/2.0") else d[8:11].decode()
            for _, d, _ in host.sent]


def check_effect(handler: str | None, tx: Transaction, host: FakeHost,
                 inp: TransactionInput | None = None) -> None:
    """What each named handler must visibly do (None: nothing at all)."""
    timers = tx.timer_deadlines()
    events = [e for _, e in host.events]
    sent = _sent_kinds(host)
    if handler is None and inp is Inp.RECV_ACK and tx.state is S.ACCEPTED:
        # RFC 6026 (Accepted: ACK to TU): an ACK matching here is the ACK for the 2xx, the TU's business.
        assert sent == []
        assert len(events) == 1 and isinstance(events[0], RequestReceived) and events[0].transaction is None
    elif handler is None:
        assert sent == [] and events == []
    elif handler == "_send_last":
        assert len(sent) == 1 and sent[0].isdigit() and events == []
    elif handler == "_send_final":
        assert len(sent) == 1 and int(sent[0]) >= 200
        assert ("j" in timers) if isinstance(tx, ServerNonInviteTransaction) else {"g", "h"} <= set(timers)
    elif handler == "_send_2xx":
        assert sent == ["200"] and "l" in timers
    elif handler == "_retransmit_final":
        assert len(sent) == 1 and int(sent[0]) >= 300 and "g" in timers
    elif handler == "_confirm":
        assert sent == [] and set(timers) == {"i"}
    elif handler in ("_no_ack", "_timed_out"):
        assert len(events) == 1 and isinstance(events[0], TransactionTimedOut)
        assert not events[0].transport_error
    elif handler == "_terminated_by_error":
        assert len(events) == 1 and isinstance(events[0], TransactionTimedOut) and events[0].transport_error
    elif handler == "_retransmit":
        assert isinstance(tx, ClientTransaction)
        assert [d for _, d, _ in host.sent] == [tx.request.serialize()]
    elif handler == "_pass_up":
        assert len(events) == 1 and isinstance(events[0], ResponseReceived) and sent == []
    elif handler == "_proceed":
        assert len(events) == 1 and isinstance(events[0], ResponseReceived) and "a" not in timers
    elif handler == "_accept":
        assert len(events) == 1 and isinstance(events[0], ResponseReceived)
        assert set(timers) == {"m"}
    elif handler == "_complete":
        assert len(events) == 1 and isinstance(events[0], ResponseReceived)
        if isinstance(tx, ClientInviteTransaction):
            assert sent == ["ACK"] and set(timers) == {"d"}
        else:
            assert sent == [] and set(timers) == {"k"}
    elif handler == "_send_ack":
        assert sent == ["ACK"] and events == []
    else:
        pytest.fail(f"no expected effect written for handler {handler}")


ALL_PAIRS = [
    pytest.param(kind, state, inp, id=f"{kind}-{state.value}-{inp.name}")
    for kind in KINDS
    for state in TransactionState
    for inp in TransactionInput
]


@pytest.mark.parametrize(("kind", "state", "inp"), ALL_PAIRS)
def test_every_state_input_pair(kind: str, state: TransactionState, inp: TransactionInput) -> None:
    table = KINDS[kind].TABLE
    tx, host = reach(kind, state)
    before = dict(tx.timer_deadlines())
    if (state, inp) in table:
        handler, target = table[(state, inp)]
        feed(tx, host, inp, host.now)
        assert tx.state is target
        check_effect(handler, tx, host, inp)
        if target is S.TERMINATED and state is not S.TERMINATED:
            assert host.forgotten == [tx]
            assert tx.deadline is None
    else:
        with pytest.raises(LocalProtocolError):
            feed(tx, host, inp, host.now)
        assert tx.state is state
        assert tx.timer_deadlines() == before
        assert host.events == [] and host.forgotten == []


def test_every_table_handler_has_an_expected_effect() -> None:
    known = {None, "_send_last", "_send_final", "_send_2xx", "_retransmit_final", "_confirm", "_no_ack",
             "_timed_out", "_terminated_by_error", "_retransmit", "_pass_up", "_proceed", "_accept",
             "_complete", "_send_ack"}
    for cls in KINDS.values():
        for (_, _), (handler, _) in cls.TABLE.items():
            assert handler in known, f"{cls.__name__}: {handler}"
            assert handler is None or callable(getattr(cls, handler))


def test_tables_only_use_states_each_kind_can_reach() -> None:
    for kind, cls in KINDS.items():
        reachable = set(PATHS[kind])
        assert {s for s, _ in cls.TABLE} <= reachable
        assert {t for _, t in cls.TABLE.values()} <= reachable


@settings(max_examples=300, deadline=None, database=None)
@given(kind=st.sampled_from(sorted(KINDS)),
       inputs=st.lists(st.sampled_from(list(TransactionInput)), max_size=25))
def test_random_input_sequences_follow_the_table(kind: str, inputs: list[TransactionInput]) -> None:
    """h2-style: any sequence of inputs either follows the table or raises LocalProtocolError and changes
    nothing; a transaction is forgotten exactly once, when it terminates, and keeps no timer after."""
    tx, host = new_tx(kind)
    table = KINDS[kind].TABLE
    now = 0.0
    for inp in inputs:
        now += 0.25
        at(host, now)
        state = tx.state
        if (state, inp) in table:
            feed(tx, host, inp, now)
            assert tx.state is table[(state, inp)][1]
        else:
            timers = tx.timer_deadlines()
            with pytest.raises(LocalProtocolError):
                feed(tx, host, inp, now)
            assert tx.state is state and tx.timer_deadlines() == timers
        if tx.state is S.TERMINATED:
            assert host.forgotten == [tx]
            assert tx.deadline is None
        else:
            assert host.forgotten == []
            deadlines = tx.timer_deadlines()
            assert tx.deadline == (min(deadlines.values()) if deadlines else None)
