"""Schedules in chromium: the weekly open/closed grid and holidays entered in the form, a bad time zone's
error next to its field first, then saved and edited; checked through the API; German day names.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import Site, login, shot


def test_add_and_edit_a_schedule(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/schedules")
    page.click("#schedule-add")
    page.fill("#f-name", "office")
    page.fill("#f-timezone", "Europe/Atlantis")
    for day in ("mon", "tue", "wed", "thu", "fri"):
        page.check(f'[name="open.{day}.open"]')
    page.fill('[name="open.fri.to"]', "14:00")
    page.fill("#f-holidays", "2026-12-24 2026-12-26 Christmas\n2027-01-01 New Year")
    page.click("#schedule-save")
    expect(page.locator('#schedule-form [data-error-for="timezone"]')).not_to_be_empty()
    page.fill("#f-timezone", "Europe/Berlin")
    page.click("#schedule-save")
    expect(page.locator(".notice.ok")).to_contain_text("Schedule office was saved")
    with site.api() as c:
        spec = c.get("/api/routing/schedules/office").json()["spec"]
    week = [{"days": [d], "from": "08:00", "to": "18:00"} for d in ("mon", "tue", "wed", "thu")]
    assert spec["open"] == [*week, {"days": ["fri"], "from": "08:00", "to": "14:00"}]
    assert spec["holidays"] == [
        {"from": "2026-12-24", "to": "2026-12-26", "name": "Christmas"},
        {"from": "2027-01-01", "name": "New Year"},
    ]
    assert spec["timezone"] == "Europe/Berlin" and spec["override"] == "none"
    page.click('[data-edit="office"]')
    expect(page.locator('[name="open.fri.to"]')).to_have_value("14:00")
    expect(page.locator('[name="open.sat.open"]')).not_to_be_checked()
    page.check('[name="open.sat.open"]')
    page.fill('[name="open.sat.from"]', "10:00")
    page.fill('[name="open.sat.to"]', "13:00")
    page.select_option("#f-override", "closed")
    shot(page, site, "60-schedule-edit")
    page.click("#schedule-save")
    expect(page.locator(".notice.ok")).to_contain_text("Schedule office was saved")
    with site.api() as c:
        spec = c.get("/api/routing/schedules/office").json()["spec"]
    assert (
        spec["open"][-1] == {"days": ["sat"], "from": "10:00", "to": "13:00"} and spec["override"] == "closed"
    )
    assert len(spec["holidays"]) == 2


def test_german_schedules(page: Page, site: Site) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/schedules")
    expect(page.locator("main h1")).to_have_text("Zeitpläne")
    page.click("#schedule-add")
    expect(page.locator('tr[data-day="wed"]')).to_contain_text("Mittwoch")
    shot(page, site, "61-schedule-de")
