"""Issue 18 part 3 in the endpoint: the transaction table's cap, the calls cap and load shedding. New
INVITEs and REGISTERs get 503 with Retry-After; in-dialog requests, ACK, CANCEL, OPTIONS and responses are
still served; a shed INVITE's retransmission and ACK are absorbed by its transaction."""

from __future__ import annotations

import random

from engine.sip.endpoint import EndpointConfig, LoadLimits, SipEndpoint
from engine.sip.events import RequestReceived
from engine.sip.message import Response
from engine.sip.parser import parse_message
from engine.sip.transaction import Peer

PEER = Peer("UDP", "192.0.2.1", 5060)


def request(method: str, n: int = 1, *, to_tag: str | None = None, branch: str | None = None) -> bytes:
    to = "<sip:201@pbx.example.com>" + (f";tag={to_tag}" if to_tag else "")
    cseq_method = "INVITE" if method == "ACK" else method
    return (f"{method} sip:201@pbx.example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch or f'z9hG4bKload{method}{n}'};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
            f"To: {to}\r\nCall-ID: load-{n}@example.com\r\nCSeq: 1 {cseq_method}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def endpoint(limits: LoadLimits | None = None, calls: int = 0) -> SipEndpoint:
    return SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes, limits=limits,
                       call_count=lambda: calls)


def feed(ep: SipEndpoint, data: bytes, now: float = 0.0) -> tuple[list[Response], list[RequestReceived]]:
    ep.receive_datagram(data, PEER, now)
    sent = []
    for out, _ in ep.datagrams_to_send():
        msg = parse_message(out)
        assert isinstance(msg, Response)
        sent.append(msg)
    events = []
    while (event := ep.next_event()) is not None:
        if isinstance(event, RequestReceived):
            events.append(event)
    return sent, events


def assert_shed(sent: list[Response], events: list[RequestReceived], why: str, retry_after: int = 5) -> None:
    assert [r.status for r in sent] == [503], [f"{r.status} {r.reason}" for r in sent]
    assert why in sent[0].reason
    assert sent[0].get("retry-after") == str(retry_after)
    assert sent[0].to.tag is not None
    assert events == []


def test_overloaded_new_invites_and_registers_get_503_retry_after() -> None:
    ep = endpoint(LoadLimits(retry_after_s=9))
    ep.overloaded = True
    for method in ("INVITE", "REGISTER"):
        assert_shed(*feed(ep, request(method)), "overloaded", retry_after=9)
    assert ep.stats["shed_overload"] == 2


def test_overloaded_in_dialog_requests_options_and_cancel_are_still_served() -> None:
    ep = endpoint()
    ep.overloaded = True
    for data in (request("BYE", to_tag="b1"), request("INVITE", 2, to_tag="b1"), request("OPTIONS"),
                 request("REGISTER", 3, to_tag="r1")):
        sent, events = feed(ep, data)
        assert len(events) == 1, data[:40]
        assert all(r.status != 503 for r in sent)
    sent, _ = feed(ep, request("CANCEL", 9))
    assert [r.status for r in sent] == [481]  # answered as ever: no INVITE of that branch


def test_a_shed_invite_absorbs_its_retransmission_and_ack() -> None:
    ep = endpoint()
    ep.overloaded = True
    assert_shed(*feed(ep, request("INVITE")), "overloaded")
    ep.overloaded = False  # even once the load is gone: the retransmission is the same transaction
    sent, events = feed(ep, request("INVITE"), 0.5)
    assert [r.status for r in sent] == [503] and events == []
    sent, events = feed(ep, request("ACK", branch="z9hG4bKloadINVITE1"), 0.6)
    assert sent == [] and events == []
    assert ep.stats["shed_overload"] == 1


def test_shedding_stops_with_the_load() -> None:
    ep = endpoint()
    ep.overloaded = True
    feed(ep, request("REGISTER", 1))
    ep.overloaded = False
    sent, events = feed(ep, request("REGISTER", 2))
    assert sent == [] and len(events) == 1


def test_the_calls_cap_refuses_new_invites_only() -> None:
    ep = endpoint(LoadLimits(max_calls=3), calls=3)
    assert_shed(*feed(ep, request("INVITE")), "too many calls")
    for data in (request("REGISTER"), request("INVITE", 2, to_tag="b1")):
        sent, events = feed(ep, data)
        assert len(events) == 1
    assert ep.stats["shed_calls"] == 1
    below = endpoint(LoadLimits(max_calls=3), calls=2)
    sent, events = feed(below, request("INVITE"))
    assert [r.status for r in sent] == [100] and len(events) == 1
    uncapped = endpoint(LoadLimits(max_calls=0), calls=10_000)
    assert len(feed(uncapped, request("INVITE"))[1]) == 1


def test_a_full_transaction_table_answers_503_statelessly_and_stores_nothing() -> None:
    ep = endpoint(LoadLimits(max_transactions=5))
    for n in range(5):
        assert len(feed(ep, request("OPTIONS", n))[1]) == 1
    assert ep.transaction_count == 5
    for n, method in enumerate(("OPTIONS", "INVITE", "BYE"), start=10):
        sent, events = feed(ep, request(method, n, to_tag="x" if method == "BYE" else None))
        assert_shed(sent, events, "transaction table full")
    assert ep.transaction_count == 5
    assert ep.stats["refused_table_full"] == 3
    # the ones in the table are still matched: a retransmission is absorbed, not refused
    sent, events = feed(ep, request("OPTIONS", 0))
    assert sent == [] and events == []
