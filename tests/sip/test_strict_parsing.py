"""Issue 18 part 1: messages RFC 3261/4475/5118 call invalid are answered with the right status (or dropped
when no answer can be formed), and unusual but valid ones are accepted. Each case goes through the
endpoint's own path (parse, sanity check, stateless answer) as a datagram from a peer."""

from __future__ import annotations

import random

import pytest

from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import RequestReceived
from engine.sip.message import Response
from engine.sip.parser import parse_message
from engine.sip.transaction import Peer

PEER = Peer("UDP", "192.0.2.1", 5060)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def request(method: str = "OPTIONS", *, uri: str = "sip:201@pbx.example.com", extra: tuple[str, ...] = (),
            via: str = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKstrict;rport",
            to: str = "<sip:201@pbx.example.com>", body: bytes = b"",
            content_type: str | None = None) -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=a1",
        f"To: {to}",
        "Call-ID: strict-1@example.com",
        f"CSeq: 1 {method}",
        *extra,
    ]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def answer(data: bytes) -> tuple[list[Response], list[object]]:
    """What the endpoint sends back for one datagram, and the events it passes up."""
    ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes)
    ep.receive_datagram(data, PEER, 0.0)
    sent = []
    for out, _ in ep.datagrams_to_send():
        msg = parse_message(out)  # an answer is itself a well-formed message
        assert isinstance(msg, Response)
        sent.append(msg)
    events = []
    while (event := ep.next_event()) is not None:
        events.append(event)
    return sent, events


INVALID = [
    # (case, message, status, words of the reason)
    ("NUL in a header value", request(extra=("Subject: a\x00b",)), 400, "Subject"),
    ("NUL in the Request-URI", request(uri="sip:20\x001@pbx.example.com"), 400, "start line"),
    # the head's lines are joined by CRLF: a CR or LF on its own is found by counting, the rest by one search
    ("a bare CR inside a header value", request(extra=("Subject: a\rb",)), 400, "Subject"),
    ("a bare LF inside a header value", request(extra=("Subject: a\nb",)), 400, "Subject"),
    ("a vertical tab inside a header value", request(extra=("Subject: a\x0bb",)), 400, "Subject"),
    ("a bare LF in the Request-URI", request(uri="sip:20\n1@pbx.example.com"), 400, "start line"),
    ("From twice", request(extra=("From: <sip:bob@example.com>;tag=b2",)), 400, "From"),
    ("Call-ID twice", request(extra=("Call-ID: other@example.com",)), 400, "Call-ID"),
    ("Max-Forwards twice", request(extra=("Max-Forwards: 69",)), 400, "Max-Forwards"),
    ("Content-Type twice", request("INVITE", body=SDP, content_type="application/sdp",
                                   extra=("Content-Type: application/sdp",)), 400, "Content-Type"),
    ("compact i: after Call-ID", request(extra=("i: other@example.com",)), 400, "Call-ID"),
    ("a body without Content-Type", request("INVITE", body=SDP), 400, "Content-Type"),
    ("a To with two tags", request(to="<sip:201@pbx.example.com>;tag=x;tag=y"), 400, ""),
    ("a malformed IPv6 reference in the Request-URI", request(uri="sip:201@[2001:db8:::1]"), 400, ""),
    ("a non-hex IPv6 reference in the Request-URI", request(uri="sip:201@[::g]"), 400, ""),
    ("an INVITE whose body is not SDP", request("INVITE", body=b"hello", content_type="text/plain"), 415, ""),
]


@pytest.mark.parametrize(("case", "data", "status", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_messages_are_answered_with_the_right_status(case: str, data: bytes, status: int,
                                                             words: str) -> None:
    sent, events = answer(data)
    assert [r.status for r in sent] == [status], case
    assert words.lower() in sent[0].reason.lower(), sent[0].reason
    assert not [e for e in events if isinstance(e, RequestReceived)], "an invalid request reached the TU"


def test_a_non_sdp_invite_body_is_refused_with_the_types_accepted() -> None:
    sent, _ = answer(request("INVITE", body=b"hello", content_type="text/plain"))
    assert sent[0].get("accept") == "application/sdp"


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_a_control_character_in_a_header_every_answer_copies_is_dropped(header: str) -> None:
    """The 400 would echo the NUL back (§8.2.6.2 copies these): nothing is sent, nothing reaches the TU,
    also when the start line is broken too."""
    data = request()
    name = f"\r\n{header}: ".encode()
    at = data.index(name) + len(name)
    damaged = data[:at] + b"\x00" + data[at:]
    for message in (damaged, damaged.replace(b" SIP/2.0\r\n", b"\x00SIP/2.0\r\n", 1)):
        assert answer(message) == ([], [])


VALID = [
    ("an escaped control character in a quoted display name",
     request(to='"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:201@pbx.example.com>')),
    ("an unusual method token", request("!interesting-Method0123456789_*+`.%indeed'~")),
    ("? ; , in the URI user part",
     request(uri="sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,;;*@pbx.example.com")),
    ("Authorization twice (§7.3.1: several are allowed)",
     request(extra=('Authorization: Digest username="a", realm="r", nonce="n", uri="sip:r", response="x"',
                    'Authorization: Digest username="a", realm="q", nonce="n", uri="sip:q", response="y"'))),
    ("an IPv6 reference", request(uri="sip:201@[2001:db8::10]:5060")),
    ("an INVITE with SDP", request("INVITE", body=SDP, content_type="application/sdp")),
]


@pytest.mark.parametrize(("case", "data"), VALID, ids=[c[0] for c in VALID])
def test_unusual_but_valid_messages_reach_the_transaction_user(case: str, data: bytes) -> None:
    sent, events = answer(data)
    final = [f"{r.status} {r.reason}" for r in sent if r.status >= 200]  # an INVITE gets its 100 Trying
    assert final == [], final
    assert [e for e in events if isinstance(e, RequestReceived)], case
