"""Issue 18 part 3 against a running ``pbx serve``: caps on what a peer can grow and 503 shedding, each
visible in /metrics. Over the load threshold (``--overload-cpu``, set low here so a test's flood reaches
it) new INVITEs get 503 with Retry-After while an in-dialog request and an OPTIONS from a phone elsewhere
are answered as ever, and once the flood stops a REGISTER is served again; a full transaction table
(``--max-transactions``) answers 503; one address cannot hold more than ``--max-connections-per-source``
TCP connections while another still registers over TCP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from .harness import SMALL_USERS, PbxServer, free_port, wait_http
from .sipclient import SipClient
from .test_metrics import scrape, value

pytestmark = pytest.mark.integration

FLOOD_S = 6.0
MAX_INVITES = 24_000  # about 4,000/s


def invite(server: PbxServer, local: tuple[str, int], n: int) -> bytes:
    host, port = local
    return (f"INVITE sip:1001@{server.host}:{server.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bKflood{n};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:flood@{host}>;tag=f{n}\r\nTo: <sip:1001@pbx.test>\r\n"
            f"Call-ID: flood-{n}@{host}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").encode()


def ack_for(response: bytes) -> bytes:
    """The ACK of a non-2xx final response to one of ``invite``'s INVITEs (§17.1.1.3: the INVITE's Via
    and branch, the response's To with its tag)."""
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    copied = (b"via", b"from", b"to", b"call-id")
    keep = [line for line in head[1:] if line.split(b":", 1)[0].lower() in copied]
    return (b"ACK sip:1001@pbx.test SIP/2.0\r\n" + b"\r\n".join(keep)
            + b"\r\nMax-Forwards: 70\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n")


class InviteFlood(threading.Thread):
    """New unauthenticated INVITEs from 127.0.0.1, about 4,000/s for ``FLOOD_S`` (each answered 401 or,
    when shed, 503, each ACKed); keeps a few 503s."""

    def __init__(self, server: PbxServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.sent = 0
        self.shed: list[bytes] = []
        self.statuses: dict[bytes, int] = {}

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            local = sock.getsockname()
            deadline = time.monotonic() + FLOOD_S
            while time.monotonic() < deadline and self.sent < MAX_INVITES:
                for _ in range(20):
                    sock.sendto(invite(self.server, local, self.sent), self.server.addr)
                    self.sent += 1
                time.sleep(0.005)
                self._read(sock)
            time.sleep(0.5)
            self._read(sock)

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            status = data[8:11]
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status >= b"200":
                sock.sendto(ack_for(data), self.server.addr)  # as a phone does: no retransmissions
            if status == b"503" and len(self.shed) < 5:
                self.shed.append(data)


def metrics_server(pbx_factory: Callable[..., PbxServer], *args: str) -> tuple[PbxServer, str]:
    http_port = free_port()
    server = pbx_factory(log_level="info",
                         extra_args=["--rate-limit", "0", "--http", f"127.0.0.1:{http_port}", *args])
    url = f"http://127.0.0.1:{http_port}/metrics"
    wait_http(url)
    return server, url


def test_an_invite_flood_is_shed_while_dialogs_and_other_requests_are_served(pbx_factory) -> None:
    server, url = metrics_server(pbx_factory, "--overload-cpu", "0.1", "--retry-after", "7")
    assert value(scrape(url), "pbx_sip_overloaded") == 0
    flood = InviteFlood(server)
    flood.start()
    in_dialog: list[int] = []
    options: list[int] = []
    overloaded = 0.0
    try:
        time.sleep(2.0)
        overloaded = value(scrape(url), "pbx_sip_overloaded")
        for _ in range(3):
            with SipClient(server.addr, bind_host="127.0.0.2", domain="pbx.test") as phone:
                bye = phone.build("BYE", f"sip:1001@{server.host}:{server.port}", [])
                bye = bye.replace(b"To: <sip:tester@pbx.test>", b"To: <sip:tester@pbx.test>;tag=gone")
                in_dialog.append(phone.transact(bye, timeout=8.0).status)
                options.append(phone.options(timeout=8.0).status)
    finally:
        flood.join(timeout=FLOOD_S + 30)
    assert overloaded == 1, f"not overloaded during the flood: {flood.statuses}\n{server.log_tail()}"
    assert flood.shed, f"no INVITE was shed ({flood.sent} sent: {flood.statuses})\n{server.log_tail()}"
    shed = flood.shed[0].decode()
    assert "SIP/2.0 503 Service Unavailable (overloaded)\r\n" in shed, shed
    assert "\r\nRetry-After: 7\r\n" in shed, shed
    assert in_dialog == [481] * 3, in_dialog  # served (no such dialog), not shed
    assert options == [200] * 3, options
    samples = scrape(url)
    assert 0 < value(samples, "pbx_sip_shed_total", reason="overload") <= flood.sent
    assert value(samples, "pbx_sip_overload_episodes_total") >= 1
    deadline = time.monotonic() + 15
    while value(scrape(url), "pbx_sip_overloaded") == 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    with SipClient(server.addr, bind_host="127.0.0.2", domain="pbx.test") as phone:
        assert phone.register(SMALL_USERS[0].extension, SMALL_USERS[0].password).status == 200
    log = server.log_text()
    assert "overloaded (" in log and "serving new INVITEs and REGISTERs again" in log, server.log_tail()


def test_a_full_transaction_table_answers_503(pbx_factory) -> None:
    server, url = metrics_server(pbx_factory, "--max-transactions", "40", "--overload-cpu", "0")
    statuses = []
    with SipClient(server.addr, domain="pbx.test") as client:
        for _ in range(60):  # each OPTIONS's transaction stays 32 s (Timer J) over UDP
            resp = client.transact(client.build("OPTIONS", f"sip:{server.host}:{server.port}", []))
            statuses.append(resp.status)
            if resp.status == 503:
                assert resp.reason == "Service Unavailable (transaction table full)"
                assert resp.get("retry-after") == "5"
    first = statuses.index(503) if 503 in statuses else -1
    # 40 in the table, the harness's readiness OPTIONS among them: then every new request is refused
    assert 35 <= first <= 40 and statuses == [200] * first + [503] * (60 - first), statuses
    samples = scrape(url)
    assert value(samples, "pbx_sip_shed_total", reason="transactions") == statuses.count(503)
    assert value(samples, "pbx_limit", table="transactions") == 40
    with SipClient(server.addr, transport="TCP", domain="pbx.test") as client:
        # over TCP a completed transaction ends at once (Timer J is 0): served even with the UDP ones held
        assert client.options().status in (200, 503)


def test_one_address_cannot_hold_more_than_its_connections(pbx_factory) -> None:
    server, url = metrics_server(pbx_factory, "--max-connections-per-source", "5")
    held = []
    closed = 0
    try:
        for _ in range(8):
            sock = socket.create_connection(server.addr, timeout=5, source_address=("127.0.0.1", 0))
            held.append(sock)
        time.sleep(0.5)
        for sock in held:
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    closed += 1
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        with SipClient(server.addr, transport="TCP", bind_host="127.0.0.2", domain="pbx.test") as phone:
            assert phone.register(SMALL_USERS[1].extension, SMALL_USERS[1].password).status == 200
        samples = scrape(url)
    finally:
        for sock in held:
            sock.close()
    assert closed == 3
    assert value(samples, "pbx_sip_connections_refused_total") == 3
    assert value(samples, "pbx_limit", table="connections_per_source") == 5
    assert "too many TCP connections" in server.log_text()
