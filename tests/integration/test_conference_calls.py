"""Conference rooms end to end (issue 13): registered pjsua2 phones dial a room's extension on a real
``pbx serve``; each plays its own tone, and what each records is measured by frequency: every participant
hears the other participants' tones and not its own, and a participant who joined muted is not heard. Three
wrong PINs end the call without joining; a host's *2 locks the room and a later caller is kept out. The PIN
dialogue's every branch is in tests/dialplan/test_room_config.py; here the point is real SIP, real RTP
through the mixer and RFC 4733 keys from real phones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .audio import read_wav, tone_amplitude, write_tone
from .harness import require_module
from .test_calls_phones import rtp_range
from .test_dialplan_calls import REALM, Rig, is_ended, password

pytestmark = pytest.mark.integration

TONES = {"201": 500.0, "202": 700.0, "203": 900.0, "204": 1100.0}
HOST_PIN = "4321"
HEARD = 0.03  # a tone of amplitude 0.2 (what write_tone's 0.2 sends) measures ~0.2; its absence ~0.001
ABSENT = 0.01


def company_yaml() -> str:
    users = "\n".join(
        f'  - {{first_name: P, last_name: P{ext}, extension: "{ext}", sip_password: {password(ext)}}}'
        for ext in TONES
    )
    return f"""version: 1
company: {{name: Conference Test GmbH, sip_realm: {REALM}, timezone: Europe/Berlin, country: DE,
  area_code: "30"}}
users:
{users}
conference_rooms:
  - {{name: team, extension: "700"}}
  - {{name: quiet, extension: "701", host_pin: "{HOST_PIN}", enter_muted: true}}
  - {{name: lobby, extension: "702", host_pin: "{HOST_PIN}", waiting_room: true, end_with_last_host: true}}
"""


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[Rig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    company = tmp_path / "conference-company.yaml"
    company.write_text(company_yaml())
    rtp = rtp_range()
    ports = ["--rtp-ports", f"{rtp[0]}-{rtp[1]}"]
    server = pbx_factory(company_file=company, name="conference", extra_args=ports)
    rig = Rig(server, tmp_path, peers)
    try:
        yield rig
    finally:
        for phone in rig.phones:
            phone.close()


def levels(wav: str) -> dict[float, float]:
    samples, rate = read_wav(wav)
    return {hz: tone_amplitude(samples, hz, rate) for hz in TONES.values()}


def join(rig: Rig, tmp: Path, ext: str, room: str, digits: str | None = None) -> Any:
    phone = rig.phone(f"p{ext}", ext)
    phone.call(f"sip:{room}@{rig.registrar}")
    phone.wait_state("CONFIRMED")
    phone.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
    if digits is not None:
        phone.dtmf(digits)
    phone.play(write_tone(tmp / f"tone-{ext}.wav", TONES[ext], 30.0, amplitude=0.2))
    return phone


def record_all(rig: Rig, phones: dict[str, Any], seconds: float) -> dict[str, str]:
    for ext, phone in phones.items():
        phone.record(rig.tmp / f"heard-{ext}.wav")
    time.sleep(seconds)
    return {ext: str(phone.stop_record()["path"]) for ext, phone in phones.items()}


def test_four_participants_each_hear_the_other_three_and_not_themselves(rig: Rig, tmp_path: Path) -> None:
    phones = {ext: join(rig, tmp_path, ext, "700") for ext in TONES}
    time.sleep(1.0)  # everyone is in the mixer and its playout has started
    heard = record_all(rig, phones, 2.5)
    for ext, wav in heard.items():
        got = levels(wav)
        own = TONES[ext]
        assert got[own] < ABSENT, (ext, got)
        for other, hz in TONES.items():
            if other != ext:
                assert got[hz] > HEARD, (ext, other, got)
    for phone in phones.values():
        phone.hangup()
    for phone in phones.values():
        phone.wait_for("call_state", is_ended, timeout=10.0)
    rows = rig.cdrs(4)
    joined = sorted(step for cdr in rows for step in cdr["path"] if step.startswith("conference:"))
    assert joined == ["conference:team:joined"] * 4, rows


def test_a_participant_who_joins_muted_is_not_heard(rig: Rig, tmp_path: Path) -> None:
    phones = {
        "201": join(rig, tmp_path, "201", "701", HOST_PIN + "#"),  # hosts: never muted
        "202": join(rig, tmp_path, "202", "701", HOST_PIN + "#"),
        "203": join(rig, tmp_path, "203", "701", "#"),  # a participant: the room enters muted
    }
    time.sleep(3.5)  # the PIN prompt is over for everyone, all are in the mixer
    heard = record_all(rig, phones, 2.5)
    got = {ext: levels(wav) for ext, wav in heard.items()}
    assert got["201"][TONES["202"]] > HEARD and got["202"][TONES["201"]] > HEARD, got
    assert got["203"][TONES["201"]] > HEARD and got["203"][TONES["202"]] > HEARD, got  # the muted one hears
    assert got["201"][TONES["203"]] < ABSENT and got["202"][TONES["203"]] < ABSENT, got
    for phone in phones.values():
        phone.hangup()


def test_three_wrong_pins_are_refused_with_goodbye(rig: Rig) -> None:
    phone = rig.phone("p201", "201")
    phone.call(f"sip:701@{rig.registrar}")
    phone.wait_state("CONFIRMED")
    phone.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
    phone.dtmf("1111#2222#3333#")
    phone.wait_for("call_state", is_ended, timeout=30.0)  # the engine hangs up after the goodbye
    (cdr,) = rig.cdrs(1)
    assert "@conference/quiet:wrong pin" in cdr["path"], cdr
    assert not any(step.startswith("conference:") for step in cdr["path"]), cdr  # never joined


def test_a_host_locks_the_room_and_a_new_caller_is_kept_out(rig: Rig, tmp_path: Path) -> None:
    host = join(rig, tmp_path, "201", "701", HOST_PIN + "#")
    time.sleep(3.0)  # the PIN prompt is over: the host is seated and listens for the menu key
    host.dtmf("*2")
    time.sleep(4.0)  # the menu prompt is cut short by the 2; "the conference is now locked"
    late = rig.phone("p202", "202")
    late.call(f"sip:701@{rig.registrar}")
    late.wait_state("CONFIRMED")
    late.wait_for("media_state", lambda e: e.get("state") == "active", timeout=10.0)
    late.dtmf(HOST_PIN + "#")
    late.wait_for("call_state", is_ended, timeout=30.0)  # "this conference is locked", goodbye
    host.hangup()
    rows = rig.cdrs(2)
    paths = [" ".join(cdr["path"]) for cdr in rows]
    assert any("@conference/quiet:host locked" in p for p in paths), paths


def test_the_waiting_room_holds_until_the_host_and_the_last_host_ends_it(rig: Rig, tmp_path: Path) -> None:
    guest = join(rig, tmp_path, "202", "702", "#")
    time.sleep(6.0)  # the PIN prompt, then "the conference will begin when the host joins"
    waiting = levels_at(record_all(rig, {"202": guest}, 2.0)["202"], (440.0, 660.0))
    assert max(waiting.values()) > HEARD, waiting  # the system hold music (440 Hz and 660 Hz)
    host = join(rig, tmp_path, "201", "702", HOST_PIN + "#")
    time.sleep(3.0)
    heard = record_all(rig, {"202": guest, "201": host}, 2.5)
    assert levels(heard["202"])[TONES["201"]] > HEARD, levels(heard["202"])
    assert levels(heard["201"])[TONES["202"]] > HEARD, levels(heard["201"])
    host.hangup()
    guest.wait_for("call_state", is_ended, timeout=15.0)  # "the conference has ended", goodbye
    rows = rig.cdrs(2)
    assert any("@conference/lobby:ended" in cdr["path"] for cdr in rows), rows


def levels_at(wav: str, freqs: tuple[float, ...]) -> dict[float, float]:
    samples, rate = read_wav(wav)
    return {hz: tone_amplitude(samples, hz, rate) for hz in freqs}


def test_a_host_removes_the_last_joiner(rig: Rig, tmp_path: Path) -> None:
    host = join(rig, tmp_path, "201", "701", HOST_PIN + "#")
    guest = join(rig, tmp_path, "202", "701", "#")
    time.sleep(3.0)  # both seated
    host.dtmf("*3")
    guest.wait_for("call_state", is_ended, timeout=15.0)  # removed: the engine hangs up on the guest
    host.hangup()
    rows = rig.cdrs(2)
    paths = [" ".join(cdr["path"]) for cdr in rows]
    assert any("@conference/quiet:removed" in p for p in paths), paths
