"""Hot desking end to end (issue 19 part 4) on a real ``pbx serve`` with pjsua2 phones: user 202 (Sam,
hot desking allowed, dialable username 2020 and password 4711 set over the admin API) logs into the shared
desk phone of line 203 by ``*11`` and keying both in; the login is in the API and survives a restart; a
call to 202 rings the desk phone, and what the desk dials goes out as 202 (its caller ID at a SIPp
carrier); ``*12`` logs out and a call to 202 no longer rings the desk. Refusals are heard and change
nothing: a wrong password, a user without hot desking, a logout where nobody is logged in. Nothing is left
in the engine's call tables."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..peers.softphone import Softphone
from .test_dialplan_calls import is_ended
from .test_find_me import assert_idle
from .test_star_codes import CALLER_ID_202, MOBILE, Rig, rig  # noqa: F401  (the fixture)
from .test_voicemail import Ear

pytestmark = pytest.mark.integration


def set_user(pbx: Rig, ext: str, fields: dict[str, Any]) -> None:
    line = next(ln for ln in pbx.get("/api/lines") if ln["extension"] == ext)
    resp = pbx.api.patch(f"/api/users/{line['user_id']}", json=fields)
    assert resp.status_code == 200, resp.text


def key_in(pbx: Rig, phone: Softphone, code: str, entries: tuple[str, ...], outcome: str) -> None:
    """``phone`` dials ``code``, keys in each of ``entries`` after its prompt, and hears ``outcome``."""
    phone.call(pbx.uri(code))
    phone.wait_state("CONFIRMED", timeout=15.0)
    phone.wait_for("media_state", lambda e: e.get("state") == "active")
    pbx.dialled += 1
    ear = Ear(phone, pbx.tmp / f"{phone.name}-desk-{pbx.dialled}.wav")
    start = 0
    for prompt, digits in zip(("hotdesk-username", "hotdesk-password"), entries, strict=False):
        start = ear.end_of([prompt], start)
        phone.dtmf(digits + "#")
    ear.heard([outcome], start, timeout=20.0)
    phone.wait_for("call_state", is_ended, timeout=15.0)


def rings(phone: Softphone) -> int:
    return len([e for e in phone.events if e.get("ev") == "incoming_call"])


def test_a_user_logs_into_a_desk_phone_which_rings_and_dials_as_their_line_until_logout(
        rig: Rig) -> None:  # noqa: F811
    set_user(rig, "202", {"hot_desking": True, "dial_username": "2020", "dial_password": "4711"})
    set_user(rig, "201", {"dial_username": "2010"})  # no hot desking; the default password 0000
    olga = rig.phone("olga", "201")
    desk = rig.phone("desk", "203")  # Sara's line: the shared desk phone; Sam's own phone is off

    key_in(rig, desk, "*11", ("2020", "1234"), "hotdesk-wrong-password")
    key_in(rig, desk, "*11", ("2010", "0000"), "hotdesk-not-allowed")
    key_in(rig, desk, "*12", (), "hotdesk-not-logged-in")
    assert "hot_desk" not in rig.line_options("203")
    key_in(rig, desk, "*11", ("2020", "4711"), "hotdesk-logged-in")
    login = rig.until("the login in the API", lambda: rig.line_options("203").get("hot_desk"))
    assert login["line"] == "202" and login["until"] > time.time() + 11 * 3600

    rig.server.restart()
    assert rig.line_options("203")["hot_desk"]["line"] == "202"
    olga.call(rig.uri("202"))
    assert desk.wait_for("incoming_call", timeout=15.0)  # the desk rings for Sam's line
    desk.answer(200)
    desk.wait_state("CONFIRMED", timeout=10.0)
    olga.wait_state("CONFIRMED", timeout=10.0)
    olga.hangup()
    olga.wait_for("call_state", is_ended, timeout=10.0)
    desk.wait_for("call_state", is_ended, timeout=10.0)

    carrier = rig.sipp_uas("carrier")
    time.sleep(0.3)
    desk.call(rig.uri(MOBILE))  # the desk dials out as 202
    desk.wait_state("CONFIRMED", timeout=15.0)
    desk.hangup()
    desk.wait_for("call_state", is_ended, timeout=10.0)
    carrier.communicate(timeout=30)
    assert carrier.returncode == 0
    log = (rig.tmp / "carrier.msg").read_text(errors="replace")
    pai = next(ln for ln in log.splitlines() if ln.lower().startswith("p-asserted-identity"))
    assert CALLER_ID_202 in pai, pai
    assert rig.server.cdrs(1)[0]["caller"] == "202"

    key_in(rig, desk, "*12", (), "hotdesk-logged-out")
    rig.until("the logout in the API", lambda: "hot_desk" not in rig.line_options("203"))
    before = rings(desk)
    olga.call(rig.uri("202"))  # 202 has no phone now: its voicemail answers
    olga.wait_state("CONFIRMED", timeout=15.0)
    olga.hangup()
    olga.wait_for("call_state", is_ended, timeout=10.0)
    assert rings(desk) == before
    assert_idle(rig)
