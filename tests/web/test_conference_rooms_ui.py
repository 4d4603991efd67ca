"""Conference rooms in the web admin (real chromium): list, add (the compiler's 422s next to the fields they
name: a PIN that is not 4-10 digits, a waiting room without a host PIN), edit and delete, each checked
through the API; without a call engine in the process the live participants say they cannot be shown.
The live participants of a room with phones in it, removed from the page: tests/integration/
test_conference_participants.py. German labels.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import Site, login, shot


def _room(site: Site, name: str) -> dict[str, object]:
    with site.api() as c:
        r = c.get(f"/api/routing/conference_rooms/{name}")
        assert r.status_code == 200, r.text
        spec: dict[str, object] = r.json()["spec"]
        return spec


def test_rooms_list_add_edit_delete(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/conference-rooms")
    expect(page.locator("#room-list")).to_contain_text("No conference rooms yet.")
    page.click("#room-add")
    form = page.locator("#room-form")
    page.fill("#f-name", "board")
    page.fill("#f-extension", "750")
    page.fill("#f-participant_pin", "12")
    page.fill("#f-host_pin", "98765")
    page.check("#f-enter_muted")
    page.click("#room-save")
    expect(form.locator('[data-error-for="participant_pin"]')).to_contain_text("must be 4-10 digits")
    expect(form.locator('[data-error-for="host_pin"]')).to_be_empty()
    page.fill("#f-participant_pin", "1234")
    page.fill("#f-host_pin", "")
    page.check("#f-waiting_room")  # a waiting room needs a host: only the host PIN makes one
    page.click("#room-save")
    expect(form.locator('[data-error-for="waiting_room"]')).to_contain_text("needs a host_pin")
    shot(page, site, "60-room-errors")
    page.fill("#f-host_pin", "98765")
    page.check("#f-end_with_last_host")
    page.click("#room-save")
    expect(page.locator(".notice.ok")).to_contain_text("Conference room board was saved")
    row = page.locator("#room-list tr", has_text="board")
    expect(row).to_contain_text("participant PIN, host PIN")
    expect(row).to_contain_text("waiting room, enter muted, ends with the last host")
    assert _room(site, "board") == {
        "name": "board",
        "extension": "750",
        "participant_pin": "1234",
        "host_pin": "98765",
        "waiting_room": True,
        "enter_muted": True,
        "end_with_last_host": True,
    }
    # Edit: filled in; no participant PIN, not muted, announced.
    row.locator('[data-edit="board"]').click()
    expect(page.locator("#f-host_pin")).to_have_value("98765")
    expect(page.locator("#f-enter_muted")).to_be_checked()
    page.fill("#f-participant_pin", "")
    page.uncheck("#f-enter_muted")
    page.check("#f-announce_participants")
    shot(page, site, "61-room-edit")
    page.click("#room-save")
    expect(page.locator(".notice.ok")).to_contain_text("Conference room board was saved")
    spec = _room(site, "board")
    assert "participant_pin" not in spec and "enter_muted" not in spec
    assert spec["announce_participants"] is True
    assert spec["waiting_room"] is True and spec["host_pin"] == "98765"
    # No call engine runs with this admin server: the live list says so.
    page.locator('[data-participants="board"]').click()
    expect(page.locator("#participants")).to_contain_text("no call engine runs with this admin server")
    page.once("dialog", lambda d: d.accept())
    page.locator('[data-delete="board"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("board was deleted")
    with site.api() as c:
        assert c.get("/api/routing/conference_rooms").json() == []


def test_german_conference_rooms(page: Page, site: Site) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/conference-rooms")
    expect(page.locator("main h1")).to_have_text("Konferenzräume")
    page.click("#room-add")
    expect(page.locator('label[for="f-host_pin"]')).to_have_text("Moderator-PIN")
    muted = page.locator('label[for="f-enter_muted"]')
    expect(muted).to_have_text("Teilnehmer sind beim Eintritt stummgeschaltet")
    shot(page, site, "62-rooms-de")
