"""SIP over TCP on the same port as UDP: REGISTER with digest, and stream framing by Content-Length."""

from __future__ import annotations

import time

import pytest

from .harness import SMALL_USERS, PbxServer
from .sipclient import SipClient

pytestmark = pytest.mark.integration

USER = SMALL_USERS[5]
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def test_register_over_tcp(pbx_server: PbxServer) -> None:
    with SipClient(pbx_server.addr, transport="TCP") as c:
        resp = c.register(USER.extension, USER.password, expires=300)
        assert resp.status == 200, resp.text
        mine = c.contact_uri(USER.extension)
        assert any(mine in ct for ct in resp.contacts()), resp.text
        query = c.register(USER.extension, USER.password, contact=None, expires=None)
        assert query.status == 200 and any(mine in ct for ct in query.contacts()), query.text


def test_two_messages_in_one_segment(pbx_server: PbxServer) -> None:
    uri = f"sip:{pbx_server.host}:{pbx_server.port}"
    with SipClient(pbx_server.addr, transport="TCP") as c:
        first = c.build("OPTIONS", uri, [("Accept", "application/sdp")])
        second = c.build("OPTIONS", uri, [("Content-Type", "application/sdp")], body=SDP)
        c.send_raw(first + second)
        got = [c.recv(5.0) for _ in range(2)]
    assert all(r is not None for r in got), f"expected two answers, got {got}"
    answers = {r.get("cseq"): r.status for r in got if r is not None}
    assert answers == {"1 OPTIONS": 200, "2 OPTIONS": 200}, answers


def test_one_message_split_over_several_sends(pbx_server: PbxServer) -> None:
    uri = f"sip:{pbx_server.host}:{pbx_server.port}"
    with SipClient(pbx_server.addr, transport="TCP") as c:
        msg = c.build("OPTIONS", uri, [("Content-Type", "application/sdp")], body=SDP)
        head_end = msg.index(b"\r\n\r\n")
        cuts = [
            7,
            60,
            head_end + 2,
            head_end + 4 + 10,
            len(msg),
        ]  # mid line, mid header, mid CRLFCRLF, mid body
        start = 0
        for cut in cuts:
            c.send_raw(msg[start:cut])
            start = cut
            time.sleep(0.1)
            if cut < len(msg):
                early = c.recv(0.05)
                assert early is None, f"answered before the whole message arrived:\n{early}"
        resp = c.recv(5.0)
        assert resp is not None and resp.status == 200, f"no 200 to the split message: {resp}"
        # The connection stays usable for the next request.
        again = c.options()
        assert again.status == 200, again.text

