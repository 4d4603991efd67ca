"""Calls through a real ``pbx serve``, with SIPp as carrier and as phones, and our stdlib client as a caller:
DID delivery from a trunk, refusal of untrusted sources, outbound calls with caller ID and carrier auth,
and the busy / no-answer / cancel / unknown / not-registered / forbidden paths, each with its CDR."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .harness import PbxServer, free_port, require_tool, run_pbx
from .sipclient import SipClient, SipResponse, authorization, pick_challenge

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).parent / "scenarios"
DID = "+493023125300"
CALLER_ID = "+493023125300"
CARRIER_USER, CARRIER_PASSWORD = "beispiel-trunk", "carrier-secret-123"  # as in uas_carrier_auth.xml
SDP = (b"v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")


def company_yaml(carrier_port: int) -> str:
    # Voicemail off: busy, no answer and unregistered must reach the caller as SIP answers here (voicemail
    # answers such calls instead; it is tested in test_dialplan_calls and test_voicemail).
    return f"""
version: 1
company: {{name: Calls Test GmbH, sip_realm: pbx.test, country: DE, area_code: "30"}}
users:
  - {{first_name: Anna, last_name: Caller, extension: "201", sip_password: secret-201,
     external_caller_id: "+49 30 23125 300", voicemail: false}}
  - {{first_name: Ben, last_name: Callee, extension: "202", sip_password: secret-202, voicemail: false}}
  - {{first_name: Cem, last_name: Busy, extension: "203", sip_password: secret-203, voicemail: false}}
  - {{first_name: Dora, last_name: Away, extension: "204", sip_password: secret-204, voicemail: false}}
numbers:
  - {{number: "+49 30 23125 300", route: {{kind: extension, target: "202"}}}}
trunks:
  - {{name: carrier, sources: ["127.0.0.2"], host: 127.0.0.2, port: {carrier_port}, transport: UDP,
     username: {CARRIER_USER}, password: {CARRIER_PASSWORD}}}
"""


@dataclass
class Rig:
    server: PbxServer
    carrier_port: int
    tmp: Path
    sipp: str
    procs: list[subprocess.Popen[bytes]]

    def register(self, ext: str, contact_port: int) -> None:
        with SipClient(self.server.addr, domain="pbx.test") as c:
            resp = c.register(ext, f"secret-{ext}", contact=f"<sip:{ext}@127.0.0.1:{contact_port}>")
            assert resp.status == 200, resp

    def sipp_bg(self, name: str, scenario: str, host: str, port: int, *args: str) -> subprocess.Popen[bytes]:
        cmd = [self.sipp, "-sf", str(SCENARIOS / scenario), "-i", host, "-p", str(port), "-m", "1",
               "-nostdin", "-timeout", "30s", "-timeout_error", "-trace_msg", "-message_file",
               str(self.tmp / f"{name}.msg"), "-trace_err", "-error_file", str(self.tmp / f"{name}.err"),
               *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

    def msg_log(self, name: str) -> str:
        path = self.tmp / f"{name}.msg"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, proc: subprocess.Popen[bytes], name: str, timeout: float = 40.0) -> None:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"sipp {name} did not finish\n{self.msg_log(name)[-3000:]}\n{self.server.log_tail()}")
        if proc.returncode != 0:
            err_file = self.tmp / f"{name}.err"
            errors = err_file.read_text(errors="replace") if err_file.exists() else ""
            pytest.fail(f"sipp {name} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}\n"
                        f"{errors[-2000:]}\n{self.msg_log(name)[-4000:]}\n{self.server.log_tail()}")

    def cdrs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The newest ``count`` CDRs (waits for the writer thread to commit them)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            out = run_pbx("cdr", "list", "--data-dir", str(self.server.data_dir), "--json").stdout
            rows = _json_rows(out)
            if len(rows) >= count:
                return rows
            time.sleep(0.2)
        pytest.fail(f"expected {count} CDRs, found {rows}")


def _md5_digest(c: dict[str, str], password: str, method: str) -> str:
    """RFC 7616 qop=auth response, computed here with hashlib (independent of the engine's digest code)."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()
    ha1, ha2 = md5(f"{c['username']}:{c['realm']}:{password}"), md5(f"{method}:{c['uri']}")
    return md5(f"{ha1}:{c['nonce']}:{c['nc']}:{c['cnonce']}:{c['qop']}:{ha2}")


def _json_rows(out: str) -> list[dict[str, Any]]:
    out = out.strip()
    if not out:
        return []
    if out.startswith("["):
        return list(json.loads(out))
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def rig(pbx_factory: Callable[..., PbxServer], tmp_path: Path) -> Iterator[Rig]:
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    carrier_port = free_port("127.0.0.2")
    company = tmp_path / "calls-company.yaml"
    company.write_text(company_yaml(carrier_port))
    server = pbx_factory(company_file=company, extra_args=("--ring-timeout", "3"))
    rig = Rig(server, carrier_port, tmp_path, sipp, [])
    try:
        yield rig
    finally:
        rig.stop_all()


def invite(client: SipClient, target: str, user: str | None, *, timeout: float = 15.0) -> SipResponse:
    """INVITE ``target`` from ``client`` (answering one 407 when ``user`` is given); ACKs a final non-2xx."""
    uri = f"sip:{target}@{client.server[0]}:{client.server[1]}"
    headers = [("Contact", f"<{client.contact_uri(user or 'carrier')}>"), ("Content-Type", "application/sdp")]
    data = client.build("INVITE", uri, headers, body=SDP, from_user=user or "+4940123456", to_user=target)
    resp = client.transact(data, timeout=timeout)
    if resp.status == 407 and user is not None:
        _ack(client, data, resp)
        auth = authorization(pick_challenge(resp, "MD5"), username=user, password=f"secret-{user}",
                             method="INVITE", uri=uri)
        data = client.build("INVITE", uri, [*headers, ("Proxy-Authorization", auth)], body=SDP,
                            from_user=user, to_user=target)
        resp = client.transact(data, timeout=timeout)
    if resp.status >= 300:
        _ack(client, data, resp)
    return resp


def _final_for(client: SipClient, method: str, timeout: float) -> SipResponse:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.recv(1.0)
        if r is not None and r.status >= 200 and (r.get("cseq") or "").endswith(method):
            return r
    pytest.fail(f"no final response to {method}")


def _ack(client: SipClient, invite_data: bytes, resp: SipResponse) -> None:
    head = invite_data.split(b"\r\n\r\n")[0].decode()
    lines = head.split("\r\n")
    uri = lines[0].split()[1]
    out = [f"ACK {uri} SIP/2.0"]
    for line in lines[1:]:
        name = line.split(":", 1)[0].lower()
        if name in ("via", "from", "call-id", "max-forwards"):
            out.append(line)
        elif name == "cseq":
            out.append(f"CSeq: {line.split()[1]} ACK")
    out.append(f"To: {resp.get('to')}")
    out.append("Content-Length: 0")
    client.send_raw(("\r\n".join(out) + "\r\n\r\n").encode())


def test_carrier_delivers_a_did_to_the_registered_phone(rig: Rig) -> None:
    uas_port = free_port()
    rig.register("202", uas_port)
    uas = rig.sipp_bg("uas", "uas_answer.xml", "127.0.0.1", uas_port)
    time.sleep(0.3)
    uac = rig.sipp_bg("uac", "uac_call.xml", "127.0.0.2", free_port("127.0.0.2"), "-s", "03023125300",
                      "-d", "500", f"{rig.server.host}:{rig.server.port}")
    rig.wait(uac, "uac")
    rig.wait(uas, "uas")
    phone_side = rig.msg_log("uas")
    assert '"SIPp Carrier" <sip:+4940123456@pbx.test>' in phone_side
    assert "m=audio 40000" not in phone_side  # media anchored: the phone sees the relay, not the carrier
    (cdr,) = rig.cdrs(1)
    assert cdr["direction"] == "inbound" and cdr["disposition"] == "answered"
    assert cdr["did"] == DID and cdr["trunk"] == "carrier" and cdr["callee"] == "202"
    assert cdr["caller"] == "+4940123456" and cdr["hangup_cause"] == "caller hung up"


def test_did_from_an_address_that_is_no_trunk_gets_403(rig: Rig) -> None:
    with SipClient(rig.server.addr, bind_host="127.0.0.3", domain="pbx.test") as c:
        resp = invite(c, DID, None)
    assert resp.status == 403 and "trunk" in resp.reason


def test_line_calls_out_through_the_trunk_with_its_caller_id_and_carrier_auth(rig: Rig) -> None:
    carrier = rig.sipp_bg("carrier", "uas_carrier_auth.xml", "127.0.0.2", rig.carrier_port)
    time.sleep(0.3)
    users = rig.tmp / "caller.csv"
    users.write_text("SEQUENTIAL\n201;[authentication username=201 password=secret-201]\n")
    pbx = f"{rig.server.host}:{rig.server.port}"
    # -auth_uri: SIPp would otherwise put sip:HOST:PORT in the digest uri, which must be the Request-URI.
    uac = rig.sipp_bg("uac", "uac_call_auth.xml", "127.0.0.1", free_port(), "-s", "0891234567", "-inf",
                      str(users), "-d", "500", "-auth_uri", f"0891234567@{pbx}", pbx)
    rig.wait(uac, "uac")
    rig.wait(carrier, "carrier")
    log = rig.msg_log("carrier")
    invites = [block for block in log.split("----") if "INVITE sip:" in block and "received" in block]
    assert len(invites) == 2, log[-3000:]
    assert "Proxy-Authorization" not in invites[0] and "Proxy-Authorization: Digest" in invites[1]
    creds = dict(re.findall(r'(\w+)="?([^",]*)"?', invites[1].split("Proxy-Authorization: Digest", 1)[1]
                                                                .splitlines()[0]))
    assert creds["username"] == CARRIER_USER and creds["realm"] == "carrier.example"
    assert creds["response"] == _md5_digest(creds, CARRIER_PASSWORD, "INVITE"), creds
    assert "INVITE sip:+49891234567@127.0.0.2" in invites[1]
    for header in ("From:", "P-Asserted-Identity:"):
        line = next(ln for ln in invites[1].splitlines() if ln.startswith(header))
        assert f"sip:{CALLER_ID}@" in line and '"Anna Caller"' in line, line
    (cdr,) = rig.cdrs(1)
    assert cdr["direction"] == "outbound" and cdr["disposition"] == "answered"
    assert cdr["callee"] == "+49891234567" and cdr["trunk"] == "carrier" and cdr["caller"] == "201"


def test_international_number_is_forbidden_for_a_line_without_the_permission(rig: Rig) -> None:
    with SipClient(rig.server.addr, domain="pbx.test") as c:
        resp = invite(c, "00442079460000", "201")
    assert resp.status == 403 and "nternational" in resp.reason
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "forbidden" and cdr["direction"] == "outbound"


def test_busy_phone_gives_486(rig: Rig) -> None:
    port = free_port()
    rig.register("203", port)
    uas = rig.sipp_bg("busy", "uas_busy.xml", "127.0.0.1", port)
    time.sleep(0.3)
    with SipClient(rig.server.addr, domain="pbx.test") as c:
        resp = invite(c, "203", "201")
    rig.wait(uas, "busy")
    assert resp.status == 486
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "busy" and cdr["callee"] == "203" and cdr["direction"] == "internal"


def test_no_answer_within_the_ring_timeout_gives_480_and_cancels_the_phone(rig: Rig) -> None:
    port = free_port()
    rig.register("202", port)
    uas = rig.sipp_bg("ring", "uas_ring.xml", "127.0.0.1", port)
    time.sleep(0.3)
    started = time.monotonic()
    with SipClient(rig.server.addr, domain="pbx.test") as c:
        resp = invite(c, "202", "201")
    rig.wait(uas, "ring")
    assert resp.status == 480 and 2.5 < time.monotonic() - started < 10
    assert "CANCEL sip:202@127.0.0.1" in rig.msg_log("ring")
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "no_answer" and cdr["hangup_cause"] == "ring timeout"


def test_caller_cancel_cancels_the_ringing_phone_and_gets_487(rig: Rig) -> None:
    port = free_port()
    rig.register("202", port)
    uas = rig.sipp_bg("ring", "uas_ring.xml", "127.0.0.1", port)
    time.sleep(0.3)
    with SipClient(rig.server.addr, domain="pbx.test") as c:
        # The first INVITE is challenged; the second one rings, and is cancelled after 0.5 s.
        first = invite(c, "202", None)
        assert first.status == 407
        uri = f"sip:202@{c.server[0]}:{c.server[1]}"
        auth = authorization(pick_challenge(first, "MD5"), username="201", password="secret-201",
                             method="INVITE", uri=uri)
        headers = [("Contact", f"<{c.contact_uri('201')}>"), ("Content-Type", "application/sdp"),
                   ("Proxy-Authorization", auth)]
        c.send_raw(c.build("INVITE", uri, headers, body=SDP, from_user="201", to_user="202"))
        data = c.sent[-1]
        ringing = None
        deadline = time.monotonic() + 10
        while ringing is None and time.monotonic() < deadline:
            r = c.recv(1.0)
            if r is not None and r.status == 180:
                ringing = r
        assert ringing is not None
        head = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
        cancel = [f"CANCEL {uri} SIP/2.0"] + [ln for ln in head[1:] if ln.split(":")[0].lower() in
                                              ("via", "from", "to", "call-id", "max-forwards")]
        cseq = next(ln for ln in head if ln.lower().startswith("cseq:")).split()[1]
        cancel += [f"CSeq: {cseq} CANCEL", "Content-Length: 0"]
        c.send_raw(("\r\n".join(cancel) + "\r\n\r\n").encode())
        final = _final_for(c, "INVITE", 10)
        _ack(c, data, final)
    rig.wait(uas, "ring")
    assert final.status == 487
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "cancelled"


def test_unknown_number_gives_404_and_an_unregistered_line_480(rig: Rig) -> None:
    with SipClient(rig.server.addr, domain="pbx.test") as c:
        unknown = invite(c, "99", "201")
        away = invite(c, "204", "201")
    assert unknown.status == 404
    assert away.status == 480
    rows = rig.cdrs(2)
    assert {r["disposition"] for r in rows} == {"not_found", "unavailable"}
