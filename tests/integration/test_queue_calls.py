"""Call queues end to end (issue 12): a pjsua2 "carrier" calls the queue's number on a real ``pbx serve``;
the engine answers, plays the welcome clip and the queue's hold clip (tones of known frequencies, checked by
what the caller records), rings the agents (registered pjsua2 phones) by the strategy and bridges the one
who answers to the caller; the maximum wait sends a caller nobody answered to voicemail, where a message is
left. The strategy order, wrap-up, skip-busy, the exit key and abandoned callers are covered in-process
(tests/call/test_queue_flow.py); here the point is real SIP, real RTP and what the caller hears.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..peers.softphone import Softphone
from .audio import write_tone
from .harness import free_port, require_module, run_pbx, wait_http
from .test_calls_phones import rtp_range
from .test_dialplan_calls import REALM, Rig, assert_heard, is_ended, password, record_for
from .test_voicemail import Ear

pytestmark = pytest.mark.integration

DID_SUPPORT = "+493023125110"
DID_SALES = "+493023125111"
DID_LINE = "+493023125112"
WELCOME_HZ = 800.0
HOLD_HZ = 600.0
AGENT_HZ = 1000.0


def company_yaml(clips: Path) -> str:
    users = "\n".join(
        f'  - {{first_name: Agent, last_name: A{ext}, extension: "{ext}", sip_password: {password(ext)}}}'
        for ext in ("201", "202", "203")
    )
    return f"""version: 1
company: {{name: Queue Test GmbH, sip_realm: {REALM}, timezone: Europe/Berlin, country: DE, area_code: "30"}}
users:
{users}
numbers:
  - {{number: "{DID_SUPPORT}", route: {{kind: queue, target: support}}}}
  - {{number: "{DID_SALES}", route: {{kind: queue, target: sales}}}}
  - {{number: "{DID_LINE}", route: {{kind: queue, target: line}}}}
sound_clips:
  - {{name: welcome, file: {clips / "welcome.wav"}}}
  - {{name: hold, file: {clips / "hold.wav"}}}
mailboxes:
  - {{name: office, number: "800"}}
queues:
  - name: support
    agents: [{{line: "202"}}, {{line: "203"}}]
    strategy: round_robin
    agent_ring_seconds: 4
    welcome_clip: welcome
    hold_clip: hold
  - name: sales
    agents: [{{line: "201"}}]
    agent_ring_seconds: 5
    max_wait_seconds: 6
    hold_clip: hold
    exit: {{kind: voicemail, target: office}}
  - name: line
    agents: [{{line: "203", dynamic: true}}]
    hold_clip: hold
    announce_position: true
    announce_every_seconds: 10
trunks:
  - {{name: carrier, sources: ["127.0.0.2"], host: 127.0.0.2, port: 5080}}
"""


@dataclass
class QueueRig(Rig):
    """The dial-plan tests' rig with the admin API of the engine (the live view and the queue report)."""

    api: httpx.Client | None = None

    def get(self, path: str, **params: Any) -> Any:
        assert self.api is not None
        resp = self.api.get(path, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def report(self, queue: str) -> dict[str, Any]:
        return next(q for q in self.get("/api/reports/queues") if q["queue"] == queue)


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[QueueRig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    clips = tmp_path / "clips"
    clips.mkdir()
    write_tone(clips / "welcome.wav", WELCOME_HZ, 1.0)
    write_tone(clips / "hold.wav", HOLD_HZ, 2.0)
    company = tmp_path / "queue-company.yaml"
    company.write_text(company_yaml(clips))
    rtp = rtp_range()
    http_port = free_port()
    ports = ["--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--http", f"127.0.0.1:{http_port}"]
    server = pbx_factory(company_file=company, name="queues", extra_args=ports)
    token = run_pbx("admin", "token", "create", "--data-dir", str(server.data_dir),
                    "--email", "ops@pbx.test").stdout.strip()
    wait_http(f"http://127.0.0.1:{http_port}/api/health")
    api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {token}"},
                       timeout=10)
    rig = QueueRig(server, tmp_path, peers, api=api)
    try:
        yield rig
    finally:
        for phone in rig.phones:
            phone.close()
        api.close()


def test_a_caller_hears_welcome_and_hold_then_round_robin_bridges_the_agents_in_turn(
    rig: QueueRig, tmp_path: Path
) -> None:
    """202 rings first and does not answer (the caller hears the hold clip meanwhile), 203 answers and is
    bridged; the next call starts after 203: with 202, who answers it this time."""
    tone = write_tone(tmp_path / "agent.wav", AGENT_HZ, 6.0)
    sam = rig.phone("sam", "202")  # rings, never answers (the first call)
    sara = rig.phone("sara", "203", auto_answer=200, ring_seconds=0.5)
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_SUPPORT))
    carrier.wait_state("CONFIRMED")  # the engine answers
    welcome = record_for(rig, carrier, "welcome", 0.8)
    assert_heard(welcome, WELCOME_HZ, 0.5)
    assert sam.wait_for("incoming_call", timeout=10.0)
    hold = record_for(rig, carrier, "hold", 2.0)
    assert_heard(hold, HOLD_HZ, 1.5)  # while 202 rings
    sam.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=10.0)  # its 4 s are over
    assert sara.wait_for("incoming_call", timeout=10.0)
    sara.wait_state("CONFIRMED")
    carrier.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
    sara.play(tone)
    time.sleep(1.5)  # the re-INVITE moves the caller's media onto the agent
    heard = record_for(rig, carrier, "agent", 1.5)
    assert_heard(heard, AGENT_HZ, 1.0)
    carrier.hangup()
    sara.wait_for("call_state", is_ended, timeout=10.0)
    carrier.wait_for("call_state", is_ended, timeout=10.0)
    sam.auto_answer(200, 0.5)
    carrier.call(rig.did_uri(DID_SUPPORT))
    assert sam.wait_for("incoming_call", timeout=10.0)  # round robin: the agent after 203
    sam.wait_state("CONFIRMED")
    carrier.hangup()
    rows = rig.cdrs(2)
    agents = sorted(step for cdr in rows for step in cdr["path"] if step.startswith("queue:"))
    assert agents == ["queue:support:agent 202", "queue:support:agent 203"], rows
    assert all(cdr["disposition"] == "answered" for cdr in rows)
    support = rig.report("support")
    assert (support["offered"], support["answered"], support["abandoned"]) == (2, 2, 0), support
    assert [(a["line"], a["calls"]) for a in support["agents"]] == [("202", 1), ("203", 1)], support
    assert support["agents"][1]["talk_seconds"] >= 1.5  # 203 talked while the caller heard its tone
    assert support["longest_wait_seconds"] >= 3.0  # the first caller waited for 202's 4 s of ringing


def test_the_maximum_wait_sends_the_caller_to_voicemail_where_a_message_is_left(
    rig: QueueRig, tmp_path: Path
) -> None:
    message = write_tone(tmp_path / "message.wav", AGENT_HZ, 3.0)
    olga = rig.phone("olga", "201")  # the only agent: rings, never answers
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_SALES))
    carrier.wait_state("CONFIRMED")
    assert olga.wait_for("incoming_call", timeout=10.0)
    hold = record_for(rig, carrier, "hold", 1.5)
    assert_heard(hold, HOLD_HZ, 1.0)  # no welcome clip: the hold clip at once
    olga.wait_for("call_state", is_ended, timeout=10.0)  # CANCELled when the caller leaves at 6 s
    time.sleep(9.0)  # the shared box's default greeting and the beep
    carrier.play(message)
    time.sleep(3.5)
    carrier.hangup()
    wavs = rig.messages("800")
    assert len(wavs) == 1, sorted((rig.server.data_dir / "voicemail" / "800").rglob("*"))
    assert_heard(str(wavs[0]), AGENT_HZ, 2.0)
    (cdr,) = rig.cdrs(1)
    assert "@queue/sales:exit timeout" in cdr["path"] and "voicemail:800:unavailable" in cdr["path"], cdr


def test_three_waiting_callers_hear_their_places_and_the_hold_clip_and_move_up(rig: QueueRig) -> None:
    """Nobody takes the "line" queue's calls (its one agent is logged out): three callers from the carrier
    wait; each hears its place in line at joining (German: the company is in Germany) and then the hold
    clip; once the first hangs up, the second hears on the next beat (10 s) that it is next in line."""
    ears: list[Ear] = []
    callers: list[Softphone] = []
    for i in range(3):
        phone = Softphone.pjsua2(f"caller{i + 1}", rig.tmp, user=f"caller{i + 1}", spawn=rig.spawn,
                                 extra=["--bind", "127.0.0.2"])
        rig.phones.append(phone)
        phone.start()
        phone.call(rig.did_uri(DID_LINE))
        phone.wait_state("CONFIRMED")
        phone.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
        ear = Ear(phone, rig.tmp / f"caller{i + 1}.wav")
        place = ["queue-position-first"] if i == 0 else ["queue-position", f"num-{i + 1}"]
        ear.heard([*place, "queue-thanks"], timeout=15.0)
        ears.append(ear)
        callers.append(phone)
    for ear in ears:
        ear.tone(HOLD_HZ, 1.0, timeout=10.0)  # the hold clip under and after the announcements
    live = rig.get("/api/queues/line/live")
    assert [(w["position"], w["caller"]) for w in live["waiting"]] == [
        (1, "caller1"), (2, "caller2"), (3, "caller3")], live
    assert live["waiting"][0]["waiting_seconds"] > live["waiting"][2]["waiting_seconds"] > 0
    assert [(a["line"], a["state"]) for a in live["agents"]] == [("203", "logged_out")]
    before = [len(ear.samples()) for ear in ears]
    callers[0].hangup()
    callers[0].wait_for("call_state", is_ended, timeout=10.0)
    ears[1].heard(["queue-position-first", "queue-thanks"], start=before[1], timeout=25.0)
    ears[2].heard(["queue-position", "num-2", "queue-thanks"], start=before[2], timeout=25.0)
    for phone in callers[1:]:
        phone.hangup()
        phone.wait_for("call_state", is_ended, timeout=10.0)
    rows = rig.cdrs(3)
    assert all(cdr["disposition"] == "answered" for cdr in rows), rows  # the engine answered each
    line = rig.report("line")
    assert (line["offered"], line["answered"], line["abandoned"]) == (3, 0, 3), line
    assert line["service_level_percent"] == 0.0 and line["average_abandoned_after_seconds"] > 5.0
    assert rig.get("/api/queues/line/live")["waiting"] == []
