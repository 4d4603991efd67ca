"""SIP parsing (RFC 3261 §7, §18.3, §19.1, §20, §25): the RFC 4475-style torture corpus, golden messages,
typed header views, URIs, Content-Length rules, and the stream framer.

The corpus lives in ``shared/torture`` beside the repository; its absence is a failure, not a skip.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.grammar import COMPACT_FORMS, quote, split_list, unquote
from engine.sip.headers import MAX_CSEQ, Address, CSeq, Via
from engine.sip.message import Field, Message, Request, Response, make_response
from engine.sip.parser import MAX_MESSAGE_BYTES, SINGLE_HEADERS, StreamFramer, parse_message
from engine.sip.sanity import check_request
from engine.sip.transaction import Peer
from engine.sip.uri import Uri, split_hostport

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "torture"
SUPPORTED = frozenset({"path"})


# ===========================================================================================================
# The torture corpus


def load_rows() -> list[dict[str, str]]:
    expected = TORTURE / "expected.tsv"
    if not expected.is_file():
        return []
    with expected.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = load_rows()


def corpus_bytes(name: str) -> bytes:
    return (TORTURE / "messages" / f"{name}.sip").read_bytes()


def row_params() -> list[object]:
    if not ROWS:
        return [pytest.param(None, id="torture-corpus-missing")]
    return [pytest.param(row, id=row["name"]) for row in ROWS]


def parse_checked(data: bytes, *, stream: bool = False) -> Request | Response:
    """What the endpoint does first with every datagram: parse, then sanity-check requests."""
    msg = parse_message(data, stream=stream)
    if isinstance(msg, Request):
        check_request(msg, SUPPORTED)
    return msg


def test_torture_corpus_is_present() -> None:
    assert TORTURE.is_dir(), f"the torture corpus is missing: {TORTURE}"
    assert len(ROWS) == 35
    for row in ROWS:
        assert (TORTURE / "messages" / f"{row['name']}.sip").is_file(), row["name"]
        assert row["kind"] in ("valid", "invalid")


@pytest.mark.parametrize("row", row_params())
def test_torture_message(row: dict[str, str] | None) -> None:
    assert row is not None, f"the torture corpus is missing: {TORTURE}"
    name, kind, allowed = row["name"], row["kind"], row["allowed"].split(",")
    data = corpus_bytes(name)
    if name == "keepalive":
        # Only whitespace: not a message at all. The endpoint drops it before parsing (RFC 5626).
        assert data.strip(b"\r\n") == b""
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.message is None
        ep = SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes)
        ep.receive_datagram(data, Peer("UDP", "127.0.0.1", 5099), 0.0)
        assert ep.datagrams_to_send() == [] and ep.next_event() is None
        assert ep.stats["parse_errors"] == 0 and ep.stats["requests"] == 0
    elif name == "zeromf":
        # 483 is the application's decision (only when it would forward); the parser accepts it.
        msg = parse_checked(data)
        assert isinstance(msg, Request) and msg.max_forwards == 0
    elif kind == "valid":
        msg = parse_checked(data)
        if name == "stray-response":
            assert isinstance(msg, Response) and msg.status == 180
        else:
            assert isinstance(msg, Request)
            assert msg.method == ("ACK" if name == "stray-ack" else msg.cseq.method)
    else:
        with pytest.raises(SipParseError) as info:
            parse_checked(data)
        exc = info.value
        codes = [a for a in allowed if a.isdigit()]
        if codes:
            assert str(exc.status) in codes
        assert exc.reason
        if name == "garbage":
            assert exc.message is None
        else:
            assert isinstance(exc.message, Request)  # addressable: a stateless answer can be built
            assert exc.message.has("via")


def test_keepalive_and_garbage_are_not_addressable() -> None:
    for data in (b"\r\n\r\n", b"\x00\x01\x02", bytes(range(1, 256))):
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == 400 and info.value.message is None


# -- what the valid corpus messages mean -------------------------------------------------------------------


def corpus_request(name: str) -> Request:
    msg = parse_checked(corpus_bytes(name))
    assert isinstance(msg, Request)
    return msg


def test_wsinv_unusual_whitespace_and_folding() -> None:
    msg = corpus_request("wsinv")
    (via,) = msg.vias
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "127.0.0.1", 5099, "z9hG4bK-ws1")
    assert msg.from_.display == "Alice Liddell"
    assert msg.from_.tag == "ws1"
    assert str(msg.from_.uri) == "sip:alice@127.0.0.1"
    assert str(msg.to.uri) == "sip:201@127.0.0.1" and msg.to.tag is None
    assert msg.cseq == CSeq(8, "INVITE")
    assert msg.call_id == "ws1@corpus"
    assert msg.max_forwards == 68
    assert msg.get("from") == '"Alice Liddell" <sip:alice@127.0.0.1> ; tag = ws1'
    assert msg.body.startswith(b"v=0\r\n") and len(msg.body) == int(msg.get("content-length") or 0)


def test_intmeth_unusual_method_token() -> None:
    msg = corpus_request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.cseq.method == msg.method


def test_esc01_escaped_user_decodes() -> None:
    ruri = corpus_request("esc01").request_uri
    assert ruri.user == "%32%30%31"
    assert ruri.user_decoded == "201"
    assert ruri.same_as(Uri.parse("sip:201@127.0.0.1:5060"))


def test_escnull_escaped_nul_is_kept_escaped_and_decodes() -> None:
    (contact,) = corpus_request("escnull").addresses("contact")
    assert contact.uri.user == "null-%00-null"
    assert contact.uri.user_decoded == "null-\x00-null"


def test_lwsdisp_display_name_without_space() -> None:
    assert corpus_request("lwsdisp").from_.display == "caller"


def test_semiuri_semicolon_in_user_part() -> None:
    ruri = corpus_request("semiuri").request_uri
    assert ruri.user == "user;par=u%40example.net"
    assert ruri.user_decoded == "user;par=u@example.net"
    assert (ruri.host, ruri.port, ruri.params) == ("127.0.0.1", 5060, {})


def test_transports_several_vias_in_one_header() -> None:
    vias = corpus_request("transports").vias
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "127.0.0.1", 5099), ("TCP", "127.0.0.2", 5060), ("TLS", "[::1]", None),
        ("SCTP", "127.0.0.3", None)]
    assert [v.branch for v in vias] == ["z9hG4bK-tr-option", "z9hG4bK-tr2", "z9hG4bK-tr3", "z9hG4bK-tr4"]


def test_compact_forms_map_to_long_names() -> None:
    msg = corpus_request("compact")
    names = [f.name for f in msg.fields]
    assert names == ["via", "max-forwards", "from", "to", "call-id", "cseq", "contact", "supported",
                     "subject", "content-type", "content-length"]
    assert msg.get("i") == msg.get("Call-ID") == "cmp@corpus"
    assert msg.tokens("k") == ["timer"]
    assert msg.get("s") == "compact"
    assert msg.get("c") == "application/sdp"
    assert int(msg.get("Content-Length") or -1) == len(msg.body)


@pytest.mark.parametrize(("short", "long"), sorted(COMPACT_FORMS.items()))
def test_every_compact_form(short: str, long: str) -> None:
    value = "0" if long == "content-length" else f"value-{short}"
    data = base_request(extra=[f"{short.upper()}: {value}"], content_length=None)
    if long in SINGLE_HEADERS and long in ("from", "to", "call-id", "cseq"):
        # base_request has the long form already: the compact one is a second, refused by name.
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        assert info.value.status == 400 and info.value.header == long
        return
    msg = parse_message(data)
    assert msg.fields[-1].name == long
    assert msg.get_fields(long)[-1].value == value
    assert msg.get_fields(short)[-1].value == value


def test_mpart01_multipart_body_is_kept_whole() -> None:
    msg = corpus_request("mpart01")
    assert msg.get("content-type") == "multipart/mixed;boundary=unique-boundary-1"
    assert msg.body.startswith(b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\nv=0")
    assert msg.body.endswith(b"--unique-boundary-1--\r\n")


def test_cparam01_quoted_display_with_comma_and_contact_params() -> None:
    (contact,) = corpus_request("cparam01").addresses("contact")
    assert contact.display == "Quoted, with comma"
    assert contact.uri.params == {"transport": "udp"}
    assert contact.params["q"] == "0.7" and contact.params["expires"] == "60"
    assert contact.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


def test_regaut01_unknown_auth_scheme_is_kept_raw() -> None:
    msg = corpus_request("regaut01")
    assert msg.get("authorization") == "NoOneKnowsThisScheme opaque-data=here"


def test_novelsc_unknown_scheme_in_to_is_opaque() -> None:
    to = corpus_request("novelsc").to
    assert (to.uri.scheme, to.uri.opaque) == ("isbn", "2983792873")
    assert str(to.uri) == "isbn:2983792873"


def test_longreq_long_values_survive() -> None:
    msg = corpus_request("longreq")
    assert msg.get("x-long") == "a" * 6000
    assert msg.get("subject") == "s" * 500


def test_baddate_malformed_date_is_not_parsed() -> None:
    assert corpus_request("baddate").get("date") == "Fri, 01 Jan 2010 16:00:00 EST"


# ===========================================================================================================
# Golden messages


def base_request(method: str = "OPTIONS", *, extra: list[str] | None = None, body: bytes = b"",
                 content_length: str | None = "auto", start: str | None = None) -> bytes:
    lines = [
        start or f"{method} sip:201@pbx.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgold;rport",
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:201@pbx.example.com>",
        "Call-ID: gold-1@example.com",
        f"CSeq: 3 {method}",
        *(extra or []),
    ]
    if body and not any(line.lower().startswith(("content-type", "c:")) for line in lines):
        lines.append("Content-Type: text/plain")  # §20.15: a body needs one
    if content_length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SDP = (b"v=0\r\no=- 1 1 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0\r\n")

GOLDENS: dict[str, bytes] = {
    "register-contacts": (
        b"REGISTER sip:pbx.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKr1;rport\r\n"
        b"Via: SIP/2.0/TCP edge.example.com;branch=z9hG4bKe1;received=192.0.2.99, "
        b"SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bKe0\r\n"
        b"Max-Forwards: 69\r\n"
        b"From: \"Bob \\\"The Builder\\\" \\\\ Jr\" <sip:bob@example.com>;tag=88\r\n"
        b"To: Bob <sip:bob@example.com>\r\n"
        b"Call-ID: reg-9@198.51.100.7\r\n"
        b"CSeq: 2147483647 REGISTER\r\n"
        b"Contact: \"Desk, 1st floor\" <sip:bob@198.51.100.7:5062;transport=udp>;q=0.9, "
        b"<sip:bob@[2001:db8::7]>\r\n"
        b"Contact: sip:bob@203.0.113.2;expires=60\r\n"
        b"Expires: 3600\r\n"
        b"Content-Length: 0\r\n\r\n"
    ),
    "invite-ipv6-sdp": (
        b"INVITE sips:+15551234567@[2001:db8::10]:5061;user=phone SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS [2001:db8::5]:5061;branch=z9hG4bKv6\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:proxy1.example.com;lr>, <sip:proxy2.example.com;lr>\r\n"
        b"Route: <sip:proxy3.example.com;lr>\r\n"
        b"From: sip:carol@example.com;tag=c7\r\n"
        b"To: <tel:+1-555-123-4567;phone-context=example.com>\r\n"
        b"Call-ID: v6@example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sips:carol@[2001:db8::5]:5061>\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
    ),
    "folded": (
        b"OPTIONS sip:201@pbx.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060\r\n"
        b"\t;branch=z9hG4bKfold\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@example.com>\r\n ;tag=f1\r\n"
        b"To: <sip:201@pbx.example.com>\r\n"
        b"Subject: one\r\n  two\r\n\tthree\r\n"
        b"Call-ID: fold@example.com\r\n"
        b"CSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    ),
    "response-180": (
        b"SIP/2.0 180 Ringing Loudly\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKr;received=203.0.113.9;rport=40001\r\n"
        b"Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKr0\r\n"
        b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:201@pbx.example.com>;tag=b2\r\n"
        b"Call-ID: r@example.com\r\n"
        b"CSeq: 4 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    ),
    "non-utf8-header": (
        b"MESSAGE sip:201@pbx.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbin\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:201@pbx.example.com>\r\n"
        b"Call-ID: bin@example.com\r\n"
        b"CSeq: 1 MESSAGE\r\n"
        b"Subject: caf\xe9 \xff\xfe\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Length: 4\r\n\r\n\x00\xff\r\n"
    ),
    "compact-last": base_request("OPTIONS", extra=["i: x"], content_length=None).replace(
        b"Call-ID: gold-1@example.com\r\n", b"") [:-2] + b"l: 0\r\n\r\n",
}


def logical_lines(head: bytes) -> Iterator[list[bytes]]:
    """Header lines grouped with their continuation lines."""
    group: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and group:
            group.append(line)
            continue
        if group:
            yield group
        group = [line]
    if group:
        yield group


def expected_serialisation(data: bytes, body: bytes) -> bytes:
    """What ``serialize()`` documents for an unchanged parsed message: every line as it came, except that
    Content-Length (long or compact, wherever it was) is written last as ``Content-Length: <len(body)>``."""
    head = data.split(b"\r\n\r\n", 1)[0]
    groups = list(logical_lines(head))
    out = [groups[0][0]]
    for group in groups[1:]:
        name = group[0].split(b":", 1)[0].strip().lower()
        if name not in (b"content-length", b"l"):
            out.extend(group)
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def parseable_messages() -> list[object]:
    out: list[object] = [pytest.param(data, id=f"golden-{name}") for name, data in GOLDENS.items()]
    for row in ROWS:
        if row["name"] != "keepalive" and (row["kind"] == "valid" or row["name"] == "zeromf"):
            out.append(pytest.param(corpus_bytes(row["name"]), id=row["name"]))
    return out


def summary(msg: Message) -> tuple[str, list[tuple[str, str]], bytes]:
    return (msg.start_line(), [(f.name, f.value) for f in msg.fields if f.name != "content-length"], msg.body)


@pytest.mark.parametrize("data", parseable_messages())
def test_round_trip(data: bytes) -> None:
    msg = parse_message(data)
    wire = msg.serialize()
    assert wire == expected_serialisation(data, msg.body)
    again = parse_message(wire)
    assert type(again) is type(msg)
    assert summary(again) == summary(msg)
    assert again.serialize() == wire


def test_content_length_is_written_last_and_matches_the_body() -> None:
    data = base_request(extra=["Subject: x"], body=b"hello", content_length="5")
    data = data.replace(b"Content-Length: 5\r\n", b"").replace(b"Max-Forwards: 70\r\n",
                                                                 b"Max-Forwards: 70\r\nContent-Length: 5\r\n")
    msg = parse_message(data)
    wire = msg.serialize()
    assert wire.endswith(b"Subject: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    msg.body = b"hi"
    assert msg.serialize().endswith(b"Content-Length: 2\r\n\r\nhi")
    no_body = parse_message(base_request(content_length=None))
    assert no_body.serialize().endswith(b"CSeq: 3 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def test_changed_headers_are_written_in_canonical_form_in_place() -> None:
    msg = parse_message(base_request())
    msg.set("max-forwards", "69")
    msg.add("call-id", "ignored-second")
    msg.add("www-authenticate", 'Digest realm="x"')
    lines = msg.serialize().split(b"\r\n")
    assert lines[2] == b"Max-Forwards: 69"
    assert b"Call-ID: ignored-second" in lines
    assert b'WWW-Authenticate: Digest realm="x"' in lines
    assert msg.max_forwards == 69
    msg.remove("to")
    assert not msg.has("to")
    with pytest.raises(SipParseError) as info:
        _ = msg.to
    assert (info.value.status, info.value.header) == (400, "to")


def test_golden_register_contacts_and_vias() -> None:
    msg = parse_message(GOLDENS["register-contacts"])
    assert isinstance(msg, Request)
    check_request(msg, SUPPORTED)
    vias = msg.vias
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "198.51.100.7", 5062), ("TCP", "edge.example.com", None), ("UDP", "[2001:db8::1]", 5070)]
    assert vias[1].params == {"branch": "z9hG4bKe1", "received": "192.0.2.99"}
    assert msg.from_.display == 'Bob "The Builder" \\ Jr'
    assert Address.parse(msg.from_.serialize()).display == msg.from_.display
    assert msg.to.display == "Bob"
    assert msg.cseq == CSeq(MAX_CSEQ, "REGISTER")
    contacts = msg.addresses("contact")
    assert [c.uri_text for c in contacts] == [
        "sip:bob@198.51.100.7:5062;transport=udp", "sip:bob@[2001:db8::7]", "sip:bob@203.0.113.2"]
    assert contacts[0].display == "Desk, 1st floor" and contacts[0].params == {"q": "0.9"}
    assert contacts[1].uri.host == "[2001:db8::7]" and contacts[1].uri.port is None
    assert contacts[2].params == {"expires": "60"}  # addr-spec: the parameter belongs to the header
    assert contacts[2].uri.params == {}
    assert msg.expires == 3600
    assert msg.get_all("contact") == [
        '"Desk, 1st floor" <sip:bob@198.51.100.7:5062;transport=udp>;q=0.9', "<sip:bob@[2001:db8::7]>",
        "sip:bob@203.0.113.2;expires=60"]


def test_golden_invite_ipv6_tel_and_routes() -> None:
    msg = parse_message(GOLDENS["invite-ipv6-sdp"])
    assert isinstance(msg, Request)
    check_request(msg, SUPPORTED)
    ruri = msg.request_uri
    assert (ruri.scheme, ruri.user, ruri.host, ruri.port, ruri.params) == (
        "sips", "+15551234567", "[2001:db8::10]", 5061, {"user": "phone"})
    assert msg.top_via.host == "[2001:db8::5]" and msg.top_via.port == 5061
    assert [str(a.uri) for a in msg.addresses("route")] == [
        "sip:proxy1.example.com;lr", "sip:proxy2.example.com;lr", "sip:proxy3.example.com;lr"]
    assert msg.from_.tag == "c7" and str(msg.from_.uri) == "sip:carol@example.com"
    to = msg.to.uri
    assert (to.scheme, to.user, to.params) == ("tel", "+1-555-123-4567", {"phone-context": "example.com"})
    assert msg.body == SDP


def test_golden_folded_headers_unfold() -> None:
    msg = parse_message(GOLDENS["folded"])
    assert msg.get("subject") == "one two three"
    assert msg.top_via.branch == "z9hG4bKfold"
    assert msg.from_.tag == "f1"


def test_golden_response() -> None:
    msg = parse_message(GOLDENS["response-180"])
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (180, "Ringing Loudly")
    top = msg.top_via
    assert top.params == {"branch": "z9hG4bKr", "received": "203.0.113.9", "rport": "40001"}
    routes = [str(a.uri) for a in msg.addresses("record-route")]
    assert routes == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert msg.to.tag == "b2"


def test_golden_non_utf8_bytes_survive() -> None:
    msg = parse_message(GOLDENS["non-utf8-header"])
    assert msg.body == b"\x00\xff\r\n"
    assert msg.serialize() == GOLDENS["non-utf8-header"]


def test_leading_crlfs_are_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + base_request())
    assert isinstance(msg, Request) and msg.method == "OPTIONS"


# ===========================================================================================================
# Start lines


@pytest.mark.parametrize(("start", "status"), [
    ("OPTIONS sip:201@pbx.example.com SIP/2.0 ", 400),
    ("OPTIONS  sip:201@pbx.example.com SIP/2.0", 400),
    ("OPTIONS <sip:201@pbx.example.com> SIP/2.0", 400),
    ("OPTIONS sip:201@pbx.example.com", 400),
    ("OPTIONS sip:201@pbx.example.com SIP/3.0", 505),
    ("OPTIONS sip:201@pbx.example.com HTTP/1.1", 400),
    ("OPT@ONS sip:201@pbx.example.com SIP/2.0", 400),
    ("OPTIONS 201 SIP/2.0", 400),
])
def test_bad_request_lines(start: str, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_checked(base_request(start=start))
    assert info.value.status == status
    # Addressable (so a stateless answer can be sent) whenever the method is a token.
    assert (info.value.message is None) == start.startswith("OPT@ONS")


@pytest.mark.parametrize("line", [b"SIP/2.0 20 OK", b"SIP/2.0 2000 OK", b"SIP/2.0 099 Low",
                                  b"SIP/2.0 700 High", b"SIP/3.0 200 OK", b"SIP/2.0 abc OK"])
def test_bad_status_lines(line: bytes) -> None:
    data = GOLDENS["response-180"].replace(b"SIP/2.0 180 Ringing Loudly", line)
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400
    assert info.value.message is None  # never answer a response


def test_sip_version_in_the_request_line_is_case_insensitive() -> None:
    """RFC 3261 §7.1: "The SIP-Version string is case-insensitive, but implementations MUST send
    upper-case." A lower-case version must parse, not get 505."""
    msg = parse_checked(base_request(start="OPTIONS sip:201@pbx.example.com sip/2.0"))
    assert isinstance(msg, Request) and msg.method == "OPTIONS"


def test_via_protocol_name_is_case_insensitive() -> None:
    """§25.1: sent-protocol = protocol-name SLASH protocol-version SLASH transport, with protocol-name = "SIP"
    (an ABNF literal, case-insensitive per RFC 5234 §2.3) and transport a token."""
    via = Via.parse("sip/2.0/udp 192.0.2.1:5060;branch=z9hG4bKlc")
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", 5060)


# ===========================================================================================================
# Header lines


@pytest.mark.parametrize(("extra", "reason"), [
    (["NotAHeaderLine"], "Header line without a colon"),
    ([": empty name"], "Header line without a colon"),
    (["Bad Name: x"], "Bad header name"),
])
def test_bad_header_lines(extra: list[str], reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(base_request(extra=extra))
    assert (info.value.status, info.value.reason) == (400, reason)
    assert isinstance(info.value.message, Request)


def test_continuation_before_the_first_header() -> None:
    data = base_request().replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia", 1)
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_unterminated_header_section() -> None:
    data = base_request(content_length=None)[:-4]
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_header_names_are_case_insensitive_and_whitespace_before_colon_is_allowed() -> None:
    msg = parse_message(base_request(extra=["sUbJeCt \t: hi", "X-Custom:x"]))
    assert msg.get("SUBJECT") == "hi"
    assert msg.get("x-custom") == "x"


def test_repeated_headers_keep_their_order() -> None:
    msg = parse_message(base_request(extra=["Route: <sip:a.example.com;lr>", "Subject: s1",
                                            "Route: <sip:b.example.com;lr>, <sip:c.example.com;lr>"]))
    assert [a.uri.host for a in msg.addresses("route")] == ["a.example.com", "b.example.com", "c.example.com"]
    assert msg.get("route") == "<sip:a.example.com;lr>"
    assert len(msg.get_fields("route")) == 2


def test_split_list_respects_quotes_escapes_and_brackets() -> None:
    assert split_list('"a, \\"b,\\" c" <sip:x@y;p=1,2>, <sip:z@w> ,') == [
        '"a, \\"b,\\" c" <sip:x@y;p=1,2>', "<sip:z@w>"]
    assert split_list("  ") == []
    with pytest.raises(ValueError, match="unbalanced"):
        split_list('"open, <sip:x@y>')
    with pytest.raises(ValueError, match="unclosed"):
        split_list("<sip:x@y, sip:z@w")


def test_quote_and_unquote() -> None:
    assert unquote('"a \\"b\\" \\\\ c"') == 'a "b" \\ c'
    assert quote('a "b" \\ c') == '"a \\"b\\" \\\\ c"'
    assert unquote(quote('x"\\y')) == 'x"\\y'
    for bad in ('"abc', 'abc"', '"a"b"', '"a\\"'):
        with pytest.raises(ValueError):
            unquote(bad)


# ===========================================================================================================
# Typed views: Via, CSeq, integers, addresses


def test_via_received_and_rport() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport;received=203.0.113.5")
    assert via.params == {"branch": "z9hG4bK1", "rport": None, "received": "203.0.113.5"}
    via.params["rport"] = "40000"
    assert via.serialize() == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=203.0.113.5"
    assert via.sent_by == "10.0.0.1:5060"
    msg = parse_message(base_request())
    top = msg.top_via
    top.params["received"] = "203.0.113.5"
    msg.set_top_via(top)
    assert msg.get("via") == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgold;rport;received=203.0.113.5"


def test_set_top_via_splits_a_comma_joined_via_and_keeps_the_others() -> None:
    msg = corpus_request("transports")
    top = msg.top_via
    top.params["received"] = "192.0.2.9"
    msg.set_top_via(top)
    assert [v.host for v in msg.vias] == ["127.0.0.1", "127.0.0.2", "[::1]", "127.0.0.3"]
    assert msg.vias[0].params["received"] == "192.0.2.9"
    assert parse_message(msg.serialize()).vias[0].params["received"] == "192.0.2.9"


@pytest.mark.parametrize("text", [
    "SIP/2.0/UDP",  # no sent-by
    "SIP/2.0 192.0.2.1",  # no transport
    "SIP/2.0/UDP 192.0.2.1:0",
    "SIP/2.0/UDP 192.0.2.1:65536",
    "SIP/2.0/UDP 192.0.2.1:123456",
    "SIP/2.0/UDP host_name.example.com",
    "SIP/2.0/UDP 192.0.2.1;branch=",
    "SIP/2.0/UDP 192.0.2.1;=x",
])
def test_malformed_vias(text: str) -> None:
    with pytest.raises(ValueError):
        Via.parse(text)
    msg = parse_message(base_request().replace(b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgold;rport",
                                               b"Via: " + text.encode()))
    with pytest.raises(SipParseError) as info:
        _ = msg.vias
    assert (info.value.status, info.value.header) == (400, "via")
    assert info.value.message is msg


def test_via_port_limits() -> None:
    assert Via.parse("SIP/2.0/UDP 192.0.2.1:65535").port == 65535
    assert Via.parse("SIP/2.0/UDP 192.0.2.1:1").port == 1
    assert Via.parse("SIP/2.0/UDP [::1]:5060").host == "[::1]"


def test_missing_via_is_400() -> None:
    via_line = b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKgold;rport\r\n"
    msg = parse_message(base_request().replace(via_line, b""))
    with pytest.raises(SipParseError) as info:
        _ = msg.top_via
    assert (info.value.status, info.value.reason) == (400, "Missing Via")


@pytest.mark.parametrize(("value", "ok"), [
    (f"{MAX_CSEQ} OPTIONS", True),
    ("0 OPTIONS", True),
    (f"{MAX_CSEQ + 1} OPTIONS", False),  # §8.1.1.5: MUST be less than 2**31
    ("36893488147419103232 OPTIONS", False),
    ("-1 OPTIONS", False),
    ("1", False),
    ("1 OPTIONS extra", False),
    ("one OPTIONS", False),
])
def test_cseq_limits(value: str, ok: bool) -> None:
    msg = parse_message(base_request().replace(b"CSeq: 3 OPTIONS", b"CSeq: " + value.encode()))
    if ok:
        assert msg.cseq.serialize() == value
    else:
        with pytest.raises(SipParseError) as info:
            _ = msg.cseq
        assert (info.value.status, info.value.header) == (400, "cseq")


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("255", 255), ("256", None), ("-1", None),
                                                 ("x", None), (" 70 ", 70)])
def test_max_forwards_range(value: str, expected: int | None) -> None:
    msg = parse_message(base_request().replace(b"Max-Forwards: 70", b"Max-Forwards: " + value.encode()))
    if expected is None:
        with pytest.raises(SipParseError) as info:
            _ = msg.max_forwards
        assert info.value.status == 400
    else:
        assert msg.max_forwards == expected


def test_expires_and_absent_integer_headers() -> None:
    assert parse_message(base_request(extra=["Expires: 4294967295"])).expires == 2**32 - 1
    with pytest.raises(SipParseError):
        _ = parse_message(base_request(extra=["Expires: 4294967296"])).expires
    assert parse_message(base_request()).expires is None


def test_call_id_must_be_non_empty() -> None:
    msg = parse_message(base_request().replace(b"Call-ID: gold-1@example.com", b"Call-ID:"))
    with pytest.raises(SipParseError):
        _ = msg.call_id


@pytest.mark.parametrize(("text", "display", "uri", "params"), [
    ('"Alice" <sip:alice@example.com>;tag=1', "Alice", "sip:alice@example.com", {"tag": "1"}),
    ('"" <sip:a@b>', "", "sip:a@b", {}),
    ('"A \\"quoted\\" name" <sip:a@b>', 'A "quoted" name', "sip:a@b", {}),
    ('"back\\\\slash"<sip:a@b>', "back\\slash", "sip:a@b", {}),
    ("Alice Smith <sip:a@b> ; tag = 9", "Alice Smith", "sip:a@b", {"tag": "9"}),
    ("<sip:a@b;lr>;x", None, "sip:a@b;lr", {"x": None}),
    ("sip:a@b;tag=2", None, "sip:a@b", {"tag": "2"}),
    ('"Ünïcode" <sip:a@b>', "Ünïcode", "sip:a@b", {}),
    ("<sip:a@b>;+sip.instance=\"<urn:uuid:1>\"", None, "sip:a@b", {"+sip.instance": '"<urn:uuid:1>"'}),
])
def test_name_addr_forms(text: str, display: str | None, uri: str, params: dict[str, str | None]) -> None:
    addr = Address.parse(text)
    assert (addr.display, addr.uri_text, addr.params) == (display, uri, params)
    again = Address.parse(addr.serialize())
    assert (again.display or None, again.uri_text, again.params) == (display or None, uri, params)


@pytest.mark.parametrize("text", [
    '"Alice <sip:alice@example.com>',  # unbalanced quote
    "<sip:a@b",  # unclosed <
    "<sip:a@b> junk",
    "Al@ce <sip:a@b>",  # a display name is tokens or a quoted string
    "sip:a@b?subject=x",  # headers in an addr-spec must be in <>
    '"Alice" sip:a@b',
    "<a b@c>",
    "<>",
])
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(ValueError):
        Address.parse(text)


def test_tokens_view() -> None:
    msg = parse_message(base_request(extra=["Require: 100rel, Timer", "Require: path"]))
    assert msg.tokens("require") == ["100rel", "timer", "path"]
    assert msg.tokens("supported") == []
    with pytest.raises(SipParseError):
        parse_message(base_request(extra=["Supported: a b"])).tokens("supported")


def test_make_response_copies_headers_and_adds_the_to_tag() -> None:
    req = parse_message(GOLDENS["register-contacts"])
    assert isinstance(req, Request)
    resp = make_response(req, 200, to_tag="t9")
    assert [f.name for f in resp.fields] == ["via", "via", "from", "to", "call-id", "cseq"]
    assert resp.get_all("via") == req.get_all("via")
    assert resp.to.tag == "t9"
    assert resp.serialize().startswith(b"SIP/2.0 200 OK\r\n")
    already = make_response(parse_message(GOLDENS["response-180"]), 200, to_tag="other")
    assert already.to.tag == "b2"
    trying = make_response(parse_message(base_request(extra=["Timestamp: 54"])), 100)
    assert trying.get("timestamp") == "54" and trying.to.tag is None


def test_header_field_line_keeps_raw_text() -> None:
    f = Field("call-id", "x", "i:   x")
    assert f.line() == "i:   x"
    assert Field("cseq", "1 INVITE").line() == "CSeq: 1 INVITE"


# ===========================================================================================================
# URIs


@pytest.mark.parametrize(("text", "parts"), [
    ("sip:alice@atlanta.com", ("sip", "alice", None, "atlanta.com", None, {}, "")),
    ("sip:alice:secretword@atlanta.com;transport=tcp",
     ("sip", "alice", "secretword", "atlanta.com", None, {"transport": "tcp"}, "")),
    ("sips:alice@atlanta.com?subject=project%20x&priority=urgent",
     ("sips", "alice", None, "atlanta.com", None, {}, "subject=project%20x&priority=urgent")),
    ("sip:+1-212-555-1212:1234@gateway.com;user=phone",
     ("sip", "+1-212-555-1212", "1234", "gateway.com", None, {"user": "phone"}, "")),
    ("sips:1212@gateway.com", ("sips", "1212", None, "gateway.com", None, {}, "")),
    ("sip:alice@192.0.2.4", ("sip", "alice", None, "192.0.2.4", None, {}, "")),
    ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
     ("sip", None, None, "atlanta.com", None, {"method": "REGISTER"}, "to=alice%40atlanta.com")),
    ("sip:alice;day=tuesday@atlanta.com", ("sip", "alice;day=tuesday", None, "atlanta.com", None, {}, "")),
    ("sip:[2001:db8::10]:5070;lr", ("sip", None, None, "[2001:db8::10]", 5070, {"lr": None}, "")),
    ("sip:bob@[::1]", ("sip", "bob", None, "[::1]", None, {}, "")),
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp",
     ("sip", "ALICE", None, "AtLanTa.CoM", None, {"transport": "udp"}, "")),
    ("sip:host.example.com:65535", ("sip", None, None, "host.example.com", 65535, {}, "")),
])
def test_sip_uri_parts(text: str, parts: tuple[object, ...]) -> None:
    uri = Uri.parse(text)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers) == parts
    assert Uri.parse(str(uri)).same_as(uri)


def test_tel_uri() -> None:
    uri = Uri.parse("tel:+1-201-555-0123;phone-context=example.com;ext=22")
    assert (uri.scheme, uri.user, uri.params) == ("tel", "+1-201-555-0123", {"phone-context": "example.com",
                                                                            "ext": "22"})
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;ext=22"
    with pytest.raises(ValueError):
        Uri.parse("tel:")


def test_user_decoded() -> None:
    assert Uri.parse("sip:%61lice@example.com").user_decoded == "alice"
    assert Uri.parse("sip:a%2Bb@example.com").user_decoded == "a+b"
    assert Uri.parse("sip:example.com").user_decoded is None
    assert Uri.parse("sip:plain@example.com").user_decoded == "plain"


@pytest.mark.parametrize("text", [
    "sip:alice@", "sip:@host", "sip:a@host:0", "sip:a@host:65536", "sip:a@host:port", "sip:a@ho st",
    "sip:<a@b>", "nocolon", ":nothing", "1sip:a@b", "sip:a@[::1", "sip:a@[::1]x", "sip:a@host_name",
    'sip:"a"@b',
])
def test_bad_uris(text: str) -> None:
    with pytest.raises(ValueError):
        Uri.parse(text)


def test_split_hostport() -> None:
    assert split_hostport("example.com") == ("example.com", None)
    assert split_hostport("example.com:5061") == ("example.com", 5061)
    assert split_hostport("[2001:db8::1]:5060") == ("[2001:db8::1]", 5060)
    for bad in ("", ":5060", "a:b", "[::1", "[::1]:", "a:99999"):
        with pytest.raises(ValueError):
            split_hostport(bad)


# RFC 3261 §19.1.4 examples.
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
]
NOT_EQUIVALENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # user is case-sensitive
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice:pw1@atlanta.com", "sip:alice:pw2@atlanta.com"),
    ("sip:alice@atlanta.com;maddr=239.255.255.1", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;user=phone", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;ttl=15", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;method=INVITE", "sip:alice@atlanta.com"),
    ("tel:+1", "sip:+1@example.com"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_same_as_equivalent(a: str, b: str) -> None:
    ua, ub = Uri.parse(a), Uri.parse(b)
    assert ua.same_as(ub) and ub.same_as(ua)


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVALENT)
def test_same_as_not_equivalent(a: str, b: str) -> None:
    ua, ub = Uri.parse(a), Uri.parse(b)
    assert not ua.same_as(ub) and not ub.same_as(ua)


def test_same_as_uri_parameter_in_both_must_match() -> None:
    """§19.1.4: "Any uri-parameter appearing in both URIs must match" (not only transport/user/ttl/method/
    maddr; those are the ones that also never match when present in only one URI)."""
    assert not Uri.parse("sip:alice@atlanta.com;foo=1").same_as(Uri.parse("sip:alice@atlanta.com;foo=2"))


def test_same_as_opaque_schemes() -> None:
    assert Uri.parse("isbn:123").same_as(Uri.parse("ISBN:123"))
    assert not Uri.parse("isbn:123").same_as(Uri.parse("isbn:124"))


# ===========================================================================================================
# Content-Length (§18.3, §20.14) and size


def test_content_length_missing_over_udp_body_runs_to_the_end() -> None:
    msg = parse_message(base_request(body=b"hello world", content_length=None))
    assert msg.body == b"hello world"


def test_content_length_larger_than_the_datagram_is_400() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(base_request(body=b"short", content_length="9999"))
    assert (info.value.status, info.value.header) == (400, "content-length")
    assert isinstance(info.value.message, Request)


def test_content_length_smaller_truncates_the_body() -> None:
    msg = parse_message(base_request(body=b"hello world", content_length="5"))
    assert msg.body == b"hello"


@pytest.mark.parametrize("value", ["-5", "five", "1234567890", "", "5 5"])
def test_bad_content_length_is_400(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(base_request(body=b"hello", content_length=value))
    assert info.value.status == 400


def test_two_content_lengths_are_400_even_when_equal() -> None:
    data = base_request(body=b"hello", extra=["l: 5"])
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == 400


def test_stream_requires_content_length_when_there_is_a_body() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(base_request(body=b"hello", content_length=None), stream=True)
    assert info.value.status == 400
    assert parse_message(base_request(content_length=None), stream=True).body == b""
    assert parse_message(base_request(body=b"hello"), stream=True).body == b"hello"


def padded_request(total: int) -> bytes:
    """A valid request of exactly ``total`` bytes."""
    base = base_request(extra=["X-Pad: "])
    pad = total - len(base)
    assert pad > 0
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"p" * pad)


def test_message_size_limit_is_513() -> None:
    ok = padded_request(MAX_MESSAGE_BYTES)
    assert len(ok) == 65535
    assert parse_message(ok).get("x-pad") == "p" * (65535 - len(base_request(extra=["X-Pad: "])))
    too_big = padded_request(MAX_MESSAGE_BYTES + 1)
    with pytest.raises(SipParseError) as info:
        parse_message(too_big)
    assert info.value.status == 513


# ===========================================================================================================
# StreamFramer (§18.3) — every message fed whole, byte at a time, two per chunk, with trailing partial data


def framed_messages() -> list[object]:
    """Messages that carry a Content-Length (a stream needs one), goldens and corpus alike."""
    out: list[object] = []
    for name, data in GOLDENS.items():
        out.append(pytest.param(data, id=f"golden-{name}"))
    for row in ROWS:
        if row["kind"] == "valid" and row["name"] != "keepalive":
            out.append(pytest.param(corpus_bytes(row["name"]), id=row["name"]))
    return out


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> tuple[list[bytes], int]:
    msgs: list[bytes] = []
    pings = 0
    for chunk in chunks:
        got, n = framer.feed(chunk)
        msgs.extend(got)
        pings += n
    return msgs, pings


def chunkings(data: bytes) -> dict[str, list[bytes]]:
    """h11's idea: the same bytes cut every way a stream may cut them."""
    rng = random.Random(len(data))
    head, sep, body = data.partition(b"\r\n\r\n")
    cuts = sorted(rng.sample(range(1, len(data)), min(5, len(data) - 1)))
    return {
        "whole": [data],
        "bytewise": [data[i : i + 1] for i in range(len(data))],
        "random-cuts": [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)],
        "head-then-body": [head, sep, body],
    }


@pytest.mark.parametrize("data", framed_messages())
def test_framer_every_chunking(data: bytes) -> None:
    for how, chunks in chunkings(data).items():
        framer = StreamFramer()
        msgs, pings = feed_all(framer, chunks)
        assert msgs == [data], how
        assert pings == 0
        parsed = parse_message(msgs[0], stream=True)
        assert parsed.body == parse_message(data).body


@pytest.mark.parametrize("data", framed_messages())
def test_framer_two_messages_in_one_chunk_and_trailing_partial_data(data: bytes) -> None:
    other = GOLDENS["response-180"]
    framer = StreamFramer()
    assert framer.feed(data + other) == ([data, other], 0)
    for cut in (1, len(other) // 2, len(other) - 1):
        framer = StreamFramer()
        assert framer.feed(data + other[:cut]) == ([data], 0)
        assert framer.feed(other[cut:]) == ([other], 0)


def test_framer_counts_crlf_keepalive_pings() -> None:
    msg = GOLDENS["folded"]
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == ([], 1)
    assert framer.feed(b"\r\n\r\n\r\n\r\n" + msg + b"\r\n\r\n") == ([msg], 3)
    bytewise = StreamFramer()
    assert feed_all(bytewise, [bytes([b]) for b in b"\r\n\r\n" + msg + b"\r\n\r\n"]) == ([msg], 2)
    pong = StreamFramer()  # a single CRLF (a pong) is skipped, not counted, and does not hide a message
    assert pong.feed(b"\r\n") == ([], 0)
    assert pong.feed(msg) == ([msg], 0)


def test_framer_oversized_message_is_513() -> None:
    framer = StreamFramer(max_bytes=1000)
    with pytest.raises(SipParseError) as info:
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nX-Pad: " + b"p" * 1000)
    assert info.value.status == 513
    framer = StreamFramer(max_bytes=1000)
    with pytest.raises(SipParseError) as info:
        framer.feed(base_request(content_length="5000"))  # the head says the body will be too large
    assert info.value.status == 513
    default = StreamFramer()
    with pytest.raises(SipParseError) as info:
        feed_all(default, [b"x" * 40000, b"y" * 40000])
    assert info.value.status == 513


def test_framer_bad_content_length_is_400() -> None:
    for value in (b"-5", b"many", b"1234567890"):
        framer = StreamFramer()
        with pytest.raises(SipParseError) as info:
            framer.feed(base_request(content_length=value.decode(errors="replace")))
        assert info.value.status == 400


def test_framer_compact_content_length_and_missing_length_means_no_body() -> None:
    framer = StreamFramer()
    data = base_request(body=b"hello", content_length=None)
    data = data.replace(b"\r\n\r\nhello", b"\r\nl: 5\r\n\r\nhello")
    assert framer.feed(data) == ([data], 0)
    head_only = base_request(content_length=None)
    assert StreamFramer().feed(head_only + b"\r\n\r\n") == ([head_only], 1)


def test_framer_reads_a_folded_content_length() -> None:
    """§7.3.1: any header value may be folded onto continuation lines, Content-Length included; the framer
    must read the length the parser will read (here 5), not reject the message."""
    data = base_request(content_length=None, extra=["Content-Type: text/plain"])[:-2] + (
        b"Content-Length:\r\n 5\r\n\r\nhello")
    assert parse_message(data, stream=True).body == b"hello"
    other = GOLDENS["folded"]
    assert StreamFramer().feed(data + other) == ([data, other], 0)


def test_framer_ignores_a_content_length_lookalike_on_a_continuation_line() -> None:
    """A continuation line belongs to the header above it (here Subject); if the framer took its
    "content-length: 99" as the length, it would swallow the start of the next message (a framing
    desync a peer could use to smuggle a message past whatever sits in front of the engine)."""
    data = base_request(body=b"hello", extra=["Subject: x", " content-length: 99"])
    data = data.replace(b"Content-Length: 5\r\n", b"")
    data = data.replace(b"Subject: x", b"Content-Length: 5\r\nSubject: x")
    assert parse_message(data, stream=True).get("subject") == "x content-length: 99"
    other = GOLDENS["folded"]
    assert StreamFramer().feed(data + other) == ([data, other], 0)


@pytest.mark.parametrize(
    "data",
    [
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: \xc2\xb2\r\n\r\n",
        b"SIP/2.0 \xc2\xb2\xc2\xb2\xc2\xb2 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Content-Length: 0\r\n\r\n",
        b"OPTIONS sip:x:\xc2\xb2 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["content-length", "status-code", "uri-port"],
)
def test_unicode_digits_are_not_numbers(data: bytes) -> None:
    """'²' passes str.isdigit() but int() refuses it: every number on the wire must be ASCII digits, and the
    parser must answer with SipParseError, never ValueError."""
    with pytest.raises(SipParseError):
        msg = parse_message(data)
        if isinstance(msg, Request):
            _ = msg.request_uri
