"""SIP over TLS (issue 16, part 1) against a real ``pbx serve --tls``: the self-signed certificate made on
first start and reused on restart with its fingerprint logged, REGISTER with digest over TLS, CRLF
keep-alives, pjsua2 over TLS calling a UDP pjsua2 phone (and called back) with the tone heard both ways,
baresip over TLS registering and calling, and failed or never-finished handshakes closed in bounded time
without the server keeping descriptors."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ..peers.softphone import Softphone
from .audio import dominant_frequency, signal_seconds, write_tone
from .harness import SMALL_USERS, PbxServer, PeerProcess, free_port, require_module, require_tool
from .sipclient import SipClient

pytestmark = pytest.mark.integration

Peers = Callable[..., PeerProcess]
A, B = SMALL_USERS[1], SMALL_USERS[2]
REALM = "pbx.test"


def tls_server(pbx_factory: Callable[..., PbxServer], *extra: str) -> tuple[PbxServer, int]:
    tls_port = free_port()
    server = pbx_factory(extra_args=["--tls", f"127.0.0.1:{tls_port}", *extra])
    return server, tls_port


def logged_fingerprints(server: PbxServer) -> list[str]:
    return re.findall(r"TLS certificate SHA-256 fingerprint ([0-9A-F:]{95})", server.log_text())


def test_the_certificate_is_made_on_first_start_reused_on_restart_and_registers_work_over_tls(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    server, tls_port = tls_server(pbx_factory)
    cert_file = server.data_dir / "tls" / "sip.crt"
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    expected = cert.fingerprint(hashes.SHA256()).hex().upper()
    assert logged_fingerprints(server) == [":".join(expected[i:i + 2] for i in range(0, 64, 2))]
    assert "made the self-signed TLS certificate" in server.log_text()

    with SipClient(("127.0.0.1", tls_port), transport="TLS") as c:
        tls = c.transport.sock
        assert isinstance(tls, ssl.SSLSocket) and tls.version() in ("TLSv1.2", "TLSv1.3")
        der = tls.getpeercert(binary_form=True)
        assert der == cert.public_bytes(serialization.Encoding.DER)
        resp = c.register(A.extension, A.password, expires=300)
        assert resp.status == 200, resp.text
        assert any(c.contact_uri(A.extension) in ct for ct in resp.contacts()), resp.text
        c.send_raw(b"\r\n\r\n")  # RFC 5626 §4.4.1 keep-alive: answered with CRLF on the same connection
        assert c.transport.sock.recv(2) == b"\r\n"
        assert c.options().status == 200  # and the connection still carries SIP
    server.wait_bindings(lambda rows: any(r.get("source_transport") == "TLS" for r in rows), "a TLS binding")

    server.restart()
    assert logged_fingerprints(server) == [logged_fingerprints(server)[0]] * 2  # the same certificate
    assert "using the self-signed TLS certificate" in server.log_text()
    assert x509.load_pem_x509_certificate(cert_file.read_bytes()) == cert


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused_by_the_server(pbx_factory: Callable[..., PbxServer]) -> None:
    _, tls_port = tls_server(pbx_factory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_1  # (the system default floor is 1.2)
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")  # let this client offer 1.1 at all
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5.0) as raw, \
            pytest.raises(ssl.SSLError) as refused:
        context.wrap_socket(raw)
    # The server's alert or close after our 1.1 ClientHello (not this client failing to offer 1.1 at all,
    # which is "no protocols available").
    assert isinstance(refused.value, ssl.SSLEOFError) or "PROTOCOL_VERSION" in str(refused.value), \
        refused.value


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_garbage_and_silent_handshakes_are_closed_and_leave_no_descriptors(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    """200 connections that send garbage and 200 that stay silent: the garbage ones are closed at once,
    the silent ones at the engine's handshake timeout (10 s), and the server ends with the descriptors it
    began with; a real client still registers."""
    server, tls_port = tls_server(pbx_factory)
    before = open_fds(server.pid)
    garbage: list[float] = []
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5.0) as s:
            start = time.monotonic()
            s.sendall(b"NOT TLS " + os.urandom(200) + b"\r\n\r\n")  # no record header (test_tls in tests/net)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            garbage.append(time.monotonic() - start)
    assert max(garbage) < 2.0, max(garbage)
    silent = [socket.create_connection(("127.0.0.1", tls_port), timeout=5.0) for _ in range(200)]
    started = time.monotonic()
    try:
        for s in silent:
            s.settimeout(max(0.1, started + 20.0 - time.monotonic()))
            with contextlib.suppress(ConnectionResetError):
                assert s.recv(4096) == b""
        waited = time.monotonic() - started
    finally:
        for s in silent:
            s.close()
    assert 5.0 < waited < 15.0, waited  # closed by the server's 10 s handshake timeout
    deadline = time.monotonic() + 5.0
    while open_fds(server.pid) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(server.pid) <= before
    with SipClient(("127.0.0.1", tls_port), transport="TLS") as c:
        assert c.register(A.extension, A.password, expires=60).status == 200


# -- real phones ------------------------------------------------------------------------------------------
TONE_A_HZ, TONE_B_HZ = 700.0, 1100.0


def assert_heard(wav: str, hz: float) -> None:
    heard = dominant_frequency(wav)
    assert abs(heard - hz) <= 20.0, f"{wav}: dominant {heard:.1f} Hz, expected {hz}"
    assert signal_seconds(wav) >= 1.2, f"{wav}: only {signal_seconds(wav):.2f} s of signal"


def phone(tmp: Path, peers: Peers, name: str, user: str, password: str, registrar: str, kind: str = "pjsua2",
          **kw: object) -> Softphone:
    factory = Softphone.baresip if kind == "baresip" else Softphone.pjsua2
    p = factory(name, tmp, user=user, password=password, registrar=registrar, spawn=peers, **kw)  # type: ignore[arg-type]
    p.start()
    p.wait_registered()
    return p


def talk(tmp: Path, caller: Softphone, callee: Softphone, tag: str) -> tuple[str, str]:
    """Both play their tone and record 2.5 s; the callee's and the caller's recordings."""
    tone_a = write_tone(tmp / f"{tag}-a.wav", TONE_A_HZ, 2.0)
    tone_b = write_tone(tmp / f"{tag}-b.wav", TONE_B_HZ, 2.0)
    callee.record(tmp / f"{tag}-callee-heard.wav")
    caller.record(tmp / f"{tag}-caller-heard.wav")
    caller.play(tone_a)
    callee.play(tone_b)
    time.sleep(2.5)
    heard_by_callee = str(callee.stop_record()["path"])
    heard_by_caller = str(caller.stop_record()["path"])
    caller.stop_play()
    callee.stop_play()
    return heard_by_callee, heard_by_caller


def test_pjsua2_over_tls_calls_a_udp_phone_and_is_called_back(
    pbx_factory: Callable[..., PbxServer], peers: Peers, tmp_path: Path,
) -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    server, tls_port = tls_server(pbx_factory)
    a = phone(tmp_path, peers, "a", A.extension, A.password, f"127.0.0.1:{tls_port}", transport="tls",
              auto_answer=200)
    b = phone(tmp_path, peers, "b", B.extension, B.password, f"127.0.0.1:{server.port}", auto_answer=200)
    rows = server.wait_bindings(lambda rows: len(rows) == 2, "both phones")
    assert {r["aor"].split("@")[0].split(":")[-1]: r["source_transport"] for r in rows} == {
        A.extension: "TLS", B.extension: "UDP"}, rows

    a.call(f"sip:{B.extension}@127.0.0.1:{tls_port};transport=tls")
    incoming = b.wait_for("incoming_call")
    assert incoming["src"] == f"127.0.0.1:{server.port}", incoming  # the UDP leg, from the UDP port
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    heard_by_b, heard_by_a = talk(tmp_path, a, b, "a-calls-b")
    assert_heard(heard_by_b, TONE_A_HZ)
    assert_heard(heard_by_a, TONE_B_HZ)
    b.hangup()  # the engine's BYE reaches A over A's TLS connection
    assert a.wait_state("DISCONNECTED")["last_code"] == 200
    b.wait_state("DISCONNECTED")

    # Called back: the INVITE goes to A over the connection A registered on (A's own TLS listener is not
    # what its Contact's ephemeral port names).
    b.call(f"sip:{A.extension}@127.0.0.1:{server.port}")
    incoming = a.wait_for("incoming_call")
    assert incoming["src"] == f"127.0.0.1:{tls_port}", incoming  # the engine's end of A's connection
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    heard_by_a, heard_by_b = talk(tmp_path, b, a, "b-calls-a")
    assert_heard(heard_by_a, TONE_A_HZ)
    assert_heard(heard_by_b, TONE_B_HZ)
    a.hangup()
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    assert a.close() == 0 and b.close() == 0


def test_baresip_over_tls_registers_and_calls_a_pjsua2_phone(
    pbx_factory: Callable[..., PbxServer], peers: Peers, tmp_path: Path,
) -> None:
    require_tool("baresip", "apt-get install baresip (scripts/test.sh does)")
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    server, tls_port = tls_server(pbx_factory)
    b = phone(tmp_path, peers, "b", B.extension, B.password, f"127.0.0.1:{server.port}", auto_answer=200)
    a = phone(tmp_path, peers, "a", A.extension, A.password, f"127.0.0.1:{tls_port}", "baresip",
              transport="tls")
    server.wait_bindings(lambda rows: any(r["source_transport"] == "TLS" for r in rows), "baresip over TLS")
    a.call(f"sip:{B.extension}@127.0.0.1:{tls_port}")  # baresip adds its account's ;transport=tls itself
    b.wait_for("incoming_call")
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    tone = write_tone(tmp_path / "baresip-tone.wav", TONE_A_HZ, 2.0)
    b.record(tmp_path / "b-heard-baresip.wav")
    a.play(tone)
    time.sleep(2.5)
    heard = str(b.stop_record()["path"])
    assert_heard(heard, TONE_A_HZ)
    a.hangup()
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    assert b.close() == 0


# -- SRTP (issue 16, part 2) ------------------------------------------------------------------------------
class LoopbackCapture:
    """Every IPv4 UDP datagram on ``lo`` to or from the given ports, read from an AF_PACKET socket (root):
    what really crossed the wire, as tcpdump would show it."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.packets: list[tuple[int, int, bytes]] = []  # (source port, destination port, UDP payload)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                frame, (_, _, kind, *_rest) = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            if kind == socket.PACKET_OUTGOING:
                continue  # loopback shows each datagram twice: once going out, once coming in
            ip = frame[14:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            udp = ip[(ip[0] & 0x0F) * 4:]
            sport, dport = int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")
            if sport in self.ports or dport in self.ports:
                self.packets.append((sport, dport, udp[8:]))

    def close(self) -> None:
        self.sock.close()


def test_pjsua2_with_srtp_over_tls_calls_a_udp_phone_and_its_leg_carries_no_plain_g711(
    pbx_factory: Callable[..., PbxServer], peers: Peers, tmp_path: Path,
) -> None:
    """A (TLS, SRTP required, SDES) calls B (UDP, plain RTP): the engine answers A with RTP/SAVP and its
    own key, offers B plain RTP/AVP, and its relay translates. Both hear the other's tone; on the wire,
    A's leg carries SRTP (10-byte tags, no 160-byte G.711 frame that B's leg carries in the clear)."""
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    server, tls_port = tls_server(pbx_factory)
    a = phone(tmp_path, peers, "a", A.extension, A.password, f"127.0.0.1:{tls_port}", transport="tls",
              extra=["--srtp"])
    b = phone(tmp_path, peers, "b", B.extension, B.password, f"127.0.0.1:{server.port}", auto_answer=200)
    a.call(f"sip:{B.extension}@127.0.0.1:{tls_port};transport=tls")
    incoming = b.wait_for("incoming_call")
    a.wait_state("CONFIRMED")
    b.wait_state("CONFIRMED")
    a_media = a.wait_for("media_state", lambda e: e.get("state") == "active")
    b_media = b.wait_for("media_state", lambda e: e.get("state") == "active")
    a_port = int(str(a_media["local_rtp"]).rpartition(":")[2])
    b_port = int(str(b_media["local_rtp"]).rpartition(":")[2])
    assert "RTP/SAVP" not in str(incoming), incoming  # B was offered plain RTP

    capture = LoopbackCapture({a_port, b_port})
    try:
        tone_a = write_tone(tmp_path / "srtp-a.wav", TONE_A_HZ, 3.0)
        tone_b = write_tone(tmp_path / "srtp-b.wav", TONE_B_HZ, 3.0)
        b.record(tmp_path / "srtp-b-heard.wav")
        a.record(tmp_path / "srtp-a-heard.wav")
        a.play(tone_a)
        b.play(tone_b)
        time.sleep(0.5)
        capture.run(1.5)
        time.sleep(0.5)
        heard_by_b = str(b.stop_record()["path"])
        heard_by_a = str(a.stop_record()["path"])
    finally:
        capture.close()
    assert_heard(heard_by_b, TONE_A_HZ)
    assert_heard(heard_by_a, TONE_B_HZ)

    a_leg = [p for s, d, p in capture.packets if a_port in (s, d) and len(p) >= 12 and p[0] >> 6 == 2]
    b_leg = [p for s, d, p in capture.packets if b_port in (s, d) and len(p) >= 12 and p[0] >> 6 == 2]
    assert len(a_leg) >= 100 and len(b_leg) >= 100, (len(a_leg), len(b_leg))  # ~50/s each way for 1.5 s
    assert {len(p) for p in b_leg} == {172}  # plain PCMU: 12-byte header + 160 bytes
    assert {len(p) for p in a_leg} == {182}  # the same + the 80-bit authentication tag
    plain_frames = {p[12:] for p in b_leg}  # A's tone as B gets it and B's tone as B sends it, in the clear
    a_bytes = b"".join(a_leg)
    assert not [f for f in plain_frames if f[:40] in a_bytes], "plain G.711 of the call on the SRTP leg"
    a.hangup()
    assert b.wait_state("DISCONNECTED")["last_code"] == 200
    assert a.close() == 0 and b.close() == 0
