"""In-dialog INVITE handling of an answered, bridged call against real peers: SIPp as the caller (a carrier
trunk on 127.0.0.2 delivering a DID) and SIPp as the called phone (line 202), through a real ``pbx serve``.

Each test runs a pair of scenarios (tests/integration/scenarios/reinvite_*.xml, session_timer_*.xml) whose
messages and checks (status codes, SDP directions, headers) both SIPp processes must pass, exiting 0; a
missing, extra or different message fails SIPp and so the test. The test then reads the SIPp message logs
for what only the pair together shows (which requests reached the far side, branches, timing), and checks
the engine's own state: the call's CDR is written with the expected hang-up cause, the media relay has
given its ports back (the server runs with a port range that holds exactly one call), and at SIGTERM no
call is left for the shutdown to end (it would add a CDR, "engine shutting down").

- glare (RFC 3261 §14.1): a re-INVITE that crosses ours gets 491, and the retries go through end to end;
- overlap (§14.2): a second re-INVITE while the first is unanswered gets 500 with Retry-After;
- CANCEL (§9.2): a CANCELled re-INVITE gets 487, the CANCEL 200, the far side a CANCEL of our copy;
- transport error (§8.1.3.1, §17.1.4): a re-INVITE towards a side over TCP whose connection is gone (and
  nothing listens there) gets 503 at once. Over UDP the same cannot be provoked in test time: an ICMP
  port-unreachable is only logged by the transport (``SipUdpProtocol.error_received``), so such a
  re-INVITE ends by Timer B after 64*T1 = 32 s, as a 408;
- session timers (RFC 4028): 422 with Min-SE below 90 s, and the caller's refreshes (re-INVITE with the
  same SDP, UPDATE without) answered by the engine with the Session-Expires. Expiry (at 60 s for the
  smallest interval) and our own refreshes (at 45 s) take too long for this suite.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pytest

from .harness import PbxServer, free_port, require_tool
from .sipclient import SipClient
from .test_calls_sipp import Rig, company_yaml

pytestmark = pytest.mark.integration

DID_DIALLED = "03023125300"  # the company's DID, routed to line 202
CALLEE = "202"


SIPP_TIMEOUT: Final = "15s"  # each SIPp gives up (and fails) after this; every scenario takes 2-5 s


@dataclass
class Call:
    """One bridged call's two SIPp processes."""

    uac: subprocess.Popen[bytes]
    uas: subprocess.Popen[bytes]


@dataclass
class ReinviteRig:
    """The server with one call's worth of RTP ports, and the SIPp runs of ``test_calls_sipp.Rig``."""

    rig: Rig
    rtp_ports: tuple[int, int]

    @property
    def server(self) -> PbxServer:
        return self.rig.server

    def call(self, uac_scenario: str, uas_scenario: str, *, uac_args: tuple[str, ...] = ()) -> Call:
        """Register line 202 at a SIPp UAS (UDP) and have a SIPp UAC on 127.0.0.2 (the trunk) dial the DID."""
        uas_port = free_port()
        with SipClient(self.server.addr, domain="pbx.test") as c:
            resp = c.register(CALLEE, f"secret-{CALLEE}", contact=f"<sip:{CALLEE}@127.0.0.1:{uas_port}>")
            assert resp.status == 200, resp
        uas = self.rig.sipp_bg("uas", uas_scenario, "127.0.0.1", uas_port, "-timeout", SIPP_TIMEOUT)
        time.sleep(0.3)
        uac = self.rig.sipp_bg("uac", uac_scenario, "127.0.0.2", free_port("127.0.0.2"), "-s", DID_DIALLED,
                               "-timeout", SIPP_TIMEOUT, *uac_args, f"{self.server.host}:{self.server.port}")
        return Call(uac, uas)

    def finish(self, call: Call) -> None:
        """Wait for both SIPp processes: each must exit 0 (every message and check of its scenario passed).
        A failure shows both sides' errors and message logs, and the server's log."""
        problems: list[str] = []
        for name, proc in (("uac", call.uac), ("uas", call.uas)):
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                problems.append(f"sipp {name} did not finish within 20 s")
            if proc.returncode != 0:
                err_file = self.rig.tmp / f"{name}.err"
                errors = err_file.read_text(errors="replace") if err_file.exists() else ""
                problems.append(f"sipp {name} exited {proc.returncode}: {err.decode(errors='replace')[-800:]}"
                                f"\n{errors[-3000:]}")
        if problems:
            logs = "\n".join(f"--- sipp {name} messages ---\n{self.rig.msg_log(name)[-5000:]}"
                             for name in ("uac", "uas"))
            pytest.fail("\n".join(problems) + f"\n{logs}\n{self.server.log_tail(80)}", pytrace=False)

    def assert_nothing_left(self, cause: str, cdr_count: int = 1) -> dict[str, Any]:
        """The call ended in the engine: its CDR (the newest of ``cdr_count``) is written with ``cause``,
        the relay's ports are free again, and a clean shutdown finds no call to end."""
        rows = self.rig.cdrs(cdr_count)
        assert len(rows) == cdr_count, rows
        cdr = rows[0]
        assert cdr["disposition"] == "answered" and cdr["callee"] == CALLEE, cdr
        assert cdr["hangup_cause"] == cause, cdr
        assert_ports_free(*self.rtp_ports)
        rc = self.server.stop()
        assert rc == 0, self.server.log_tail()
        after = self.rig.cdrs(cdr_count)
        assert len(after) == cdr_count, after
        assert all(r["hangup_cause"] != "engine shutting down" for r in after), after
        return cdr

    def uas_received(self, method: str) -> list[str]:
        return received(self.rig.msg_log("uas"), method)

    def uac_received(self, method: str) -> list[str]:
        return received(self.rig.msg_log("uac"), method)


def traced(log: str, direction: str, start: str) -> list[tuple[datetime, str]]:
    """The messages SIPp's -trace_msg log shows as ``direction`` ("received" or "sent") whose first line
    starts with ``start`` (a method, or e.g. "SIP/2.0 491"), with the time SIPp logged each."""
    out: list[tuple[datetime, str]] = []
    for stamp, block in re.findall(r"(?ms)^-{5,} (\S+ \S+)\n(.*?)(?=^-{5,} |\Z)", log):
        head, _, rest = block.partition("\n")
        if f"message {direction}" not in head:
            continue
        message = rest.lstrip("\n")
        if message.startswith(start):
            out.append((datetime.fromisoformat(stamp), message))
    return out


def received(log: str, start: str) -> list[str]:
    return [message for _, message in traced(log, "received", start)]


def header(message: str, name: str) -> str:
    for line in message.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} header in\n{message}")


def one_call_of_rtp_ports() -> tuple[int, int]:
    """Four free ports from an even one: the relay's two RTP/RTCP pairs of one call, and no more."""
    base = free_port(span=5)
    first = base + (base & 1)
    return first, first + 3


def assert_ports_free(first: int, last: int, timeout: float = 3.0) -> None:
    """Every UDP port of the relay's range can be bound again: no relay session holds them."""
    deadline = time.monotonic() + timeout
    while True:
        held: list[int] = []
        for port in range(first, last + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                held.append(port)
            finally:
                s.close()
        if not held:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"RTP ports {held} of {first}-{last} are still bound after the call ended")
        time.sleep(0.1)


@pytest.fixture
def rr(pbx_factory: Callable[..., PbxServer], tmp_path: Path) -> Iterator[ReinviteRig]:
    sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
    carrier_port = free_port("127.0.0.2")
    company = tmp_path / "calls-company.yaml"
    company.write_text(company_yaml(carrier_port))
    first, last = one_call_of_rtp_ports()
    # These scenarios pass new offers (a hold among them) from one side to the other: without hold music
    # the engine forwards a hold too (with it, it answers the hold itself: test_calls_phones).
    server = pbx_factory(company_file=company, extra_args=("--ring-timeout", "5", "--rtp-ports",
                                                           f"{first}-{last}", "--no-hold-music"))
    rig = Rig(server, carrier_port, tmp_path, sipp, [])
    try:
        yield ReinviteRig(rig, (first, last))
    finally:
        rig.stop_all()


def test_glare_the_crossing_reinvite_gets_491_and_its_retry_succeeds(rr: ReinviteRig) -> None:
    call = rr.call("reinvite_glare_uac.xml", "reinvite_glare_uas.xml")
    rr.finish(call)
    # The callee's re-INVITE that crossed ours got the engine's 491; its retry reached the caller.
    (refused,) = received(rr.rig.msg_log("uas"), "SIP/2.0 491")
    assert header(refused, "CSeq") == "1 INVITE", refused
    invites_at_caller = rr.uac_received("INVITE")
    assert len(invites_at_caller) == 1 and "a=sendonly" in invites_at_caller[0], invites_at_caller
    rr.assert_nothing_left("caller hung up")


def test_glare_both_refused_and_the_callers_retry_reaches_the_callee(rr: ReinviteRig) -> None:
    call = rr.call("reinvite_glare_both_uac.xml", "reinvite_glare_both_uas.xml")
    rr.finish(call)
    (refused,) = received(rr.rig.msg_log("uac"), "SIP/2.0 491")  # the callee's 491, relayed
    assert header(refused, "CSeq") == "2 INVITE", refused
    offers = rr.uas_received("INVITE")[1:]  # after the call's own INVITE: the hold and its retry
    assert len(offers) == 2 and all("a=sendonly" in o for o in offers), offers
    rr.assert_nothing_left("caller hung up")


def test_a_reinvite_the_callee_refused_is_passed_on_again_when_retried(rr: ReinviteRig) -> None:
    call = rr.call("reinvite_refused_retry_uac.xml", "reinvite_refused_retry_uas.xml")
    rr.finish(call)
    offers = rr.uas_received("INVITE")[1:]
    assert len(offers) == 2 and all("a=sendonly" in o for o in offers), offers
    rr.assert_nothing_left("caller hung up")


def test_an_overlapping_reinvite_gets_500_with_retry_after_and_the_first_completes(rr: ReinviteRig) -> None:
    call = rr.call("reinvite_overlap_uac.xml", "reinvite_overlap_uas.xml")
    rr.finish(call)
    (refused,) = received(rr.rig.msg_log("uac"), "SIP/2.0 500")
    assert header(refused, "CSeq") == "3 INVITE", refused
    assert header(refused, "Retry-After").isdigit(), refused  # §14.2: 0 to 10 s
    assert 0 <= int(header(refused, "Retry-After")) <= 10, refused
    offers = rr.uas_received("INVITE")[1:]
    assert len(offers) == 1 and "a=sendonly" in offers[0], offers  # the second never reached the callee
    rr.assert_nothing_left("caller hung up")


def test_a_cancelled_reinvite_gets_487_its_cancel_200_and_the_far_side_a_cancel(rr: ReinviteRig) -> None:
    call = rr.call("reinvite_cancel_uac.xml", "reinvite_cancel_uas.xml")
    rr.finish(call)
    oks = [m for m in received(rr.rig.msg_log("uac"), "SIP/2.0 200") if header(m, "CSeq") == "2 CANCEL"]
    assert len(oks) == 1, rr.rig.msg_log("uac")
    (terminated,) = received(rr.rig.msg_log("uac"), "SIP/2.0 487")
    assert header(terminated, "CSeq") == "2 INVITE", terminated
    # The engine CANCELled the re-INVITE it had passed on: same branch and CSeq number (§9.1).
    forwarded = rr.uas_received("INVITE")[1]
    (cancel,) = rr.uas_received("CANCEL")
    assert header(cancel, "Via") == header(forwarded, "Via"), (cancel, forwarded)
    assert header(cancel, "CSeq").split()[0] == header(forwarded, "CSeq").split()[0], (cancel, forwarded)
    acks = rr.uas_received("ACK")
    assert len(acks) == 2 and header(acks[1], "Via") == header(forwarded, "Via"), acks  # the 487's ACK
    rr.assert_nothing_left("caller hung up")


def test_a_cancelled_reinvite_is_passed_on_again_when_sent_again(rr: ReinviteRig) -> None:
    call = rr.call("reinvite_cancel_retry_uac.xml", "reinvite_cancel_retry_uas.xml")
    rr.finish(call)
    offers = rr.uas_received("INVITE")[1:]
    assert len(offers) == 2 and all("a=sendonly" in o for o in offers), offers
    rr.assert_nothing_left("caller hung up")


def test_a_reinvite_towards_a_side_whose_transport_failed_gets_503_at_once(rr: ReinviteRig) -> None:
    # The caller calls over TCP and exits after its ACK (no BYE): its connection closes, and nothing
    # listens where it was. The callee's re-INVITE, passed on towards it, cannot be sent.
    call = rr.call("reinvite_transport_error_uac.xml", "reinvite_transport_error_uas.xml",
                   uac_args=("-t", "t1"))
    rr.finish(call)
    log = rr.rig.msg_log("uas")
    (sent_at, _), = [(t, m) for t, m in traced(log, "sent", "INVITE") if header(m, "CSeq") == "1 INVITE"]
    (failed_at, failed), = traced(log, "received", "SIP/2.0 503")
    assert header(failed, "CSeq") == "1 INVITE", failed
    # A transport error (a refused connect) ends the transaction at once (§17.1.4), not Timer B (32 s).
    assert (failed_at - sent_at).total_seconds() < 2.0, (sent_at, failed_at)
    rr.assert_nothing_left("callee hung up")


def test_session_timer_a_short_interval_gets_422_and_the_callers_refreshes_are_answered(
        rr: ReinviteRig) -> None:
    call = rr.call("session_timer_uac.xml", "session_timer_uas.xml")
    rr.finish(call)
    log = rr.rig.msg_log("uac")
    (too_small,) = received(log, "SIP/2.0 422")
    assert header(too_small, "Min-SE").split(";")[0].strip() == "90", too_small
    oks = {header(m, "CSeq"): m for m in received(log, "SIP/2.0 200")}
    for cseq in ("2 INVITE", "3 INVITE", "4 UPDATE"):
        assert header(oks[cseq], "Session-Expires").replace(" ", "") == "90;refresher=uac", oks[cseq]
        assert header(oks[cseq], "Require") == "timer", oks[cseq]
    # The refresh re-INVITE gets the session as it was (RFC 3264 §8: the same SDP, o= version unchanged);
    # the UPDATE without an offer gets no SDP (RFC 3311).
    assert oks["3 INVITE"].split("\n\n", 1)[1] == oks["2 INVITE"].split("\n\n", 1)[1], oks
    assert header(oks["4 UPDATE"], "Content-Length") == "0", oks["4 UPDATE"]
    assert len(rr.uas_received("INVITE")) == 1 and not rr.uas_received("UPDATE")  # no refresh passed on
    rows = rr.rig.cdrs(2)
    assert rows[1]["disposition"] == "failed", rows  # the 422
    rr.assert_nothing_left("caller hung up", cdr_count=2)
