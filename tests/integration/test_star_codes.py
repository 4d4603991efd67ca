"""Star codes end to end (issue 19 parts 5-6, issue 12 part 3) on a real ``pbx serve`` with pjsua2 phones:
each code is dialled from a phone, the engine answers and says what it did (the German prompt found in
what the phone records), and the state is read back over the admin API; then calls show it: DND gives the
line's voicemail, or busy without one; forward always rings another line (its audio heard by the
caller); forward on no answer reaches an external number at a SIPp carrier after the line's ring time,
with the forwarding line's caller ID; a dynamic queue agent logs in by star code and gets the waiting
caller, keeps its login over a restart, pauses and logs out and is no longer offered calls. Every refusal
is heard (no number, not allowed, not a valid number, unknown queue, not an agent, nothing to do).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..peers.softphone import Softphone
from .audio import write_tone
from .harness import PbxServer, free_port, require_module, require_tool, run_pbx, wait_http
from .test_calls_phones import rtp_range
from .test_dialplan_calls import assert_heard, is_ended, record_for
from .test_voicemail import Ear

pytestmark = pytest.mark.integration

REALM = "pbx.test"
DID_SUPPORT = "+493023125120"
CALLER_ID_202 = "+493023125121"
SCENARIOS = Path(__file__).parent / "scenarios"
MOBILE = "015112345678"
TONE_HZ = 900.0


def password(ext: str) -> str:
    return f"secret-{ext}"


def company_yaml(carrier_port: int) -> str:
    return f"""version: 1
company: {{name: Star Test GmbH, sip_realm: {REALM}, timezone: Europe/Berlin, country: DE, area_code: "30"}}
users:
  - {{first_name: Olga, last_name: Caller, extension: "201", sip_password: {password("201")},
     email: ops@pbx.test}}
  - {{first_name: Sam, last_name: Agent, extension: "202", sip_password: {password("202")},
     external_caller_id: "{CALLER_ID_202}"}}
  - {{first_name: Sara, last_name: Novm, extension: "203", sip_password: {password("203")}, voicemail: false}}
numbers:
  - {{number: "{DID_SUPPORT}", route: {{kind: queue, target: support}}}}
  - {{number: "{CALLER_ID_202}", route: {{kind: extension, target: "202"}}}}
queues:
  - name: support
    extension: "410"
    agents: [{{line: "202", dynamic: true}}]
    agent_ring_seconds: 10
  - name: sales
    extension: "411"
    agents: [{{line: "203"}}]
trunks:
  - {{name: carrier, sources: ["127.0.0.2"], host: 127.0.0.2, port: {carrier_port}}}
"""


@dataclass
class Rig:
    server: PbxServer
    tmp: Path
    spawn: Any
    api: httpx.Client
    carrier_port: int
    phones: list[Softphone] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    dialled: int = 0

    @property
    def registrar(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def phone(self, name: str, ext: str, **kw: Any) -> Softphone:
        phone = Softphone.pjsua2(name, self.tmp, user=ext, password=password(ext), registrar=self.registrar,
                                 spawn=self.spawn, max_seconds=300.0, **kw)
        self.phones.append(phone)
        phone.start()
        phone.wait_registered()
        return phone

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.registrar}"

    def star(self, phone: Softphone, dialled: str, *prompts: str) -> None:
        """``phone`` dials ``dialled``: the engine answers, ``prompts`` are heard in order, it hangs up."""
        phone.call(self.uri(dialled))
        phone.wait_state("CONFIRMED", timeout=15.0)
        phone.wait_for("media_state", lambda e: e.get("state") == "active")
        self.dialled += 1
        ear = Ear(phone, self.tmp / f"{phone.name}-star-{self.dialled}.wav")
        ear.heard(prompts, timeout=20.0)
        phone.wait_for("call_state", is_ended, timeout=15.0)  # the engine hangs up after the prompt

    def line_options(self, ext: str) -> dict[str, Any]:
        line = next(ln for ln in self.get("/api/lines") if ln["extension"] == ext)
        return dict(line["options"])

    def agents(self, queue: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/queues/{queue}/agents"))

    def get(self, path: str) -> Any:
        resp = self.api.get(path)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def until(self, what: str, check: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() >= deadline:
                pytest.fail(f"never {what} within {timeout} s\n{self.server.log_tail()}")
            time.sleep(0.2)

    def cdr_paths(self, count: int) -> list[list[str]]:
        return [list(c["path"]) for c in self.server.cdrs(count)]

    def sipp_uas(self, name: str) -> subprocess.Popen[bytes]:
        sipp = require_tool("sipp", "apt-get install sip-tester (scripts/test.sh does)")
        cmd = [sipp, "-sf", str(SCENARIOS / "uas_answer.xml"), "-i", "127.0.0.2",
               "-p", str(self.carrier_port), "-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error",
               "-trace_msg", "-message_file", str(self.tmp / f"{name}.msg")]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[Rig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    carrier_port = free_port("127.0.0.2")
    company = tmp_path / "star-company.yaml"
    company.write_text(company_yaml(carrier_port))
    rtp = rtp_range()
    http_port = free_port()
    server = pbx_factory(company_file=company, name="stars", extra_args=[
        "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--ring-timeout", "4", "--http", f"127.0.0.1:{http_port}"])
    token = run_pbx("admin", "token", "create", "--data-dir", str(server.data_dir),
                    "--email", "ops@pbx.test").stdout.strip()
    wait_http(f"http://127.0.0.1:{http_port}/api/health")
    api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"},
                       timeout=10)
    rig = Rig(server, tmp_path, peers, api, carrier_port)
    try:
        yield rig
    finally:
        for phone in rig.phones:
            phone.close()
        for proc in rig.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        api.close()


def test_dnd_gives_voicemail_or_busy_and_forward_always_rings_another_line(rig: Rig, tmp_path: Path) -> None:
    olga = rig.phone("olga", "201")
    sam = rig.phone("sam", "202")
    sara = rig.phone("sara", "203")
    rig.star(sam, "*78", "star-dnd-on")
    rig.until("202's DND in the API", lambda: rig.line_options("202").get("do_not_disturb") is True)
    olga.call(rig.uri("202"))
    olga.wait_state("CONFIRMED", timeout=15.0)  # 202 has a mailbox: the engine answers for it
    olga.hangup()
    olga.wait_for("call_state", is_ended, timeout=10.0)
    assert not any(e.get("ev") == "incoming_call" for e in sam.events)  # 202's phone never rang
    rig.star(sara, "*78", "star-dnd-on")  # 203 has no mailbox: busy
    rig.until("203's DND", lambda: rig.line_options("203").get("do_not_disturb") is True)
    olga.call(rig.uri("203"))
    ended = olga.wait_for("call_state", is_ended, timeout=15.0)
    assert ended["last_code"] == 486, ended
    rig.star(sara, "*79", "star-dnd-off")
    rig.star(sam, "*79", "star-dnd-off")
    rig.until("202's DND off", lambda: "do_not_disturb" not in rig.line_options("202"))

    rig.star(sam, "*72203", "star-forward-always-on")
    rig.until("202's forward", lambda: rig.line_options("202").get("forward") == {"always": "203"})
    tone = write_tone(tmp_path / "sara.wav", TONE_HZ, 6.0)
    olga.call(rig.uri("202"))
    assert sara.wait_for("incoming_call", timeout=15.0)
    sara.answer(200)
    olga.wait_state("CONFIRMED", timeout=10.0)
    sara.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
    sara.play(tone)
    assert_heard(record_for(rig, olga, "forwarded", 2.0), TONE_HZ, 1.0)  # Olga hears the line forwarded to
    olga.hangup()
    sara.wait_for("call_state", is_ended, timeout=10.0)
    assert not any(e.get("ev") == "incoming_call" for e in sam.events)
    rig.star(sam, "*73", "star-forward-always-off")
    rig.until("202's forward off", lambda: "forward" not in rig.line_options("202"))
    paths = rig.cdr_paths(9)
    assert any("@line/202:dnd" in p for p in paths) and any("@line/203:dnd" in p for p in paths)
    assert any("@line/202:forward always 203" in p for p in paths)


def test_forward_no_answer_reaches_an_external_number_at_a_sipp_carrier(rig: Rig) -> None:
    olga = rig.phone("olga", "201")
    sam = rig.phone("sam", "202")  # rings, never answers
    rig.star(sam, f"*92{MOBILE}", "star-forward-no-answer-on")
    rig.until("the forward in the API",
              lambda: rig.line_options("202").get("forward") == {"no_answer": "+4915112345678"})
    carrier = rig.sipp_uas("carrier")
    time.sleep(0.3)
    started = time.monotonic()
    olga.call(rig.uri("202"))
    assert sam.wait_for("incoming_call", timeout=10.0)
    olga.wait_state("CONFIRMED", timeout=20.0)  # the carrier answered the forwarded call
    assert time.monotonic() - started >= 3.5  # after 202 rang for its 4 s
    sam.wait_for("call_state", is_ended, timeout=5.0)  # 202 was cancelled
    olga.hangup()
    carrier.communicate(timeout=30)
    assert carrier.returncode == 0
    log = (rig.tmp / "carrier.msg").read_text(errors="replace")
    assert "INVITE sip:+4915112345678@127.0.0.2" in log
    pai = next(ln for ln in log.splitlines() if ln.lower().startswith("p-asserted-identity"))
    assert CALLER_ID_202 in pai  # the forwarding line's caller ID for an internal caller
    assert any("@line/202:forward no answer +4915112345678" in p for p in rig.cdr_paths(2))


def test_every_refusal_is_heard_and_changes_nothing(rig: Rig) -> None:
    olga = rig.phone("olga", "201")
    sam = rig.phone("sam", "202")
    rig.star(sam, "*72", "star-need-number")
    rig.star(sam, "*7200442071234567", "star-not-allowed")  # international: not a permission of 202
    rig.star(sam, "*72202", "star-not-allowed")  # itself
    rig.star(sam, "*720", "star-invalid-number")
    rig.star(sam, "*45999", "star-unknown-queue")
    rig.star(sam, "*45411", "star-not-an-agent")
    rig.star(sam, "*47", "star-not-logged-in")
    rig.star(olga, "*45", "star-no-queues")
    rig.star(olga, "*46", "star-no-queues")
    assert "forward" not in rig.line_options("202")
    assert rig.agents("support") == [{"line": "202", "dynamic": True, "logged_in": False, "paused": False}]


def test_an_agent_logs_in_by_star_code_gets_the_caller_keeps_it_over_a_restart_then_pauses_and_logs_out(
    rig: Rig,
) -> None:
    sam = rig.phone("sam", "202", auto_answer=200, ring_seconds=0.5)
    carrier = Softphone.pjsua2("carrier", rig.tmp, user="carrier", spawn=rig.spawn, max_seconds=300.0,
                               extra=["--bind", "127.0.0.2"])
    rig.phones.append(carrier)
    carrier.start()
    did = rig.uri(DID_SUPPORT)
    carrier.call(did)
    carrier.wait_state("CONFIRMED", timeout=15.0)  # the queue answers; nobody is logged in
    time.sleep(2.0)
    assert not any(e.get("ev") == "incoming_call" for e in sam.events)
    rig.star(sam, "*45410", "star-agent-logged-in")
    assert rig.agents("support") == [{"line": "202", "dynamic": True, "logged_in": True, "paused": False}]
    assert sam.wait_for("incoming_call", timeout=15.0)  # the waiting caller, once its star call is over
    sam.wait_state("CONFIRMED", timeout=10.0)
    carrier.hangup()
    sam.wait_for("call_state", is_ended, timeout=10.0)
    carrier.wait_for("call_state", is_ended, timeout=10.0)

    rig.server.restart()
    assert rig.agents("support")[0]["logged_in"] is True
    carrier.call(did)
    assert sam.wait_for("incoming_call", timeout=20.0)  # still logged in after the restart
    sam.wait_state("CONFIRMED", timeout=10.0)
    carrier.hangup()
    sam.wait_for("call_state", is_ended, timeout=10.0)
    carrier.wait_for("call_state", is_ended, timeout=10.0)

    rig.star(sam, "*47", "star-agent-paused")
    assert rig.agents("support")[0]["paused"] is True
    offered = len([e for e in sam.events if e.get("ev") == "incoming_call"])
    carrier.call(did)
    carrier.wait_state("CONFIRMED", timeout=15.0)
    time.sleep(3.0)
    assert len([e for e in sam.events if e.get("ev") == "incoming_call"]) == offered  # paused: not offered
    carrier.hangup()
    carrier.wait_for("call_state", is_ended, timeout=10.0)
    rig.star(sam, "*47", "star-agent-unpaused")
    rig.star(sam, "*46", "star-agent-logged-out")
    assert rig.agents("support") == [{"line": "202", "dynamic": True, "logged_in": False, "paused": False}]
    offered = len([e for e in sam.events if e.get("ev") == "incoming_call"])
    carrier.call(did)
    carrier.wait_state("CONFIRMED", timeout=15.0)
    time.sleep(3.0)
    assert len([e for e in sam.events if e.get("ev") == "incoming_call"]) == offered  # logged out
    carrier.hangup()
    carrier.wait_for("call_state", is_ended, timeout=10.0)
    agents = [s for p in rig.cdr_paths(2) for s in p if s.startswith("queue:")]
    assert agents.count("queue:support:agent 202") >= 1
