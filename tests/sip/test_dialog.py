"""Dialog state (RFC 3261 §12) and the client side of digest (answering a carrier's challenge)."""

from __future__ import annotations

import random

from engine.sip.auth import AuthOutcome, Credentials, DigestAuthenticator, answer_challenge, compute_ha1
from engine.sip.dialog import Dialog
from engine.sip.message import Request, Response
from engine.sip.parser import parse_message
from engine.sip.transaction import Peer

PEER = Peer("UDP", "10.0.0.9", 5060)

INVITE = (
    "INVITE sip:bob@pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
    "Record-Route: <sip:p1.test;lr>, <sip:p2.test;lr>\r\n"
    'From: "Alice" <sip:alice@a.test>;tag=a1;x=y\r\n'
    "To: <sip:bob@pbx.test>\r\n"
    "Call-ID: c1\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@10.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
)


def _req(text: str) -> Request:
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def test_uas_dialog_takes_route_set_in_order_and_builds_in_dialog_requests() -> None:
    d = Dialog.as_uas(_req(INVITE), "b1", "<sip:pbx@10.0.0.2>", PEER)
    assert d.route_set == ("<sip:p1.test;lr>", "<sip:p2.test;lr>")
    assert d.remote_target == "sip:alice@10.0.0.1:5070" and d.remote_seq == 7
    bye = d.request("BYE")
    assert bye.uri == "sip:alice@10.0.0.1:5070"
    assert bye.get_all("route") == ["<sip:p1.test;lr>", "<sip:p2.test;lr>"]
    assert bye.get("from") == "<sip:bob@pbx.test>;tag=b1"
    assert bye.get("to") == '"Alice" <sip:alice@a.test>;x=y;tag=a1'
    assert bye.cseq.seq == 1 and d.request("INFO").cseq.seq == 2


def test_uac_dialog_reverses_the_route_set_and_acks_with_the_invite_cseq() -> None:
    invite = _req(INVITE)
    ok = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        b"Record-Route: <sip:p1.test;lr>, <sip:p2.test;lr>\r\nFrom: <sip:alice@a.test>;tag=a1\r\n"
        b"To: <sip:bob@pbx.test>;tag=b9\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n"
        b"Contact: <sip:bob@10.0.0.3>\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(ok, Response)
    d = Dialog.as_uac(invite, ok, PEER)
    assert d.route_set == ("<sip:p2.test;lr>", "<sip:p1.test;lr>")
    ack = d.ack(7)
    assert ack.cseq.seq == 7 and ack.cseq.method == "ACK" and ack.uri == "sip:bob@10.0.0.3"
    assert d.request("BYE").cseq.seq == 8


def test_strict_route_puts_the_first_hop_in_the_request_uri_and_the_target_last() -> None:
    text = INVITE.replace("Record-Route: <sip:p1.test;lr>, <sip:p2.test;lr>",
                          "Record-Route: <sip:strict.test>")
    d = Dialog.as_uas(_req(text), "b1", "<sip:pbx@10.0.0.2>", PEER)
    bye = d.request("BYE")
    assert bye.uri == "sip:strict.test"
    assert bye.get_all("route") == ["<sip:alice@10.0.0.1:5070>"]


def test_requests_out_of_cseq_order_get_500_and_target_refresh_moves_the_target() -> None:
    d = Dialog.as_uas(_req(INVITE), "b1", "<sip:pbx@10.0.0.2>", PEER)
    old = _req(INVITE.replace("CSeq: 7 INVITE", "CSeq: 7 BYE").replace("INVITE sip", "BYE sip"))
    assert d.check_request(old) == 500
    reinvite = _req(INVITE.replace("CSeq: 7", "CSeq: 8").replace("10.0.0.1:5070", "10.0.0.1:5999"))
    assert d.check_request(reinvite) is None
    assert d.remote_target == "sip:alice@10.0.0.1:5999" and d.remote_seq == 8


def test_answer_challenge_is_accepted_by_our_own_authenticator_for_md5_and_sha256() -> None:
    for algorithm in ("MD5", "SHA-256"):
        auth = DigestAuthenticator("carrier.test", b"k" * 32, algorithms=(algorithm,), rng=random.Random(1))
        (challenge,) = auth.challenge_headers(100.0)
        uri = "sip:+4930123@carrier.test"
        value = answer_challenge(challenge, "INVITE", uri, "trunk1", "s3cret", "cn1")
        creds = Credentials("trunk1", "carrier.test", compute_ha1("trunk1", "carrier.test", "s3cret", "MD5"),
                            compute_ha1("trunk1", "carrier.test", "s3cret", "SHA-256"))
        result = auth.verify("INVITE", "sip:+4930123@carrier.test", value, {"trunk1": creds}.get, 101.0,
                             "10.0.0.1")
        assert result.outcome is AuthOutcome.OK, (algorithm, result)
        wrong = answer_challenge(challenge, "INVITE", "sip:+4930123@carrier.test", "trunk1", "bad", "cn2")
        assert auth.verify("INVITE", "sip:+4930123@carrier.test", wrong, {"trunk1": creds}.get, 101.0,
                           "10.0.0.1").outcome is AuthOutcome.FAILED
