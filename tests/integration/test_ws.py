"""SIP over WebSocket (RFC 7118) against a real ``pbx serve --ws --wss``: a WebSocket SIP client (the
``websockets`` library's client, as a browser: an invented ``.invalid`` host in Via and Contact, no address
of its own) registers with digest auth over ws and wss, is called by a pjsua2 phone over UDP (the INVITE
can only reach it down its own connection) and calls that phone; tones are checked both ways on plain RTP.
The upgrade without the ``sip`` subprotocol is refused, and 1,000 bad connections leave no descriptors."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from engine.media.g711 import ULAW_DECODE, ULAW_ENCODE

from .harness import SMALL_USERS, PbxServer, PeerProcess, free_port, require_module
from .sipclient import SipClient, SipResponse, authorization, new_branch, parse_response, pick_challenge
from .test_tls import TONE_A_HZ, TONE_B_HZ, assert_heard, open_fds, phone, write_tone

pytestmark = pytest.mark.integration

Peers = Callable[..., PeerProcess]
A, B = SMALL_USERS[1], SMALL_USERS[2]


def ws_server(pbx_factory: Callable[..., PbxServer]) -> tuple[PbxServer, int, int]:
    ws_port, wss_port = free_port(), free_port()
    server = pbx_factory(extra_args=["--ws", f"127.0.0.1:{ws_port}", "--wss", f"127.0.0.1:{wss_port}"])
    # pbx_factory waits for UDP; the WebSocket listeners start after it (CI once read the log too early)
    server.wait_log(f"SIP listening on ws 127.0.0.1:{ws_port}")
    server.wait_log(f"SIP listening on wss 127.0.0.1:{wss_port}")
    return server, ws_port, wss_port


def test_a_websocket_client_registers_over_ws_and_wss_and_a_non_sip_upgrade_is_refused(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    server, ws_port, wss_port = ws_server(pbx_factory)  # both listeners logged
    for kind, port, user in (("WS", ws_port, A), ("WSS", wss_port, B)):
        with SipClient(("127.0.0.1", port), transport=kind) as c:
            assert c.transport.ws.subprotocol == "sip"
            unauthenticated = c.register(user.extension, None, expires=300)
            assert unauthenticated.status == 401, unauthenticated.text  # digest auth as on every transport
            resp = c.register(user.extension, user.password, expires=300)
            assert resp.status == 200, resp.text
            assert any(c.contact_uri(user.extension) in ct for ct in resp.contacts()), resp.text
            assert f"SIP/2.0/{kind} {c.ws_host}" in (resp.get("via") or "")
            assert c.options().status == 200
    rows = server.wait_bindings(lambda rows: len(rows) == 2, "the ws and wss bindings")
    assert sorted(r["source_transport"] for r in rows) == ["WS", "WSS"], rows
    for subprotocols in (None, ["chat"]):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{ws_port}", subprotocols=subprotocols, open_timeout=5)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 400
    assert "refused the WS upgrade" in server.log_text()


def test_a_thousand_bad_websocket_connections_leave_no_descriptors(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    """500 garbage upgrades (answered or closed at once) and 500 upgrades refused for their subprotocol,
    with the server's descriptor count before and after; the listener still registers afterwards."""
    server, ws_port, _ = ws_server(pbx_factory)
    before = open_fds(server.pid)
    for i in range(1000):
        with socket.create_connection(("127.0.0.1", ws_port), timeout=5) as sock:
            if i % 2:
                sock.sendall(os.urandom(100) + b"\r\n\r\n")
            else:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             b"Sec-WebSocket-Version: 13\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(4096):
                    pass  # read until the server closes
    time.sleep(0.5)
    assert open_fds(server.pid) <= before + 2  # a log rotation or a store handle may come and go
    with SipClient(("127.0.0.1", ws_port), transport="WS") as c:
        assert c.register(A.extension, A.password, expires=60).status == 200


# -- calls: the WebSocket client as a user agent with plain RTP -------------------------------------------
def request_head(data: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return lines[0], headers, body


def sdp(port: int) -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n").encode()


def media_address(body: bytes) -> tuple[str, int]:
    text = body.decode()
    host = re.search(r"c=IN IP4 (\S+)", text)
    port = re.search(r"m=audio (\d+)", text)
    assert host and port, text
    return host.group(1), int(port.group(1))


class Rtp:
    """The client's RTP: sends a µ-law tone to the engine's relay and records what comes back."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []

    def exchange(self, remote: tuple[str, int], tone_hz: float, seconds: float) -> None:
        t = np.arange(int(8000 * seconds)) / 8000.0
        pcm = (0.4 * 32767 * np.sin(2 * np.pi * tone_hz * t)).astype(np.int16)
        ulaw = ULAW_ENCODE[pcm.view(np.uint16)]
        stop = threading.Event()

        def receive() -> None:
            self.sock.settimeout(0.1)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    data = self.sock.recv(2048)
                    if len(data) > 12 and data[1] & 0x7F == 0:
                        self.received.append(data[12:])

        reader = threading.Thread(target=receive)
        reader.start()
        start = time.monotonic()
        for i in range(len(ulaw) // 160):
            header = bytes([0x80, 0]) + (i & 0xFFFF).to_bytes(2, "big") + (i * 160).to_bytes(4, "big") + \
                b"\x12\x34\x56\x78"
            self.sock.sendto(header + ulaw[i * 160:(i + 1) * 160].tobytes(), remote)
            time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
        stop.set()
        reader.join()

    def heard(self, path: Path) -> Path:
        samples = ULAW_DECODE[np.frombuffer(b"".join(self.received), dtype=np.uint8)].astype(np.int16)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(samples.tobytes())
        return path

    def close(self) -> None:
        self.sock.close()


def respond(c: SipClient, request: bytes, status: str, *, to_tag: str, body: bytes = b"",
            user: str = A.extension) -> None:
    _, headers, _ = request_head(request)
    lines = [f"SIP/2.0 {status}"]
    lines += [f"Via: {v}" for v in headers["via"]]
    to = headers["to"][0]
    lines += [f"From: {headers['from'][0]}", f"To: {to if 'tag=' in to else to + ';tag=' + to_tag}",
              f"Call-ID: {headers['call-id'][0]}", f"CSeq: {headers['cseq'][0]}",
              f"Contact: <{c.contact_uri(user)}>"]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    c.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def next_request(c: SipClient, method: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = c.transport.recv(deadline - time.monotonic())
        if data is not None and data.startswith(method.encode() + b" "):
            return data
    raise AssertionError(f"no {method} within {timeout} s")


@pytest.mark.parametrize("kind", ["WS", "WSS"])
def test_a_websocket_client_is_called_by_a_pjsua2_phone_down_its_connection_and_calls_it(
    pbx_factory: Callable[..., PbxServer], peers: Peers, tmp_path: Path, kind: str,
) -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    server, ws_port, wss_port = ws_server(pbx_factory)
    port = ws_port if kind == "WS" else wss_port
    b = phone(tmp_path, peers, "b", B.extension, B.password, f"127.0.0.1:{server.port}", auto_answer=200)
    with SipClient(("127.0.0.1", port), transport=kind) as c:
        assert c.register(A.extension, A.password, expires=300).status == 200
        server.wait_bindings(lambda rows: len(rows) == 2, "both phones")

        # B calls A: the INVITE comes down A's WebSocket (the Contact's host does not exist).
        rtp = Rtp()
        b.call(f"sip:{A.extension}@127.0.0.1:{server.port}")
        invite = next_request(c, "INVITE")
        first, headers, offer = request_head(invite)
        assert first == f"INVITE {c.contact_uri(A.extension)} SIP/2.0", first
        assert headers["via"][0].startswith(f"SIP/2.0/{kind} 127.0.0.1:{port};"), headers["via"]
        assert any(f"transport={kind.lower()}" in v for v in headers["contact"]), headers["contact"]
        respond(c, invite, "180 Ringing", to_tag="wsa")
        respond(c, invite, "200 OK", to_tag="wsa", body=sdp(rtp.port))
        next_request(c, "ACK")
        b.wait_state("CONFIRMED")
        b.record(tmp_path / "b-heard-1.wav")
        b.play(write_tone(tmp_path / "b-tone.wav", TONE_B_HZ, 3.0))
        rtp.exchange(media_address(offer), TONE_A_HZ, 2.5)
        heard_by_b = str(b.stop_record()["path"])
        b.stop_play()
        b.hangup()
        bye = next_request(c, "BYE")  # down the same connection
        respond(c, bye, "200 OK", to_tag="wsa")
        b.wait_state("DISCONNECTED")
        assert_heard(heard_by_b, TONE_A_HZ)
        assert_heard(str(rtp.heard(tmp_path / "a-heard-1.wav")), TONE_B_HZ)
        rtp.close()

        # A calls B over its WebSocket: challenged, authenticated, answered; A hangs up.
        rtp = Rtp()
        uri = f"sip:{B.extension}@{c.domain}"
        call_id = f"ws-call-{kind}@test"
        invite_headers = [("Contact", f"<{c.contact_uri(A.extension)}>"), ("Content-Type", "application/sdp")]
        branch = new_branch()
        challenge = c.transact(c.build("INVITE", uri, invite_headers, body=sdp(rtp.port),
                                       from_user=A.extension, to_user=B.extension, call_id=call_id, cseq=1,
                                       branch=branch))
        assert challenge.status in (401, 407), challenge.text
        c.send_raw(ack(c, uri, challenge, call_id, 1, branch))
        auth = authorization(pick_challenge(challenge), username=A.extension, password=A.password,
                             method="INVITE", uri=uri)
        header = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
        c.send_raw(c.build("INVITE", uri, [*invite_headers, (header, auth)], body=sdp(rtp.port),
                           from_user=A.extension, to_user=B.extension, call_id=call_id, cseq=2))
        b.wait_for("incoming_call")
        answer = final(c)
        assert answer.status == 200, answer.text
        contact = re.search(r"<([^>]+)>", answer.get("contact") or "")
        assert contact and f"transport={kind.lower()}" in contact.group(1), answer.text
        c.send_raw(ack(c, contact.group(1), answer, call_id, 2, new_branch()))
        b.wait_state("CONFIRMED")
        b.record(tmp_path / "b-heard-2.wav")
        b.play(write_tone(tmp_path / "b-tone.wav", TONE_B_HZ, 3.0))
        rtp.exchange(media_address(answer.body), TONE_A_HZ, 2.5)
        heard_by_b = str(b.stop_record()["path"])
        b.stop_play()
        to = answer.get("to") or ""
        bye = c.build("BYE", contact.group(1), [], from_user=A.extension, to_user=B.extension,
                      call_id=call_id, cseq=3).replace(f"To: <sip:{B.extension}@{c.domain}>".encode(),
                                                       f"To: {to}".encode())
        assert c.transact(bye).status == 200
        b.wait_state("DISCONNECTED")
        assert_heard(heard_by_b, TONE_A_HZ)
        assert_heard(str(rtp.heard(tmp_path / "a-heard-2.wav")), TONE_B_HZ)
        rtp.close()
    assert b.close() == 0


def final(c: SipClient, timeout: float = 10.0) -> SipResponse:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = c.transport.recv(deadline - time.monotonic())
        if data is not None and data.startswith(b"SIP/2.0 "):
            resp = parse_response(data)
            if resp.status >= 200:
                return resp
    raise AssertionError(f"no final response within {timeout} s")


def ack(c: SipClient, uri: str, resp: SipResponse, call_id: str, cseq: int, branch: str) -> bytes:
    """The ACK of ``resp``: for a non-2xx the INVITE's branch (§17.1.1.3), for a 2xx a new one (§13.2.2.4)."""
    data = c.build("ACK", uri, [], from_user=A.extension, to_user=B.extension, call_id=call_id, cseq=cseq,
                   branch=branch)
    return data.replace(f"To: <sip:{B.extension}@{c.domain}>".encode(), f"To: {resp.get('to')}".encode())



# -- a real browser: Debian's chromium opens the WebSocket with subprotocol sip ------------------------------
CHROMIUM = "/usr/bin/chromium"
PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>SIP over WebSocket</title></head><body>
<script>
window.sip = {log: [], closed: null};
window.openSip = (url, protocols) => new Promise((resolve, reject) => {
  const ws = protocols === null ? new WebSocket(url) : new WebSocket(url, protocols);
  window.sip.ws = ws;
  ws.onopen = () => resolve(ws.protocol);
  ws.onerror = () => reject(new Error("refused"));
  ws.onclose = (e) => { window.sip.closed = e.code; };
  ws.onmessage = (e) => window.sip.log.push(typeof e.data === "string" ? e.data : "(binary)");
});
window.sendSip = (text) => window.sip.ws.send(text);
</script></body></html>"""


def browser_register(user: str, host: str, call_id: str, cseq: int, auth: str = "") -> str:
    """A REGISTER as a browser's SIP library writes it (RFC 7118 §5.2: an invented host)."""
    lines = ["REGISTER sip:pbx.test SIP/2.0", f"Via: SIP/2.0/WS {host};branch={new_branch()}",
             "Max-Forwards: 70", f"From: <sip:{user}@pbx.test>;tag=br{cseq}x", f"To: <sip:{user}@pbx.test>",
             f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER", f"Contact: <sip:{user}@{host};transport=ws>",
             "Expires: 300", "User-Agent: chromium-test-page"]
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n"


def test_chromium_opens_a_sip_websocket_and_registers_with_digest(
    pbx_factory: Callable[..., PbxServer], tmp_path: Path,
) -> None:
    """The page (served by the test on 127.0.0.1, no CDN) opens ``new WebSocket(url, "sip")``: the upgrade
    is accepted with that subprotocol, the REGISTER it sends is challenged and, with the digest (computed
    here from the challenge the page received), registered; the binding's transport is WS. The same page
    without the subprotocol is refused."""
    import http.server

    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)", pytrace=False)
    server, ws_port, _ = ws_server(pbx_factory)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"ws://127.0.0.1:{ws_port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/")
            assert page.evaluate("([url]) => openSip(url, 'sip')", [url]) == "sip"
            host, call_id = f"{secrets.token_hex(5)}.invalid", f"{secrets.token_hex(8)}@browser"
            page.evaluate("(m) => sendSip(m)", browser_register(A.extension, host, call_id, 1))
            page.wait_for_function("sip.log.length >= 1", timeout=5000)
            challenge = parse_response(page.evaluate("sip.log[0]").encode())
            assert challenge.status == 401, challenge.text
            assert f"SIP/2.0/WS {host}" in (challenge.get("via") or "")
            auth = authorization(pick_challenge(challenge), username=A.extension, password=A.password,
                                 method="REGISTER", uri="sip:pbx.test")
            page.evaluate("(m) => sendSip(m)", browser_register(A.extension, host, call_id, 2, auth))
            page.wait_for_function("sip.log.length >= 2", timeout=5000)
            ok = parse_response(page.evaluate("sip.log[1]").encode())
            assert ok.status == 200, ok.text
            assert any(f"sip:{A.extension}@{host};transport=ws" in c for c in ok.contacts()), ok.text
            rows = server.wait_bindings(lambda rows: len(rows) == 1, "the browser's binding")
            assert rows[0]["source_transport"] == "WS", rows
            refused = page.evaluate("([url]) => openSip(url, null).then(() => 'open', e => e.message)", [url])
            assert refused == "refused"
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
