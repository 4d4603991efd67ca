"""Transfers between real phones registered to ``pbx serve`` (issue 19, part 1): pjsua2 A calls B, B
transfers A to C blind (``Call.xfer``: REFER) or attended (``Call.xferReplaces``: REFER with Replaces), and
A and C hear each other's tones (checked by frequency); B sees the NOTIFYs of its REFER (100 Trying, then
200 or the failure); a blind transfer to a busy or unknown target reconnects A and B; a transferrer that
hung up after the 202 is rung back; malformed REFERs get their 400. After every test the engine's tables
are empty again (calls, dialogs, ringing legs, relay sessions: read from ``/metrics``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..peers.softphone import Event, Softphone
from .audio import dominant_frequency, signal_seconds, write_tone
from .harness import PbxServer, PeerProcess, free_port, require_module, require_tool
from .sipclient import SipClient, SipResponse, authorization, new_branch, pick_challenge
from .test_calls_phones import REALM, Rig, answered_call, company_yaml, is_ended, media, rtp_range
from .test_calls_sipp import SDP, invite

pytestmark = pytest.mark.integration

A_HZ, C_HZ = 1000.0, 1400.0
TOLERANCE_HZ = 20.0
GAUGES = ("pbx_active_calls", "pbx_call_dialogs", "pbx_call_branches", "pbx_relay_sessions")


class TransferRig(Rig):
    metrics: str = ""

    def gauges(self) -> dict[str, float]:
        resp = httpx.get(self.metrics, timeout=10)
        resp.raise_for_status()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(resp.text):
            for s in family.samples:
                if s.name in GAUGES:
                    out[s.name] = s.value
        return out

    def assert_idle(self, timeout: float = 10.0) -> None:
        """No call, dialog, ringing leg or relay session is left in the engine."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.gauges()
            if all(seen.get(name, -1) == 0 for name in GAUGES):
                return
            if time.monotonic() >= deadline:
                pytest.fail(f"the engine kept {seen}\n{self.server.log_tail(80)}")
            time.sleep(0.2)


@pytest.fixture
def rig(pbx_factory: Callable[..., PbxServer], peers: Callable[..., PeerProcess],
        tmp_path: Path) -> Iterator[TransferRig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    company = tmp_path / "company.yaml"
    company.write_text(company_yaml(media_release=False))
    rtp = rtp_range()
    http = free_port()
    server = pbx_factory(company_file=company, extra_args=[
        "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--http", f"127.0.0.1:{http}", "--ring-timeout", "8"])
    made = TransferRig(server, rtp, tmp_path, peers)
    made.metrics = f"http://127.0.0.1:{http}/metrics"
    try:
        yield made
    finally:
        made.close_phones()


@pytest.fixture
def tones(tmp_path: Path) -> tuple[Path, Path]:
    return write_tone(tmp_path / "a-1000.wav", A_HZ, 2.0), write_tone(tmp_path / "c-1400.wav", C_HZ, 2.0)


def xfer_statuses(phone: Softphone, timeout: float = 20.0) -> list[Event]:
    """The transfer status events of ``phone``'s REFER up to the final one."""
    seen: list[Event] = []
    while not seen or not seen[-1]["final"]:
        seen.append(phone.wait_for("xfer_status", timeout=timeout))
    return seen


def assert_hears(wav: str, hz: float) -> None:
    heard = dominant_frequency(wav)
    assert abs(heard - hz) <= TOLERANCE_HZ, f"{wav}: dominant {heard:.1f} Hz, expected {hz}"
    assert signal_seconds(wav) >= 1.2, f"{wav}: too little signal"


def talk(rig: Rig, x: Softphone, y: Softphone, x_tone: Path, y_tone: Path, name: str,
         x_call: str = "", y_call: str = "") -> tuple[str, str]:
    """X and Y play their tones to each other and record 2.5 s; (what X heard, what Y heard)."""
    xs, ys = f" {x_call}" if x_call else "", f" {y_call}" if y_call else ""
    x.send(f"record {rig.tmp / f'{name}-x.wav'}{xs}")
    x.wait_for("recording")
    y.send(f"record {rig.tmp / f'{name}-y.wav'}{ys}")
    y.wait_for("recording")
    x.send(f"play {x_tone}{xs}")
    x.wait_for("playing")
    y.send(f"play {y_tone}{ys}")
    y.wait_for("playing")
    time.sleep(2.5)
    x.send(f"stop_record{xs}")
    x_heard = str(x.wait_record_finished()["path"])
    y.send(f"stop_record{ys}")
    y_heard = str(y.wait_record_finished()["path"])
    x.send(f"stop_play{xs}")
    y.send(f"stop_play{ys}")
    return x_heard, y_heard


def test_blind_transfer_connects_a_with_c_and_releases_b(rig: TransferRig, tones: tuple[Path, Path]) -> None:
    a_tone, c_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=200, ring_seconds=1.0)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)

    b.send(f"xfer {rig.uri('203')}")
    incoming = c.wait_for("incoming_call")
    assert f"sip:202@{REALM}" in str(incoming["from"]), incoming  # routed as a call from B's line
    c.wait_state("CONFIRMED")
    statuses = xfer_statuses(b)
    codes = [e["code"] for e in statuses]
    assert 100 in codes and codes[-1] == 200, statuses
    assert b.wait_state("DISCONNECTED")["last_code"] == 200  # the engine's BYE once C answered
    moved = media(a)  # A was re-INVITEd onto the new call's relay port
    assert rig.is_relay(moved["remote_rtp"]), moved
    assert not any(is_ended(e) for e in a.events)

    a_heard, c_heard = talk(rig, a, c, a_tone, c_tone, "blind")
    assert_hears(c_heard, A_HZ)
    assert_hears(a_heard, C_HZ)

    c.hangup()
    a.wait_state("DISCONNECTED")
    c.wait_state("DISCONNECTED")
    cdrs = rig.cdrs(2)
    assert sorted(cdr["callee"] for cdr in cdrs) == ["202", "203"], cdrs
    first = next(cdr for cdr in cdrs if cdr["callee"] == "202")
    assert first["hangup_cause"] == "transferred", first
    rig.assert_idle()


@pytest.mark.parametrize(("target", "code"), [("203", 486), ("299", 404)], ids=["busy", "unknown"])
def test_failed_blind_transfer_reconnects_the_transferrer(rig: TransferRig, tones: tuple[Path, Path],
                                                          target: str, code: int) -> None:
    """B stays in its dialog while the transfer runs; a failure is NOTIFYed and A is bridged back to B
    (B's phone shows the failure, and the two talk on)."""
    a_tone, b_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    rig.phone("c", "203", auto_answer=486, ring_seconds=0.2)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)

    b.send(f"xfer {rig.uri(target)}")
    statuses = xfer_statuses(b)
    assert statuses[-1]["code"] == code, statuses
    time.sleep(0.3)
    assert not any(is_ended(e) for e in a.events + b.events)
    a_heard, b_heard = talk(rig, a, b, a_tone, b_tone, f"reconnected-{target}")
    assert_hears(b_heard, A_HZ)
    assert_hears(a_heard, C_HZ)

    b.hangup()
    a.wait_state("DISCONNECTED")
    b.wait_state("DISCONNECTED")
    (cdr, *_) = [cdr for cdr in rig.cdrs(2 if target == "203" else 1) if cdr["callee"] == "202"]
    assert cdr["disposition"] == "answered", cdr
    rig.assert_idle()


def test_transferrer_that_hung_up_is_rung_back_when_the_target_is_busy(
        rig: TransferRig, tones: tuple[Path, Path]) -> None:
    a_tone, b_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=0)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)

    b.send(f"xfer {rig.uri('203')}")
    c.wait_for("incoming_call")
    assert b.wait_for("xfer_status")["code"] in (100, 202)
    b.hangup()  # B leaves at once, as many phones do after the 202
    b.wait_state("DISCONNECTED")
    c.answer(486)
    callback = b.wait_for("incoming_call")  # B's line is rung back for A
    assert f"sip:202@{REALM}" in str(callback["from"]) or "201" in str(callback["from"]), callback
    b.wait_for("call_state", lambda e: e.get("state") == "CONFIRMED" and e.get("call") == callback["call"])
    time.sleep(0.5)
    a_heard, b_heard = talk(rig, a, b, a_tone, b_tone, "called-back")
    assert_hears(b_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    a.hangup()
    a.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_attended_transfer_joins_a_and_c_and_ends_both_legs_of_b(
        rig: TransferRig, tones: tuple[Path, Path]) -> None:
    a_tone, c_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    incoming = answered_call(rig, a, b, "202")
    media(a)
    media(b)
    first = f"#{incoming['call']}"

    b.send(f"hold {first}")
    b.wait_for("media_state", lambda e: e.get("state") == "hold")
    b.call(rig.uri("203"))
    second = f"#{b.wait_for('calling')['call']}"
    c.wait_state("CONFIRMED")
    b.wait_for("call_state", lambda e: e.get("state") == "CONFIRMED" and f"#{e.get('call')}" == second)
    time.sleep(0.3)

    b.send(f"xfer_replaces {second} {first}")
    statuses = xfer_statuses(b)
    assert statuses[-1]["code"] == 200, statuses
    b.wait_state("DISCONNECTED")
    b.wait_state("DISCONNECTED")
    time.sleep(0.5)
    assert not any(is_ended(e) for e in a.events + c.events)

    a_heard, c_heard = talk(rig, a, c, a_tone, c_tone, "attended")
    assert_hears(c_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    a.hangup()
    a.wait_state("DISCONNECTED")
    c.wait_state("DISCONNECTED")
    rig.assert_idle()


# -- malformed and misplaced REFERs, from a raw SIP client -------------------------------------------
def in_dialog(client: SipClient, ok: SipResponse, method: str, cseq: int,
              headers: list[tuple[str, str]], *, to: str | None = None, user: str = "201") -> bytes:
    host, port = client.local
    target = (ok.get("contact") or "").strip().strip("<>")
    lines = [
        f"{method} {target} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{port};branch={new_branch()};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{REALM}>;tag={client.tag}",
        f"To: {to if to is not None else ok.get('to')}",
        f"Call-ID: {client.call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <{client.contact_uri(user)}>",
        *[f"{k}: {v}" for k, v in headers],
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_bad_refers_get_their_4xx(rig: TransferRig) -> None:
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.2)
    with SipClient(rig.server.addr, domain=REALM) as client:
        assert "REFER" in (client.options().get("allow") or "")
        ok = invite(client, "202", "201")
        assert ok.status == 200, ok
        client.send_raw(in_dialog(client, ok, "ACK", 2, []))
        b.wait_state("CONFIRMED")
        cases: list[tuple[list[tuple[str, str]], int, str]] = [
            ([], 400, "Missing Refer-To header"),
            ([("Refer-To", f"<sip:203@{REALM}>, <sip:204@{REALM}>")], 400, "Several Refer-To values"),
            ([("Refer-To", "no uri here")], 400, "Bad Refer-To header"),
            ([("Refer-To", f"<sip:203@{REALM}?Replaces=nothing>")], 400, "Bad Replaces header"),
            ([("Refer-To", f"<sip:203@{REALM}>"), ("Refer-To", f"<sip:204@{REALM}>")], 400,
             "Duplicate Refer-To header"),
        ]
        seq = 10
        for headers, status, reason in cases:
            seq += 1
            resp = client.transact(in_dialog(client, ok, "REFER", seq, headers))
            assert (resp.status, resp.reason) == (status, reason), (headers, resp)
        seq += 1
        stranger = f"<sip:202@{REALM}>;tag=nosuchdialog"
        resp = client.transact(in_dialog(client, ok, "REFER", seq, [("Refer-To", f"<sip:203@{REALM}>")],
                                         to=stranger))
        assert resp.status == 481, resp
        outside = client.build("REFER", f"sip:202@{rig.registrar}", [("Refer-To", f"<sip:203@{REALM}>")],
                               from_user="201", call_id="outside-any-dialog")
        assert client.transact(outside).status == 403
        seq += 1
        assert client.transact(in_dialog(client, ok, "BYE", seq, [])).status == 200
    b.wait_state("DISCONNECTED")
    rig.assert_idle()


# -- INVITE with Replaces (RFC 3891 §3) -------------------------------------------------------------
def invite_replaces(client: SipClient, user: str, replaces: str,
                    call_id: str | None = None) -> tuple[bytes, SipResponse]:
    """An authenticated INVITE from ``user`` with ``Replaces: replaces`` (answers the 407)."""
    uri = f"sip:202@{client.server[0]}:{client.server[1]}"
    headers = [("Contact", f"<{client.contact_uri(user)}>"), ("Content-Type", "application/sdp"),
               ("Replaces", replaces), ("Require", "replaces")]
    data = client.build("INVITE", uri, headers, body=SDP, from_user=user, to_user="202", call_id=call_id)
    resp = client.transact(data)
    if resp.status == 407:
        client.send_raw(ack_for(client, data, resp))
        auth = authorization(pick_challenge(resp, "MD5"), username=user, password=f"secret-{user}",
                             method="INVITE", uri=uri)
        data = client.build("INVITE", uri, [*headers, ("Proxy-Authorization", auth)], body=SDP,
                            from_user=user, to_user="202", call_id=call_id)
        resp = client.transact(data)
    if resp.status >= 300:
        client.send_raw(ack_for(client, data, resp))
    return data, resp


def ack_for(client: SipClient, data: bytes, resp: SipResponse) -> bytes:
    head = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    keep = [line for line in head[1:] if line.split(":", 1)[0].lower() in ("via", "from", "call-id",
                                                                              "max-forwards")]
    seq = next(line for line in head if line.lower().startswith("cseq:")).split()[1]
    lines = [f"ACK {head[0].split()[1]} SIP/2.0", *keep, f"CSeq: {seq} ACK", f"To: {resp.get('to')}",
             "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def expect_bye(client: SipClient, timeout: float = 5.0) -> None:
    """Wait for the engine's BYE on ``client``'s socket and answer it 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.transport.recv(0.5)
        if data is None or not data.startswith(b"BYE "):
            continue
        head = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
        copied = [line for line in head[1:] if line.split(":", 1)[0].lower() in ("via", "from", "to",
                                                                                  "call-id", "cseq")]
        client.send_raw(("\r\n".join(["SIP/2.0 200 OK", *copied, "Content-Length: 0"]) + "\r\n\r\n").encode())
        return
    pytest.fail("no BYE from the engine")


def test_invite_with_replaces_takes_over_a_confirmed_dialog(rig: TransferRig) -> None:
    """201 (a raw client) talks to B; 203 INVITEs with Replaces naming 201's dialog with the engine: it is
    answered with the relay, B stays up (now bridged to 203), 201 gets a BYE. Unknown and early-only
    Replaces are refused as RFC 3891 §3 says."""
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.2)
    with SipClient(rig.server.addr, domain=REALM) as first, SipClient(rig.server.addr, domain=REALM) as new:
        ok = invite(first, "202", "201")
        assert ok.status == 200, ok
        first.send_raw(in_dialog(first, ok, "ACK", 2, []))
        b.wait_state("CONFIRMED")
        engine_tag = (ok.get("to") or "").rpartition("tag=")[2]
        _, unknown = invite_replaces(new, "203", f"nosuch@x;to-tag={engine_tag};from-tag={first.tag}",
                                     "attempt-1")
        assert unknown.status == 481, unknown
        _, early_only = invite_replaces(
            new, "203", f"{first.call_id};to-tag={engine_tag};from-tag={first.tag};early-only", "attempt-2")
        assert early_only.status == 486, early_only

        _, taken = invite_replaces(new, "203", f"{first.call_id};to-tag={engine_tag};from-tag={first.tag}")
        assert taken.status == 200, taken
        assert b"c=IN IP4 127.0.0.1" in taken.body and rig.is_relay(
            f"127.0.0.1:{taken.body.split(b'm=audio ')[1].split()[0].decode()}"), taken.body
        new.send_raw(in_dialog(new, taken, "ACK", new.cseq, [], user="203"))
        expect_bye(first)  # the replaced leg is released
        time.sleep(0.5)
        assert not any(is_ended(e) for e in b.events)
        assert new.transact(in_dialog(new, taken, "BYE", 50, [], user="203")).status == 200
    b.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_the_caller_transfers_the_callee(rig: TransferRig, tones: tuple[Path, Path]) -> None:
    """The other party may transfer too: A (the caller) sends B to C; B (our UAC leg) is moved."""
    b_tone, c_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=200, ring_seconds=0.5)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)
    a.send(f"xfer {rig.uri('203')}")
    assert f"sip:201@{REALM}" in str(c.wait_for("incoming_call")["from"])
    c.wait_state("CONFIRMED")
    assert xfer_statuses(a)[-1]["code"] == 200
    a.wait_state("DISCONNECTED")
    media(b)
    b_heard, c_heard = talk(rig, b, c, b_tone, c_tone, "caller-transfers")
    assert_hears(c_heard, A_HZ)
    assert_hears(b_heard, C_HZ)
    b.hangup()
    b.wait_state("DISCONNECTED")
    c.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_baresip_blind_transfer(rig: TransferRig, tones: tuple[Path, Path]) -> None:
    """baresip 1.0's ``/transfer``: the same blind transfer from another stack."""
    require_tool("baresip", "apt-get install baresip (scripts/test.sh does)")
    a_tone, c_tone = tones
    b = rig.phone("b", "202", "baresip", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=200, ring_seconds=0.5)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    time.sleep(0.5)
    b.send(f"transfer {rig.uri('203')}")
    assert f"sip:202@{REALM}" in str(c.wait_for("incoming_call")["from"])
    c.wait_state("CONFIRMED")
    b.wait_state("DISCONNECTED")
    media(a)
    a_heard, c_heard = talk(rig, a, c, a_tone, c_tone, "baresip-transfers")
    assert_hears(c_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    a.hangup()
    a.wait_state("DISCONNECTED")
    c.wait_state("DISCONNECTED")
    rig.assert_idle()


WELCOME_HZ = 800.0


@pytest.fixture
def queue_rig(pbx_factory: Callable[..., PbxServer], peers: Callable[..., PeerProcess],
              tmp_path: Path) -> Iterator[TransferRig]:
    """The five lines and a queue at extension 600 (welcome clip, agent 204)."""
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    welcome = write_tone(tmp_path / "welcome-800.wav", WELCOME_HZ, 1.5)
    company = tmp_path / "company.yaml"
    company.write_text(company_yaml(media_release=False) + f"""sound_clips:
  - {{name: welcome, file: {welcome}}}
queues:
  - name: support
    extension: "600"
    agents: [{{line: "204"}}]
    agent_ring_seconds: 8
    welcome_clip: welcome
""")
    rtp = rtp_range()
    http = free_port()
    server = pbx_factory(company_file=company, extra_args=[
        "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--http", f"127.0.0.1:{http}"])
    made = TransferRig(server, rtp, tmp_path, peers)
    made.metrics = f"http://127.0.0.1:{http}/metrics"
    try:
        yield made
    finally:
        made.close_phones()


def test_blind_transfer_to_a_queue_the_engine_answers_then_an_agent(
        queue_rig: TransferRig, tones: tuple[Path, Path]) -> None:
    """A target the engine answers itself: the queue's answer completes the transfer (NOTIFY 200, B
    released) and A, moved onto the engine's media, hears the welcome clip; the agent who answers then
    gets A (the queue's re-INVITE onto the relay) and the two hear each other."""
    rig = queue_rig
    a_tone, agent_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    agent = rig.phone("agent", "204", auto_answer=200, ring_seconds=3.0)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    media(b)
    b.send(f"xfer sip:600@{rig.registrar}")
    assert xfer_statuses(b)[-1]["code"] == 200
    b.wait_state("DISCONNECTED")
    media(a)  # onto the engine's media
    a.record(rig.tmp / "a-welcome.wav")
    time.sleep(1.2)
    welcome = str(a.stop_record()["path"])
    assert abs(dominant_frequency(welcome) - WELCOME_HZ) <= TOLERANCE_HZ, dominant_frequency(welcome)
    agent.wait_for("incoming_call", timeout=15.0)
    agent.wait_state("CONFIRMED")
    media(a)  # onto the relay towards the agent
    time.sleep(0.5)
    a_heard, agent_heard = talk(rig, a, agent, a_tone, agent_tone, "queue-agent")
    assert_hears(agent_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    a.hangup()
    a.wait_state("DISCONNECTED")
    agent.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_transferee_hanging_up_while_the_target_rings_ends_everything(rig: TransferRig) -> None:
    """A leaves during the transfer: C's ringing is CANCELled, B hears NOTIFY 487 and is released, and
    nothing is left behind."""
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=0)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    b.send(f"xfer {rig.uri('203')}")
    c.wait_for("incoming_call")
    a.hangup()
    a.wait_state("DISCONNECTED")
    assert c.wait_state("DISCONNECTED", fail_early=False)["last_code"] == 487
    assert xfer_statuses(b)[-1]["code"] == 487
    b.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_attended_transfer_while_the_target_still_rings(rig: TransferRig, tones: tuple[Path, Path]) -> None:
    """Semi-attended: B REFERs with Replaces naming its call to C while C rings. B's INVITE ends (487), C
    rings on for A (who hears the hold music), and when C answers A and C talk and B is released."""
    a_tone, c_tone = tones
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=0)
    a = rig.phone("a", "201")
    incoming = answered_call(rig, a, b, "202")
    media(a)
    first = f"#{incoming['call']}"
    b.call(rig.uri("203"))
    second = f"#{b.wait_for('calling')['call']}"
    c.wait_for("incoming_call")
    b.wait_for("call_state", lambda e: e.get("state") == "EARLY" and f"#{e.get('call')}" == second)
    b.send(f"xfer_replaces {second} {first}")
    ended = b.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED")
    assert f"#{ended['call']}" == second and ended["last_code"] == 487, ended
    time.sleep(0.5)
    c.answer(200)
    c.wait_state("CONFIRMED")
    assert xfer_statuses(b)[-1]["code"] == 200
    b.wait_state("DISCONNECTED")
    media(a)
    a_heard, c_heard = talk(rig, a, c, a_tone, c_tone, "semi-attended")
    assert_hears(c_heard, A_HZ)
    assert_hears(a_heard, C_HZ)
    c.hangup()
    a.wait_state("DISCONNECTED")
    c.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_a_second_refer_while_one_runs_gets_491_and_a_later_one_transfers(rig: TransferRig) -> None:
    """One transfer at a time per call (491 Request Pending); after a failed one B transfers again in the
    same dialog, and pjsua takes that REFER's NOTIFYs (they carry no id: see TransferService.notify)."""
    b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
    c = rig.phone("c", "203", auto_answer=0)
    d = rig.phone("d", "204", auto_answer=200, ring_seconds=0.3)
    a = rig.phone("a", "201")
    answered_call(rig, a, b, "202")
    media(a)
    b.send(f"xfer {rig.uri('203')}")
    c.wait_for("incoming_call")
    assert b.wait_for("xfer_status")["code"] in (100, 202)
    b.send(f"xfer {rig.uri('204')}")
    refused = b.wait_for("xfer_status", lambda e: e.get("final"))
    assert refused["code"] == 491, refused
    c.answer(486)
    assert xfer_statuses(b)[-1]["code"] == 486
    time.sleep(0.3)
    b.send(f"xfer {rig.uri('204')}")
    d.wait_state("CONFIRMED")
    assert xfer_statuses(b)[-1]["code"] == 200
    b.wait_state("DISCONNECTED")
    d.hangup()
    a.wait_state("DISCONNECTED")
    rig.assert_idle()


def test_a_transfer_needs_anchored_media(pbx_factory: Callable[..., PbxServer],
                                         peers: Callable[..., PeerProcess], tmp_path: Path) -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    company = tmp_path / "company.yaml"
    company.write_text(company_yaml(media_release=True))
    rtp = rtp_range()
    server = pbx_factory(company_file=company, extra_args=["--rtp-ports", f"{rtp[0]}-{rtp[1]}"])
    rig = Rig(server, rtp, tmp_path, peers)
    try:
        b = rig.phone("b", "202", auto_answer=200, ring_seconds=0.3)
        a = rig.phone("a", "201")
        answered_call(rig, a, b, "202")
        b.send(f"xfer {rig.uri('203')}")
        refused = b.wait_for("xfer_status", lambda e: e.get("final"))
        assert refused["code"] == 403, refused
        time.sleep(0.3)
        assert not any(is_ended(e) for e in a.events + b.events)
        b.hangup()
        a.wait_state("DISCONNECTED")
    finally:
        rig.close_phones()
