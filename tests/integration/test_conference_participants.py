"""A running room's participants over the admin API (issue 13) on a real ``pbx serve --http``: pjsua2 phones
dial the room; ``GET /api/conferences/<room>/participants`` lists them in join order (a caller held by the
waiting room as waiting), ``DELETE .../participants/<id>`` hangs that phone up and is audited, and a second
removal or an unknown room is a 404; ``PUT .../lock`` keeps a new caller out (an idle room: 409); and the
same in chromium, on the web admin's conference-rooms page of that server: the participants listed, one
removed with its button, the room locked and unlocked. The handlers run in worker threads;
what they read and change lives on the engine's loop (engine.api.conferences hands each request to it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import free_port, require_module, run_pbx, wait_http
from .test_calls_phones import rtp_range
from .test_conference_calls import company_yaml, join
from .test_dialplan_calls import Rig, is_ended

pytestmark = pytest.mark.integration
EMAIL = "ops@pbx.test"


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[tuple[Rig, httpx.Client, int]]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    company = tmp_path / "conference-company.yaml"
    company.write_text(company_yaml())
    rtp = rtp_range()
    http_port = free_port()
    args = ["--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--http", f"127.0.0.1:{http_port}"]
    server = pbx_factory(company_file=company, name="conference-api", extra_args=args)
    made = run_pbx(
        "admin", "token", "create", "--json", "--data-dir", str(server.data_dir), "--email", EMAIL
    ).stdout
    admin = json.loads(made)
    token = admin["token"]
    base = f"http://127.0.0.1:{http_port}"
    wait_http(f"{base}/api/health")
    rig = Rig(server, tmp_path, peers)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        try:
            yield rig, api, admin["user_id"]
        finally:
            for phone in rig.phones:
                phone.close()


Rows = list[dict[str, Any]]


def listed(api: httpx.Client, room: str, want: Callable[[Rows], bool]) -> Rows:
    deadline = time.monotonic() + 10.0
    while True:
        r = api.get(f"/api/conferences/{room}/participants")
        assert r.status_code == 200, r.text
        rows: Rows = r.json()
        if want(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_participants_listed_and_one_removed(rig: tuple[Rig, httpx.Client, int], tmp_path: Path) -> None:
    pbx, api, _ = rig
    assert api.get("/api/conferences/team/participants").json() == []  # the room exists, nobody is in it
    assert api.get("/api/conferences/nosuch/participants").status_code == 404
    first = join(pbx, tmp_path, "201", "700")
    second = join(pbx, tmp_path, "202", "700")
    rows = listed(api, "team", lambda rows: len(rows) == 2)
    assert [(r["caller"], r["host"], r["muted"], r["waiting"]) for r in rows] == [
        ("201", False, False, False),
        ("202", False, False, False),
    ], rows
    assert rows[0]["id"] != rows[1]["id"] and all(r["in_room_seconds"] >= 0 for r in rows)
    gone = rows[1]["id"]
    removed = api.delete(f"/api/conferences/team/participants/{gone}")
    assert removed.status_code == 204, removed.text
    second.wait_for("call_state", is_ended, timeout=10.0)  # the engine hung the removed phone up
    rows = listed(api, "team", lambda rows: len(rows) == 1)
    assert [r["caller"] for r in rows] == ["201"], rows
    again = api.delete(f"/api/conferences/team/participants/{gone}")
    assert again.status_code == 404 and "participant" in again.json()["detail"], again.text
    assert api.delete("/api/conferences/nosuch/participants/1").status_code == 404
    (event,) = api.get("/api/audit", params={"action": "conference."}).json()
    assert event["action"] == "conference.participant_removed" and event["target"] == "conference_room:team"
    assert event["detail"] == {"participant": gone, "caller": "202", "host": False}, event
    # Locked over the API: a new caller is kept out ("locked", goodbye), as a host's *2 does.
    room = api.get("/api/conferences/team").json()
    assert (room["running"], room["locked"], len(room["participants"])) == (True, False, 1), room
    locked = api.put("/api/conferences/team/lock", json={"locked": True})
    assert locked.status_code == 200 and locked.json()["locked"] is True, locked.text
    late = pbx.phone("p204", "204")
    late.call(f"sip:700@{pbx.registrar}")
    late.wait_state("CONFIRMED")
    late.wait_for("call_state", is_ended, timeout=30.0)  # the engine hangs up after "locked"
    assert [r["caller"] for r in listed(api, "team", lambda rows: True)] == ["201"]
    assert api.put("/api/conferences/team/lock", json={"locked": False}).json()["locked"] is False
    idle = api.put("/api/conferences/lobby/lock", json={"locked": True})
    assert idle.status_code == 409 and "nobody is in" in idle.json()["detail"], idle.text
    assert api.put("/api/conferences/team/lock", json={"locked": "yes"}).status_code == 400
    actions = [e["action"] for e in api.get("/api/audit", params={"action": "conference."}).json()]
    assert actions == ["conference.unlocked", "conference.locked", "conference.participant_removed"]
    # A caller the waiting room holds (no host yet) is listed as waiting.
    waiting = join(pbx, tmp_path, "203", "702", "#")
    rows = listed(api, "lobby", lambda rows: len(rows) == 1)
    assert [(r["caller"], r["host"], r["waiting"]) for r in rows] == [("203", False, True)], rows
    for phone in (first, waiting):
        phone.hangup()
    for phone in (first, waiting):
        phone.wait_for("call_state", is_ended, timeout=10.0)
    assert listed(api, "team", lambda rows: rows == []) == []


def test_the_web_admin_lists_and_removes_participants(
    rig: tuple[Rig, httpx.Client, int], tmp_path: Path
) -> None:
    pytest.importorskip("playwright")
    from playwright.sync_api import expect, sync_playwright

    from tests.web.conftest import CHROMIUM, _web_user, login

    pbx, api, user_id = rig
    _web_user(api, user_id, EMAIL)
    first = join(pbx, tmp_path, "201", "700")
    second = join(pbx, tmp_path, "202", "700")
    rows = listed(api, "team", lambda rows: len(rows) == 2)
    gone = next(r["id"] for r in rows if r["caller"] == "202")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(base_url=str(api.base_url), locale="en-US")
            page.set_default_timeout(10_000)
            login(page, EMAIL, "/conference-rooms")
            page.locator('[data-participants="team"]').click()
            panel = page.locator("#participants")
            expect(panel.locator("tbody tr")).to_have_count(2)
            expect(panel.locator("tbody tr").nth(0)).to_contain_text("201")
            expect(panel.locator("tbody tr").nth(1)).to_contain_text("can talk")
            page.screenshot(path=str(tmp_path / "conference-participants.png"), full_page=True)
            page.once("dialog", lambda d: d.accept())
            panel.locator(f'[data-remove="{gone}"]').click()
            done = page.locator("#participants .notice.ok")
            expect(done).to_contain_text("202 was removed from the conference")
            expect(panel.locator("tbody tr")).to_have_count(1)
            page.click("#room-lock")
            expect(page.locator("#participants .notice.ok")).to_contain_text("The room is locked")
            expect(page.locator("#room-locked")).to_have_text("locked")
            assert api.get("/api/conferences/team").json()["locked"] is True
            page.click("#room-lock")
            expect(page.locator("#participants .notice.ok")).to_contain_text("The room is unlocked")
            assert api.get("/api/conferences/team").json()["locked"] is False
        finally:
            browser.close()
    second.wait_for("call_state", is_ended, timeout=10.0)
    assert [r["caller"] for r in listed(api, "team", lambda rows: len(rows) == 1)] == ["201"]
    *_, event = api.get("/api/audit", params={"action": "conference."}).json()  # newest first
    assert event["action"] == "conference.participant_removed", event
    assert event["actor"] == f"user:{user_id} ({EMAIL})" and event["detail"]["participant"] == gone, event
    first.hangup()
    first.wait_for("call_state", is_ended, timeout=10.0)
