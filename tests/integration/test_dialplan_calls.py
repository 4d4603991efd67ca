"""Dial plans end to end (issue 4's acceptance): a pjsua2 "carrier" at 127.0.0.2 (the trunk's source) calls
the company's numbers on a real ``pbx serve``; the plan's auto attendant answers and plays its clip, the
caller presses keys (RFC 4733), a ring group of registered pjsua2 phones rings and one answers, and the
invalid, timeout and closed-hours paths go where the plan says. What the caller hears is recorded and
checked: the clips are tones of known frequencies, so "heard the menu" is a dominant frequency and a length.

The schedule is evaluated on the real clock: the "night" plan's schedule is open only on a day that is not
today (in the company's time zone), so it is closed whenever the test runs.
"""

from __future__ import annotations

import datetime
import json
import time
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..peers.softphone import Event, Softphone
from .audio import dominant_frequency, signal_seconds, wav_duration, write_tone
from .harness import PbxServer, require_module
from .test_calls_phones import rtp_range

pytestmark = pytest.mark.integration

REALM = "pbx.test"
TZ = "Europe/Berlin"
DID_DAY = "+493023125100"
DID_NIGHT = "+493023125101"
DID_SUPPORT = "+493023125102"
MENU_HZ = 700.0
CLOSED_HZ = 500.0
MEMBER_HZ = 1000.0
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def password(ext: str) -> str:
    return f"secret-{ext}"


def company_yaml(clips: Path) -> str:
    today = datetime.datetime.now(zoneinfo.ZoneInfo(TZ)).weekday()
    other_day = DAYS[(today + 3) % 7]
    return f"""version: 1
company:
  name: Plan Test GmbH
  sip_realm: {REALM}
  timezone: {TZ}
  country: DE
  area_code: "30"
users:
  - {{first_name: Olga, last_name: Operator, extension: "201", sip_password: {password("201")}}}
  - {{first_name: Sam, last_name: Sales, extension: "202", sip_password: {password("202")}}}
  - {{first_name: Sara, last_name: Sales, extension: "203", sip_password: {password("203")}}}
numbers:
  - {{number: "{DID_DAY}", route: {{kind: dial_plan, target: day}}}}
  - {{number: "{DID_NIGHT}", route: {{kind: dial_plan, target: night}}}}
  - {{number: "{DID_SUPPORT}", route: {{kind: ring_group, target: support}}}}
sound_clips:
  - {{name: menu, file: {clips / "menu.wav"}}}
  - {{name: closed, file: {clips / "closed.wav"}}}
ring_groups:
  - name: sales
    strategy: ring_all
    members: [{{line: "202"}}, {{line: "203"}}]
    member_ring_seconds: 15
    ring_seconds: 20
  - name: support
    strategy: round_robin
    members: [{{line: "202"}}, {{line: "203"}}]
    member_ring_seconds: 3
    ring_seconds: 12
schedules:
  - name: always
    open: [{{days: [{", ".join(DAYS)}], from: "00:00", to: "24:00"}}]
  - name: never_today
    open: [{{days: [{other_day}], from: "00:00", to: "24:00"}}]
mailboxes:
  - {{name: office, number: "800"}}
dial_plans:
  - name: day
    graph:
      start: hours
      nodes:
        hours: {{type: schedule, schedule: always, next: {{open: menu, closed: bye}}}}
        menu:
          type: auto_attendant
          clip: menu
          options: {{"1": sales, "0": operator}}
          retries: 1
          timeout_seconds: 2
          next: {{timeout: operator, invalid: bye}}
        sales: {{type: ring_group, ring_group: sales, next: {{no_answer: bye}}}}
        operator: {{type: simple_dial, line: "201", ring_seconds: 15, next: {{no_answer: bye}}}}
        bye: {{type: hangup}}
  - name: night
    graph:
      start: hours
      nodes:
        hours: {{type: schedule, schedule: never_today, next: {{open: bye, closed: closed}}}}
        closed: {{type: play_clip, clip: closed, next: {{next: vm}}}}
        vm: {{type: voicemail, mailbox: office}}
        bye: {{type: hangup}}
trunks:
  - {{name: carrier, sources: ["127.0.0.2"], host: 127.0.0.2, port: 5080}}
"""


@dataclass
class Rig:
    server: PbxServer
    tmp: Path
    spawn: Any
    phones: list[Softphone] = field(default_factory=list)

    @property
    def registrar(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def phone(self, name: str, ext: str, **kw: Any) -> Softphone:
        phone = Softphone.pjsua2(name, self.tmp, user=ext, password=password(ext), registrar=self.registrar,
                                 spawn=self.spawn, **kw)
        self.phones.append(phone)
        phone.start()
        phone.wait_registered()
        return phone

    def carrier(self) -> Softphone:
        """The carrier: an unregistered pjsua2 on 127.0.0.2, trusted by source address."""
        phone = Softphone.pjsua2("carrier", self.tmp, user="carrier", spawn=self.spawn,
                                 extra=["--bind", "127.0.0.2"])
        self.phones.append(phone)
        phone.start()
        return phone

    def did_uri(self, did: str) -> str:
        return f"sip:{did}@{self.registrar}"

    def cdrs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.server.cdrs(count, timeout)

    def messages(self, box: str, timeout: float = 10.0) -> list[Path]:
        """The recorded messages (not greetings or names) in mailbox ``box``, once at least one is there."""
        folder = self.server.data_dir / "voicemail" / box
        deadline = time.monotonic() + timeout
        wavs: list[Path] = []
        while time.monotonic() < deadline and not wavs:
            wavs = [p for p in folder.rglob("*.wav") if "greeting" not in p.name and "name" not in p.name]
            time.sleep(0.2)
        return wavs


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[Rig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    clips = tmp_path / "clips"
    clips.mkdir()
    write_tone(clips / "menu.wav", MENU_HZ, 3.0)
    write_tone(clips / "closed.wav", CLOSED_HZ, 1.5)
    company = tmp_path / "plan-company.yaml"
    company.write_text(company_yaml(clips))
    rtp = rtp_range()
    server = pbx_factory(company_file=company, name="plans", extra_args=["--rtp-ports", f"{rtp[0]}-{rtp[1]}"])
    rig = Rig(server, tmp_path, peers)
    try:
        yield rig
    finally:
        for phone in rig.phones:
            phone.close()


def is_ended(e: Event) -> bool:
    return e.get("ev") == "call_state" and e.get("state") == "DISCONNECTED"


def record_for(rig: Rig, phone: Softphone, name: str, seconds: float) -> str:
    phone.record(rig.tmp / f"{name}.wav")
    time.sleep(seconds)
    return str(phone.stop_record()["path"])


def assert_heard(wav: str, hz: float, min_s: float) -> None:
    heard = dominant_frequency(wav)
    assert abs(heard - hz) <= 25.0, f"{wav}: dominant {heard:.0f} Hz, expected {hz:.0f} Hz"
    loud = signal_seconds(wav)
    assert loud >= min_s, f"{wav}: only {loud:.2f} s of {wav_duration(wav):.2f} s carry signal"


def test_open_hours_menu_then_1_rings_the_sales_group_and_a_member_answers(rig: Rig, tmp_path: Path) -> None:
    tone = write_tone(tmp_path / "member.wav", MEMBER_HZ, 6.0)
    members = [rig.phone("sam", "202", auto_answer=200, ring_seconds=1.0),
               rig.phone("sara", "203", auto_answer=200, ring_seconds=1.5)]
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_DAY))
    carrier.wait_state("CONFIRMED")  # the auto attendant answers
    menu = record_for(rig, carrier, "menu", 2.0)
    assert_heard(menu, MENU_HZ, 1.5)  # the menu clip, from the start
    carrier.dtmf("1")
    rang = [m.wait_for("incoming_call", timeout=10.0) for m in members]  # ring all: both ring
    assert all(f"{DID_DAY[1:]}" in json.dumps(r) or "carrier" in json.dumps(r) for r in rang), rang
    answered = members[0]  # the one with the shorter ring time wins
    answered.wait_state("CONFIRMED")
    members[1].wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=10.0)
    carrier.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
    answered.play(tone)
    time.sleep(0.5)  # the re-INVITE moves the carrier's media onto the member
    heard = record_for(rig, carrier, "member", 2.0)
    assert_heard(heard, MEMBER_HZ, 1.5)
    carrier.hangup()
    answered.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=10.0)
    (cdr,) = rig.cdrs(1)
    assert cdr["direction"] == "inbound" and cdr["did"] == DID_DAY and cdr["disposition"] == "answered"
    assert sorted(leg["status"] for leg in cdr["legs"]) == [200, 487], cdr
    path = " ".join(cdr["path"])
    assert "day/hours" in path and "day/menu" in path and "sales" in path, cdr["path"]


def test_no_key_times_out_to_the_operator(rig: Rig) -> None:
    operator = rig.phone("olga", "201", auto_answer=200, ring_seconds=0.5)
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_DAY))
    carrier.wait_state("CONFIRMED")
    incoming = operator.wait_for("incoming_call", timeout=20.0)  # 2 x (menu + 2 s timeout)
    assert incoming
    operator.wait_state("CONFIRMED")
    carrier.hangup()
    (cdr,) = rig.cdrs(1)
    assert cdr["disposition"] == "answered" and any("operator" in s for s in cdr["path"]), cdr


def test_invalid_keys_end_the_call_after_the_retry(rig: Rig) -> None:
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_DAY))
    carrier.wait_state("CONFIRMED")
    time.sleep(0.5)
    carrier.dtmf("9")  # no such option: "invalid option", the menu again
    time.sleep(3.5)
    carrier.dtmf("9")  # the retry is used up: the invalid output hangs up
    ended = carrier.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=20.0)
    assert ended
    (cdr,) = rig.cdrs(1)
    assert cdr["hangup_cause"] == "dial plan hung up", cdr
    assert any("invalid" in s for s in cdr["path"]), cdr["path"]


def test_closed_hours_play_the_closed_clip_and_take_a_message(rig: Rig, tmp_path: Path) -> None:
    message = write_tone(tmp_path / "message.wav", MEMBER_HZ, 3.0)
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_NIGHT))
    carrier.wait_state("CONFIRMED")
    closed = record_for(rig, carrier, "closed", 1.2)
    assert_heard(closed, CLOSED_HZ, 0.8)
    time.sleep(7.0)  # the shared box's default greeting and the beep
    carrier.play(message)
    time.sleep(3.5)
    carrier.hangup()
    wavs = rig.messages("800")
    assert len(wavs) == 1, sorted((rig.server.data_dir / "voicemail" / "800").rglob("*"))
    assert_heard(str(wavs[0]), MEMBER_HZ, 2.0)
    (cdr,) = rig.cdrs(1)
    assert any("voicemail:800" in s for s in cdr["path"]) and any("night/hours:closed" in s or "closed" in s
                                                                  for s in cdr["path"]), cdr["path"]


def test_round_robin_rings_one_member_at_a_time_and_starts_after_the_last_one_next_time(rig: Rig) -> None:
    """The support group (round robin, 3 s per member) called directly by its number: the first call rings
    202 alone, then 203 (202 does not answer); the next call starts after 203, i.e. with 202 again."""
    sam = rig.phone("sam", "202")  # rings, never answers
    sara = rig.phone("sara", "203", auto_answer=200, ring_seconds=0.5)
    carrier = rig.carrier()
    carrier.call(rig.did_uri(DID_SUPPORT))
    first = sam.wait_for("incoming_call", timeout=10.0)
    started = time.monotonic()
    sam.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=10.0)  # CANCELled at 3 s
    assert sara.wait_for("incoming_call", timeout=10.0) and first
    assert time.monotonic() - started >= 2.0  # 203 rang only after 202's turn
    carrier.wait_state("CONFIRMED")
    carrier.hangup()
    carrier.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=10.0)
    sara.wait_for("call_state", lambda e: e.get("state") == "DISCONNECTED", timeout=10.0)
    carrier.call(rig.did_uri(DID_SUPPORT))
    sam.wait_for("incoming_call", timeout=10.0)  # the member after 203 (the last to ring) is 202
    carrier.wait_state("CONFIRMED", timeout=20.0)  # after 202's turn, 203 answers again
    carrier.hangup()
    rows = rig.cdrs(2)
    for cdr in rows:
        assert cdr["disposition"] == "answered" and [leg["status"] for leg in cdr["legs"]] == [487, 200], cdr
