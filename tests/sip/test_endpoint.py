"""SipEndpoint over the in-memory pair harness: retransmissions, loss, CANCEL, ACK, RFC 2543 matching,
RFC 3581 received/rport, stateless answers to malformed requests, and transaction lifetimes.

The link latency is 0.125 s and T1 0.5 s, so every arrival and retransmission time below is exact.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from engine.sip.endpoint import EndpointConfig, SipEndpoint, response_peer, server_key
from engine.sip.errors import SipParseError
from engine.sip.events import (
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from engine.sip.message import Request, make_response
from engine.sip.parser import parse_message
from engine.sip.sanity import check_request
from engine.sip.transaction import Peer, ServerInviteTransaction, TransactionState
from tests.sip.harness import (
    TU,
    Datagram,
    Match,
    Network,
    Node,
    RawNode,
    answer,
    build_request,
    is_request,
    is_response,
    raw_request,
    sent_from,
)

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "torture"
PBX_URI = "sip:201@10.0.0.2"


def pair(tu_server: TU | None = None) -> tuple[Network, Node, Node]:
    net = Network()
    alice = net.add_endpoint("alice", "10.0.0.1", 5060, seed=1)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2, tu=tu_server or answer(200))
    return net, alice, pbx


def statuses(node: Node) -> list[int]:
    return [e.response.status for e in node.events if isinstance(e, ResponseReceived)]


def response_times(node: Node) -> list[tuple[float, int]]:
    return [(t, e.response.status) for t, e in zip(node.event_times, node.events, strict=True)
            if isinstance(e, ResponseReceived)]


def wire(net: Network, match: Match) -> list[Datagram]:
    return [d for d in net.sent if match(d)]


def ack_2xx_tu(to: Node) -> TU:
    """A UAC core that ACKs every 2xx to INVITE end to end (new branch, sent statelessly, §13.2.2.4)."""
    def tu(node: Node, event: Event) -> None:
        if isinstance(event, ResponseReceived) and event.response.cseq.method == "INVITE" \
                and 200 <= event.response.status < 300:
            resp = event.response
            ack = build_request("ACK", PBX_URI, to=resp.get("to"), call_id=resp.call_id, cseq=resp.cseq.seq)
            ack.add("via", f"SIP/2.0/UDP 10.0.0.1:5060;branch={node.endpoint.new_branch()};rport", first=True)
            node.endpoint.send_stateless(ack, to.peer)
    return tu


# -- basic exchange and exact timers ----------------------------------------------------------------------


def test_options_round_trip_with_exact_timers_and_no_leak() -> None:
    net, alice, pbx = pair()
    tx = alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), pbx.peer, net.now)
    assert alice.endpoint.get_timer() == 0.5  # Timer E
    assert alice.endpoint.transaction_count == 1
    net.run(until=0.3)
    assert response_times(alice) == [(0.25, 200)]
    (req_event,) = pbx.requests()
    assert pbx.event_times == [0.125]
    assert req_event.request.method == "OPTIONS"
    assert req_event.peer == alice.peer
    assert tx.state is TransactionState.COMPLETED
    assert alice.endpoint.get_timer() == 5.25  # Timer K = T4 after the 200
    assert pbx.endpoint.get_timer() == 32.125  # Timer J = 64*T1 after the 200
    net.run(until=5.25)
    assert alice.endpoint.transaction_count == 0
    assert alice.endpoint.get_timer() is None
    assert pbx.endpoint.transaction_count == 1
    net.run(until=32.125)
    assert pbx.endpoint.transaction_count == 0
    assert pbx.endpoint.get_timer() is None
    assert len(net.sent) == 2  # one request, one response: nothing retransmitted


def test_send_request_adds_our_via_with_a_fresh_branch_and_rport() -> None:
    net, alice, pbx = pair()
    alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), pbx.peer, net.now)
    alice.endpoint.send_request(build_request("OPTIONS", PBX_URI, cseq=2), pbx.peer, net.now)
    net.run(until=0.2)
    vias = [e.request.vias for e in pbx.requests()]
    assert [len(v) for v in vias] == [1, 1]
    branches = [v[0].branch for v in vias]
    assert all(b is not None and b.startswith("z9hG4bK") for b in branches)
    assert branches[0] != branches[1]
    assert [(v[0].host, v[0].port) for v in vias] == [("10.0.0.1", 5060)] * 2
    assert all(v[0].params.get("rport") == "5060" for v in vias)


def test_lost_request_is_recovered_by_timer_e() -> None:
    net, alice, pbx = pair()
    net.drop(is_request("OPTIONS"))
    alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), pbx.peer, net.now)
    net.run(until=40.0)
    assert pbx.event_times == [0.625]  # the retransmission at T1 arrives
    assert response_times(alice) == [(0.75, 200)]
    assert len(net.dropped) == 1
    assert alice.endpoint.transaction_count == 0 and pbx.endpoint.transaction_count == 0


def test_lost_response_is_replayed_to_the_retransmission_and_the_tu_sees_the_request_once() -> None:
    net, alice, pbx = pair()
    net.drop(is_response(200))
    alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), pbx.peer, net.now)
    net.run(until=1.0)
    assert len(pbx.requests()) == 1
    assert pbx.endpoint.stats["retransmissions_absorbed"] == 1
    assert response_times(alice) == [(0.75, 200)]
    oks = wire(net, sent_from(pbx, is_response(200)))
    assert [d.sent_at for d in oks] == [0.125, 0.625]
    assert oks[0].data == oks[1].data  # the stored answer, byte for byte


def test_duplicated_response_reaches_the_tu_once() -> None:
    net, alice, pbx = pair()
    net.duplicate(is_response(200), gap=0.0625)
    alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), pbx.peer, net.now)
    net.run(until=40.0)
    assert statuses(alice) == [200]
    assert alice.endpoint.stats["responses"] == 2


def test_request_timeout_after_64_t1_when_nobody_answers() -> None:
    net, alice, _ = pair()
    net.drop(is_request("OPTIONS"), times=None)
    tx = alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), Peer("UDP", "10.0.0.2", 5060), 0.0)
    net.run(until=100.0)
    (timeout,) = alice.events
    assert isinstance(timeout, TransactionTimedOut) and timeout.transaction is tx
    assert alice.event_times == [32.0]
    assert [d.sent_at for d in net.sent] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert alice.endpoint.transaction_count == 0


# -- INVITE -------------------------------------------------------------------------------------------------


def test_invite_duplicated_is_seen_once_and_provisionals_reach_the_client() -> None:
    net, alice, pbx = pair(answer(200, provisional=180))
    alice.tu = ack_2xx_tu(pbx)
    net.duplicate(is_request("INVITE"), gap=0.0625)
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=1.0)
    assert len(pbx.requests("INVITE")) == 1
    assert pbx.endpoint.stats["retransmissions_absorbed"] == 1
    assert statuses(alice) == [100, 180, 200]
    # Accepted absorbs the duplicate silently: the TU, not the transaction, retransmits a 2xx.
    sent = [d.data[:11] for d in wire(net, sent_from(pbx))]
    assert sent == [b"SIP/2.0 100", b"SIP/2.0 180", b"SIP/2.0 200"]


def test_ack_for_2xx_reaches_the_tu_without_a_transaction() -> None:
    net, alice, pbx = pair(answer(200))
    alice.tu = ack_2xx_tu(pbx)
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=1.0)
    (ack,) = pbx.requests("ACK")
    assert ack.transaction is None
    assert ack.peer == alice.peer
    assert pbx.event_times[-1] == 0.375
    assert not any(d.data.startswith(b"SIP/2.0") and b"CSeq: 1 ACK" in d.data for d in net.sent)


def test_retransmitted_2xx_reaches_the_client_tu_each_time() -> None:
    """RFC 6026: the client INVITE transaction in Accepted passes every 2xx up (the TU re-ACKs each)."""
    net, alice, pbx = pair(answer(200))
    alice.tu = ack_2xx_tu(pbx)
    net.duplicate(is_response(200, "INVITE"), gap=0.25)
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=1.0)
    assert response_times(alice) == [(0.25, 100), (0.25, 200), (0.5, 200)]
    assert len(pbx.requests("ACK")) == 2


def test_late_2xx_after_timer_m_reaches_the_tu_without_a_transaction() -> None:
    net, alice, pbx = pair(answer(200))
    net.duplicate(is_response(200, "INVITE"), gap=40.0)  # the copy arrives after Timer M (32.25)
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=100.0)
    late = [(t, e) for t, e in zip(alice.event_times, alice.events, strict=True)
            if isinstance(e, ResponseReceived) and e.response.status == 200]
    assert [t for t, _ in late] == [0.25, 40.25]
    assert late[0][1].transaction is not None  # type: ignore[union-attr]
    assert late[1][1].transaction is None  # type: ignore[union-attr]
    assert alice.endpoint.transaction_count == 0


def test_reordered_provisional_after_the_final_is_ignored() -> None:
    net, alice, pbx = pair(answer(200, provisional=180))
    net.delay(is_response(180), by=1.0)
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=2.0)
    assert statuses(alice) == [100, 200]
    assert alice.endpoint.stats["responses"] == 3


def test_rejected_invite_is_acked_by_the_transaction_and_the_ack_absorbed_by_the_server() -> None:
    net, alice, pbx = pair(answer(486))
    net.drop(is_request("ACK"))  # the first ACK is lost: Timer G brings the 486 back
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=1.0)
    assert response_times(alice) == [(0.25, 100), (0.25, 486)]  # the TU sees the 486 once
    busy = wire(net, sent_from(pbx, is_response(486)))
    assert [d.sent_at for d in busy] == [0.125, 0.625]
    acks = wire(net, sent_from(alice, is_request("ACK")))
    assert [d.sent_at for d in acks] == [0.25, 0.75]
    assert acks[0].data == acks[1].data
    invite = wire(net, is_request("INVITE"))[0].parsed()
    ack = acks[0].parsed()
    assert ack.top_via.branch == invite.top_via.branch
    assert pbx.requests("ACK") == []  # absorbed by the INVITE server transaction
    assert pbx.endpoint.get_timer() == 5.875  # Timer I after the ACK that arrived at 0.875
    net.run(until=100.0)
    assert len(busy) == 2  # no Timer G retransmission after the ACK
    assert [d.sent_at for d in wire(net, sent_from(pbx, is_response(486)))] == [0.125, 0.625]
    assert alice.endpoint.transaction_count == 0 and pbx.endpoint.transaction_count == 0


def test_invite_server_times_out_without_ack() -> None:
    net, alice, pbx = pair(answer(486))
    net.drop(is_request("ACK"), times=None)
    alice.endpoint.send_request(build_request("INVITE", PBX_URI), pbx.peer, net.now)
    net.run(until=100.0)
    (timeout,) = pbx.events_of(TransactionTimedOut)
    assert pbx.event_times[-1] == 32.125  # Timer H = 64*T1 after the 486 was sent at 0.125
    assert isinstance(timeout, TransactionTimedOut)
    assert pbx.endpoint.transaction_count == 0


# -- CANCEL -------------------------------------------------------------------------------------------------


def cancel_pbx_tu(node: Node, event: Event) -> None:
    """Rings on INVITE; on CANCEL answers the INVITE 487 (§9.2)."""
    ep = node.endpoint
    if isinstance(event, RequestReceived) and event.transaction is not None \
            and event.request.method == "INVITE":
        ep.respond(event.transaction, make_response(event.request, 180, to_tag="pbx-tag"), node.net.now)
    elif isinstance(event, CancelReceived):
        invite_tx = event.invite_transaction
        assert isinstance(invite_tx, ServerInviteTransaction)
        invite = node.requests("INVITE")[-1].request
        ep.respond(invite_tx, make_response(invite, 487, to_tag="pbx-tag"), node.net.now)


PHONE_VIA = "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKinv-1;rport"


def phone_and_pbx() -> tuple[Network, RawNode, Node]:
    net = Network()
    phone = net.add_raw("phone", "10.0.0.9", 5070)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=cancel_pbx_tu, seed=3)
    return net, phone, pbx


def test_cancel_matching_a_pending_invite_gets_200_and_cancel_received() -> None:
    net, phone, pbx = phone_and_pbx()
    phone.send(raw_request("INVITE", via=PHONE_VIA), pbx)
    net.run(until=1.0)
    phone.send(raw_request("CANCEL", via=PHONE_VIA), pbx)
    net.run(until=1.25)
    got = [(r.status, r.cseq.method) for r in phone.responses()]
    assert got == [(100, "INVITE"), (180, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    (cancelled,) = pbx.events_of(CancelReceived)
    assert isinstance(cancelled, CancelReceived)
    assert cancelled.invite_transaction is pbx.requests("INVITE")[0].transaction
    assert getattr(cancelled.invite_transaction, "cancelled", False) is True
    assert cancelled.cancel.method == "CANCEL"
    assert pbx.requests("CANCEL") == []  # the endpoint answered it itself
    ok = phone.responses()[2]
    assert ok.to.tag is not None
    phone.send(raw_request("ACK", via=PHONE_VIA, to_tag="pbx-tag"), pbx)  # before Timer G at 1.625
    net.run(until=100.0)
    assert len(phone.responses()) == 4  # the ACK stopped Timer G
    assert pbx.requests("ACK") == []  # the ACK for the 487 belongs to the INVITE transaction
    assert pbx.endpoint.transaction_count == 0


def test_unmatched_cancel_gets_481() -> None:
    net, phone, pbx = phone_and_pbx()
    phone.send(raw_request("CANCEL", via="SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKnothing;rport"), pbx)
    net.run(until=1.0)
    (resp,) = phone.responses()
    assert (resp.status, resp.cseq.method) == (481, "CANCEL")
    assert resp.to.tag is not None
    assert pbx.events == []


def test_retransmitted_cancel_is_answered_from_its_transaction() -> None:
    net, phone, pbx = phone_and_pbx()
    phone.send(raw_request("INVITE", via=PHONE_VIA), pbx)
    net.run(until=1.0)
    phone.send(raw_request("CANCEL", via=PHONE_VIA), pbx)
    phone.send(raw_request("CANCEL", via=PHONE_VIA), pbx)
    net.run(until=2.0)
    oks = [r for r in phone.responses() if r.cseq.method == "CANCEL"]
    assert [r.status for r in oks] == [200, 200]
    assert len(pbx.events_of(CancelReceived)) == 1


def test_cancel_after_the_final_response_is_answered_200_without_effect() -> None:
    """RFC 3261 §9.2: when the INVITE transaction still exists but has already sent its final response,
    "the CANCEL request has no effect on the processing of the original request" and "as long as the CANCEL
    matched an existing transaction, the UAS answers the CANCEL request itself with a 200 (OK)". 481 is
    only for a CANCEL that matches no transaction."""
    net = Network()
    phone = net.add_raw("phone", "10.0.0.9", 5070)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(486), seed=3)
    phone.send(raw_request("INVITE", via=PHONE_VIA), pbx)
    net.run(until=0.3)
    phone.send(raw_request("CANCEL", via=PHONE_VIA), pbx)
    net.run(until=0.6)
    cancel_answers = [r.status for r in phone.responses() if r.cseq.method == "CANCEL"]
    assert cancel_answers == [200]
    assert pbx.events_of(CancelReceived) == []


# -- RFC 2543 peers (no magic cookie) ---------------------------------------------------------------------


@pytest.mark.parametrize("via", ["SIP/2.0/UDP 10.0.0.9:5070", "SIP/2.0/UDP 10.0.0.9:5070;branch=1234abcd"])
def test_rfc2543_retransmission_and_non2xx_ack_match_the_invite_transaction(via: str) -> None:
    net = Network()
    phone = net.add_raw("phone", "10.0.0.9", 5070)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(486), seed=4)
    invite = raw_request("INVITE", via=via, call_id="old-1@phone")
    phone.send(invite, pbx)
    net.run(until=0.125)
    phone.send(invite, pbx)  # a retransmission: matched by Request-URI, From tag, Call-ID, CSeq, Via
    net.run(until=0.375)
    assert len(pbx.requests("INVITE")) == 1
    assert [r.status for r in phone.responses()] == [100, 486, 486]
    to_tag = phone.responses()[1].to.tag
    phone.send(raw_request("ACK", via=via, call_id="old-1@phone", to_tag=to_tag), pbx)
    net.run(until=100.0)
    assert pbx.requests("ACK") == []  # absorbed: it confirmed the INVITE transaction
    # The ACK arrived at 0.5; Timer G would have fired at 0.625 had the ACK not stopped it.
    assert [r.status for r in phone.responses()] == [100, 486, 486]
    assert pbx.endpoint.transaction_count == 0


def test_rfc2543_ack_for_2xx_reaches_the_tu_and_never_raises() -> None:
    """An RFC 2543 ACK for a 2xx carries the INVITE's Request-URI (the phone's Contact is the same URI),
    From tag, Call-ID, CSeq number and Via, so §17.2.3's fallback matches it to the INVITE server transaction
    in Accepted. It must go to the TU (RFC 6026 Accepted: ACK to TU), never raise out of receive_datagram
    (ARCHITECTURE rule 7: nothing a peer sends can crash the process)."""
    net = Network()
    phone = net.add_raw("phone", "10.0.0.9", 5070)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(200), seed=4)
    via = "SIP/2.0/UDP 10.0.0.9:5070"
    phone.send(raw_request("INVITE", via=via, call_id="old-2@phone"), pbx)
    net.run(until=0.5)
    to_tag = phone.responses()[-1].to.tag
    phone.send(raw_request("ACK", via=via, call_id="old-2@phone", to_tag=to_tag), pbx)
    net.run(until=1.0)
    (ack,) = pbx.requests("ACK")
    assert ack.transaction is None


def test_ack_with_the_invite_branch_before_any_final_never_raises() -> None:
    """A broken or hostile peer sends an ACK with the branch of an INVITE still in Proceeding. The endpoint
    must not let LocalProtocolError (our own misuse error) escape receive_datagram for remote input."""
    net, phone, pbx = phone_and_pbx()
    phone.send(raw_request("INVITE", via=PHONE_VIA), pbx)
    net.run(until=0.5)
    phone.send(raw_request("ACK", via=PHONE_VIA, to_tag="pbx-tag"), pbx)
    net.run(until=1.0)
    invite_tx = pbx.requests("INVITE")[0].transaction
    assert invite_tx is not None and invite_tx.state is TransactionState.PROCEEDING


def test_server_key_uses_the_branch_with_the_magic_cookie_and_the_2543_fields_without() -> None:
    msg = parse_message(raw_request("INVITE", via="SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKabc"))
    assert isinstance(msg, Request)
    assert server_key(msg, "z9hG4bKabc", "10.0.0.9:5070") == ("z9hG4bKabc", "10.0.0.9:5070", "INVITE")
    old = server_key(msg, None, "10.0.0.9:5070")
    assert old == ("2543", "sip:201@10.0.0.2", "rtag", "raw-1@test", "1", "10.0.0.9:5070", "INVITE")
    ack = parse_message(raw_request("ACK", via="SIP/2.0/UDP 10.0.0.9:5070", to_tag="x"))
    assert isinstance(ack, Request)
    assert server_key(ack, None, "10.0.0.9:5070") == old  # the ACK finds its INVITE


# -- RFC 3581 received / rport -------------------------------------------------------------------------------


def nat_pair() -> tuple[Network, Node, Node]:
    """alice believes she is 10.0.0.1:5060 (her Via) but the PBX sees 203.0.113.5:40000 (a NAT)."""
    net = Network()
    alice = net.add_endpoint("alice", "203.0.113.5", 40000, via_host="10.0.0.1", via_port=5060, seed=1)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(200), seed=2)
    return net, alice, pbx


def test_rport_adds_received_and_rport_and_answers_the_source_port() -> None:
    net, alice, pbx = nat_pair()
    alice.endpoint.send_request(build_request("OPTIONS", PBX_URI), pbx.peer, net.now)
    net.run(until=1.0)
    top = pbx.requests()[0].request.top_via
    assert top.params["received"] == "203.0.113.5"
    assert top.params["rport"] == "40000"
    assert pbx.requests()[0].peer == Peer("UDP", "203.0.113.5", 40000)
    (ok,) = wire(net, sent_from(pbx))
    assert ok.dst == Peer("UDP", "203.0.113.5", 40000)
    resp_via = ok.parsed().top_via
    assert (resp_via.params["received"], resp_via.params["rport"]) == ("203.0.113.5", "40000")
    assert statuses(alice) == [200]


def test_without_rport_the_answer_goes_to_the_via_port_of_the_source_address() -> None:
    net = Network()
    nat = net.add_raw("nat", "203.0.113.5", 40000)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(200), seed=2)
    nat.send(raw_request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKnorport"), pbx)
    net.run(until=1.0)
    top = pbx.requests()[0].request.top_via
    assert top.params["received"] == "203.0.113.5"
    assert "rport" not in top.params
    (ok,) = wire(net, sent_from(pbx))
    assert ok.dst == Peer("UDP", "203.0.113.5", 5070)
    assert net.undeliverable == [ok]
    assert nat.received == []


def test_no_received_when_the_via_host_is_the_source_and_rport_was_not_asked() -> None:
    net = Network()
    phone = net.add_raw("phone", "10.0.0.9", 5070)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, tu=answer(200), seed=2)
    phone.send(raw_request("OPTIONS", via="SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKplain"), pbx)
    net.run(until=1.0)
    assert pbx.requests()[0].request.top_via.params == {"branch": "z9hG4bKplain"}
    (resp,) = phone.responses()
    assert resp.status == 200
    assert resp.get("via") == "SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKplain"


def test_response_peer_rules() -> None:
    req = parse_message(raw_request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx"))
    assert isinstance(req, Request)
    src = Peer("UDP", "203.0.113.5", 40000)
    assert response_peer(req, src) == Peer("UDP", "203.0.113.5", 5060)  # no port in Via: 5060
    tcp = Peer("TCP", "203.0.113.5", 40000)
    assert response_peer(req, tcp) == tcp  # reliable: back over the connection


# -- stateless answers to malformed input -----------------------------------------------------------------


def corpus_rows() -> list[dict[str, str]]:
    with (TORTURE / "expected.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _inject(data: bytes) -> tuple[Network, RawNode, Node]:
    net = Network()
    raw = net.add_raw("raw", "127.0.0.1", 5099)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=5)  # no TU: events are only recorded
    raw.send(data, pbx)
    net.run(until=0.5)
    return net, raw, pbx


def test_corpus_present_for_endpoint_tests() -> None:
    assert (TORTURE / "expected.tsv").is_file(), f"missing torture corpus at {TORTURE}"
    assert len(corpus_rows()) == 35


@pytest.mark.parametrize("row", [r for r in (corpus_rows() if (TORTURE / "expected.tsv").is_file() else [])
                                 if r["kind"] == "invalid" and r["name"] != "zeromf"],
                         ids=lambda r: r["name"])
def test_invalid_corpus_requests_get_their_stateless_answer(row: dict[str, str]) -> None:
    data = (TORTURE / "messages" / f"{row['name']}.sip").read_bytes()
    allowed = row["allowed"].split(",")
    _, raw, pbx = _inject(data)
    responses = raw.responses()
    assert pbx.events == []
    if allowed == ["none"]:
        assert responses == []
        assert pbx.endpoint.stats["dropped"] == 1
        return
    (resp,) = responses
    assert str(resp.status) in allowed
    with pytest.raises(SipParseError) as info:
        msg = parse_message(data)
        assert isinstance(msg, Request)
        check_request(msg, pbx.endpoint.config.supported)
    assert (resp.status, resp.reason) == (info.value.status, info.value.reason)
    if info.value.message is not None and info.value.message.has("to"):
        assert resp.to.tag is not None
    assert resp.get("server") == pbx.endpoint.config.server_header
    assert info.value.message is not None
    assert resp.get("call-id") == info.value.message.get("call-id")
    for name, value in info.value.extra_headers:
        assert resp.get(name) == value
    if resp.status == 420:
        assert resp.get("unsupported") == "totally-unknown-ext"
    assert pbx.endpoint.stats["stateless_answers"] == 1
    assert pbx.endpoint.transaction_count == 0


@pytest.mark.parametrize("name", ["stray-ack", "stray-response", "keepalive"])
def test_silent_corpus_messages_get_no_answer(name: str) -> None:
    net, raw, pbx = _inject((TORTURE / "messages" / f"{name}.sip").read_bytes())
    assert raw.received == []
    assert net.undeliverable == []
    assert pbx.endpoint.transaction_count == 0
    if name == "stray-ack":
        (event,) = pbx.events  # an ACK matching nothing goes to the TU (it may be for a 2xx)
        assert isinstance(event, RequestReceived) and event.transaction is None
    else:
        assert pbx.events == []


def test_valid_corpus_requests_reach_the_tu_once_without_stateless_answers() -> None:
    for row in corpus_rows():
        if row["kind"] != "valid" or row["allowed"] == "none":
            continue
        _, raw, pbx = _inject((TORTURE / "messages" / f"{row['name']}.sip").read_bytes())
        assert len(pbx.requests()) == 1, row["name"]
        assert pbx.endpoint.stats["stateless_answers"] == 0, row["name"]
        assert all(r.status == 100 for r in raw.responses()), row["name"]


def test_malformed_ack_is_never_answered() -> None:
    bad_ack = raw_request("ACK", via="SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKbadack;rport")
    bad_ack = bad_ack.replace(b"Max-Forwards: 70", b"Max-Forwards: x")
    _, raw, pbx = _inject(bad_ack)
    assert raw.received == []
    assert pbx.endpoint.stats["parse_errors"] == 1 and pbx.endpoint.stats["dropped"] == 1


def test_malformed_response_is_never_answered() -> None:
    bad = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx\r\nCSeq: one INVITE\r\n"
           b"Content-Length: 0\r\n\r\n")
    _, raw, _ = _inject(bad)
    assert raw.received == []
    bad_status = bad.replace(b"200 OK", b"999 Nope")
    _, raw2, _ = _inject(bad_status)
    assert raw2.received == []


def test_stateless_answer_to_unparseable_via_goes_back_to_the_source() -> None:
    data = raw_request("OPTIONS", via="SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKv;rport").replace(
        b"Via: SIP/2.0/UDP 127.0.0.1:5099", b"Via: SIP/2.0/UDP 127.0.0.1:99999")
    _, raw, _ = _inject(data)
    (resp,) = raw.responses()
    assert resp.status == 400 and resp.reason == "Bad Via header"


def test_stateless_answer_carries_received_and_rport() -> None:
    """RFC 3581 §4: a server that receives a request whose top Via has an empty rport "MUST set the value
    of the parameter to the source port", and §18.2.1 adds received; a stateless 4xx is still a response
    to that request (the client learns its public address from it)."""
    net = Network()
    nat = net.add_raw("nat", "203.0.113.5", 40000)
    pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2)
    nat.send(raw_request("OPTIONS", via="SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKext;rport",
                         extra=["Require: totally-unknown-ext"]), pbx)
    net.run(until=1.0)
    (resp,) = nat.responses()
    assert resp.status == 420
    assert resp.top_via.params.get("received") == "203.0.113.5"
    assert resp.top_via.params.get("rport") == "40000"


# -- timers and lifetimes ----------------------------------------------------------------------------------


def test_get_timer_returns_the_earliest_live_deadline() -> None:
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(7).randbytes)
    peer = Peer("UDP", "10.0.0.2", 5060)
    invite_tx = ep.send_request(build_request("INVITE", PBX_URI), peer, 0.0)  # A at 0.5, B at 32
    options_tx = ep.send_request(build_request("OPTIONS", PBX_URI, call_id="o@x"), peer, 0.25)  # E 0.75
    assert ep.get_timer() == 0.5
    ok = make_response(options_tx.request, 200, to_tag="t")
    ep.receive_datagram(ok.serialize(), peer, 0.375)  # E and F cancelled, K armed at 5.375
    assert ep.get_timer() == 0.5
    ringing = make_response(invite_tx.request, 180, to_tag="t")
    ep.receive_datagram(ringing.serialize(), peer, 0.4375)  # A (and B, Figure 5) stop: 0.5 is now stale
    assert ep.get_timer() == 5.375
    ep.handle_timer(5.0)  # firing early changes nothing
    assert ep.transaction_count == 2
    ep.handle_timer(5.375)
    assert ep.transaction_count == 1  # the INVITE rings on, with no timer of its own
    assert ep.get_timer() is None
    assert [type(e).__name__ for e in iter(ep.next_event, None)] == ["ResponseReceived", "ResponseReceived"]


def test_many_transactions_all_end() -> None:
    net, alice, pbx = pair(answer(200))
    alice.tu = ack_2xx_tu(pbx)
    rng = random.Random(11)
    net.drop(lambda d: rng.random() < 0.2, times=None)  # 20% loss both ways
    for i in range(20):
        method = ("OPTIONS", "INVITE", "REGISTER", "MESSAGE")[i % 4]
        alice.endpoint.send_request(build_request(method, PBX_URI, call_id=f"c{i}@x"), pbx.peer, net.now)
    net.run(until=200.0)
    assert alice.endpoint.transaction_count == 0 and pbx.endpoint.transaction_count == 0
    assert alice.endpoint.get_timer() is None and pbx.endpoint.get_timer() is None
    assert net.in_flight() == 0
    tus = {e.request.call_id for e in pbx.requests() if e.request.method != "ACK"}
    assert len([e for e in pbx.requests() if e.request.method != "ACK"]) == len(tus)  # each seen once


# -- identifiers (RFC 3261 §19.3, §8.1.1.7) ----------------------------------------------------------------


def test_tags_branches_and_session_ids_are_short_random_and_unique() -> None:
    """§19.3: tags are "cryptographically random" with at least 32 bits; §8.1.1.7: a branch is unique across
    space and time and starts with the magic cookie. Ours: 64-bit tags (16 hex digits), 80-bit branches."""
    ep, other = SipEndpoint(EndpointConfig()), SipEndpoint(EndpointConfig())
    n = 5000
    tags = [ep.new_tag() for _ in range(n)] + [other.new_tag() for _ in range(n)]
    assert len(set(tags)) == 2 * n
    assert all(len(t) == 16 and int(t, 16) >= 0 and t == t.lower() for t in tags)
    branches = [ep.new_branch() for _ in range(n)] + [other.new_branch() for _ in range(n)]
    assert len(set(branches)) == 2 * n
    assert all(b.startswith("z9hG4bK") and len(b) == 27 and int(b[7:], 16) >= 0 for b in branches)
    ids = [ep.new_session_id() for _ in range(n)]
    assert len(set(ids)) == n and all(0 <= i < 2**62 for i in ids)
    # 64 random bits: the top bit is set in about half the tags (a narrower source would never set it).
    assert 0.4 * n < sum(int(t[0], 16) >= 8 for t in tags[:n]) < 0.6 * n


def test_identifiers_do_not_follow_the_random_module() -> None:
    """Seeding the ``random`` module (as a test or a library might) must not make our identifiers
    repeatable: by default they come from the OS CSPRNG, not from any Mersenne Twister."""
    random.seed(1)
    first = SipEndpoint(EndpointConfig()).new_tag(), SipEndpoint(EndpointConfig()).new_branch()
    random.seed(1)
    again = SipEndpoint(EndpointConfig()).new_tag(), SipEndpoint(EndpointConfig()).new_branch()
    assert first[0] != again[0] and first[1] != again[1]


def test_an_injected_byte_source_makes_identifiers_repeatable() -> None:
    """The seam for tests: ``random_bytes`` replaces the CSPRNG, so the pair harness can replay a run."""
    a = SipEndpoint(EndpointConfig(), random_bytes=random.Random(5).randbytes)
    b = SipEndpoint(EndpointConfig(), random_bytes=random.Random(5).randbytes)
    assert [a.new_tag(), a.new_branch(), str(a.new_session_id())] == \
        [b.new_tag(), b.new_branch(), str(b.new_session_id())]


# -- transport errors (RFC 3261 §17.1.4, §8.1.3.1) -------------------------------------------------------


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "BYE"])
def test_a_transport_error_ends_the_client_transaction_at_once_as_a_503(method: str) -> None:
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(7).randbytes)
    peer = Peer("TCP", "10.0.0.2", 5060)
    tx = ep.send_request(build_request(method, PBX_URI), peer, 0.0)
    ((data, to),) = ep.datagrams_to_send()
    ep.transport_error(data, to, 0.25)
    (event,) = iter(ep.next_event, None)
    assert isinstance(event, TransactionTimedOut) and event.transaction is tx
    assert event.transport_error and event.status == 503
    assert tx.state is TransactionState.TERMINATED and ep.transaction_count == 0 and ep.get_timer() is None


def test_a_time_out_is_a_408_to_the_tu() -> None:
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(7).randbytes)
    tx = ep.send_request(build_request("OPTIONS", PBX_URI), Peer("TCP", "10.0.0.2", 5060), 0.0)
    ep.handle_timer(32.0)  # Timer F
    (event,) = iter(ep.next_event, None)
    assert isinstance(event, TransactionTimedOut) and event.transaction is tx
    assert not event.transport_error and event.status == 408


def test_transport_errors_without_a_pending_transaction_are_only_counted() -> None:
    """A response, an ACK, a request already answered, or bytes that are no SIP: nothing to end."""
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(7).randbytes)
    peer = Peer("UDP", "10.0.0.2", 5060)  # (over UDP the answered transaction waits in Completed for Timer K)
    tx = ep.send_request(build_request("OPTIONS", PBX_URI), peer, 0.0)
    ((data, _),) = ep.datagrams_to_send()
    ok = make_response(tx.request, 200, to_tag="t")
    ep.receive_datagram(ok.serialize(), peer, 0.1)
    assert isinstance(ep.next_event(), ResponseReceived)
    ack = build_request("ACK", PBX_URI)
    ep.send_ack(ack, peer)
    ((ack_data, _),) = ep.datagrams_to_send()
    for failed in (data, ack_data, ok.serialize(), b"garbage\r\n\r\n"):
        ep.transport_error(failed, peer, 0.2)
    assert ep.next_event() is None and ep.stats["transport_errors"] == 4
    assert tx.state is TransactionState.COMPLETED
