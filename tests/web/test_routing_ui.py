"""Ring groups and call queues in the web admin (real chromium): the guide's "Rufgruppen" step (add a group
with its members, strategy and ring times, then edit it) and the queue object of issue 12 (list, add,
edit, delete), each checked through the API; the dial-plan compiler's 422 field errors appear next to the
fields they name; German labels.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import Site, login, shot


@pytest.fixture(scope="module")
def lines(site: Site) -> Iterator[list[str]]:
    with site.api() as c:
        for first, ext in (("Jonas", "301"), ("Mia", "302"), ("Lea", "303")):
            body = {"first_name": first, "last_name": "Team", "extension": ext}
            assert c.post("/api/users", json=body).status_code == 201
    yield ["301", "302", "303"]


def _object(site: Site, kind: str, name: str) -> dict[str, object]:
    with site.api() as c:
        r = c.get(f"/api/routing/{kind}/{name}")
        assert r.status_code == 200, r.text
        spec: dict[str, object] = r.json()["spec"]
        return spec


def test_add_and_edit_a_ring_group(page: Page, site: Site, lines: list[str]) -> None:
    login(page, "owner@example.com", "/ring-groups")
    page.click("#ring-group-add")
    form = page.locator("#ring-group-form")
    page.fill("#f-name", "sales")
    page.fill("#f-extension", "300")
    page.fill("#f-ring_seconds", "45")
    page.click("#ring-group-save")  # no member chosen: the compiler's error shows next to the members
    expect(form.locator('[data-error-for="members"]')).to_contain_text("must be a non-empty list")
    expect(form.locator('[data-field="members"]')).to_have_class("field wide invalid")
    page.check("input[name=members][value='301']")
    page.check("input[name=members][value='302']")
    page.select_option("#f-strategy", "sequential")
    page.fill("#f-member_ring_seconds", "0")  # out of range
    page.click("#ring-group-save")
    expect(form.locator('[data-error-for="member_ring_seconds"]')).not_to_be_empty()
    expect(form.locator('[data-error-for="members"]')).to_be_empty()
    shot(page, site, "20-ring-group-error")
    page.fill("#f-member_ring_seconds", "15")
    page.click("#ring-group-save")
    expect(page.locator(".notice.ok")).to_contain_text("Ring group sales was saved")
    row = page.locator("#ring-group-list tr", has_text="sales")
    expect(row).to_contain_text("301, 302")
    expect(row).to_contain_text("one after another")
    assert _object(site, "ring_groups", "sales") == {
        "name": "sales",
        "extension": "300",
        "members": [{"line": "301"}, {"line": "302"}],
        "strategy": "sequential",
        "member_ring_seconds": 15,
        "ring_seconds": 45,
    }
    # Edit: the form comes filled in; another member, ring all, no total ring time.
    row.locator('[data-edit="sales"]').click()
    expect(page.locator("#f-extension")).to_have_value("300")
    expect(page.locator("input[name=members][value='302']")).to_be_checked()
    page.uncheck("input[name=members][value='301']")
    page.check("input[name=members][value='303']")
    page.select_option("#f-strategy", "ring_all")
    page.fill("#f-ring_seconds", "")
    shot(page, site, "21-ring-group-edit")
    page.click("#ring-group-save")
    expect(page.locator(".notice.ok")).to_contain_text("Ring group sales was saved")
    spec = _object(site, "ring_groups", "sales")
    assert spec["members"] == [{"line": "302"}, {"line": "303"}] and spec["strategy"] == "ring_all"
    assert "ring_seconds" not in spec and spec["member_ring_seconds"] == 15


def test_queues_list_add_edit_delete(page: Page, site: Site, lines: list[str]) -> None:
    login(page, "owner@example.com", "/queues")
    expect(page.locator("#queue-list")).to_contain_text("No call queues yet")
    page.click("#queue-add")
    form = page.locator("#queue-form")
    page.fill("#f-name", "support")
    page.check("input[name=agents][value='301']")
    page.check("input[name=agents][value='303']")
    page.select_option("#f-strategy", "round_robin")
    page.fill("#f-agent_ring_seconds", "1")  # below the 2 s minimum
    page.fill("#f-max_wait_seconds", "-5")
    page.fill("#f-exit_key", "x")
    page.click("#queue-save")
    # Every issue of the 422 next to its own field.
    for name in ("agent_ring_seconds", "max_wait_seconds", "exit_key"):
        expect(form.locator(f'[data-error-for="{name}"]')).not_to_be_empty()
    expect(form.locator('[data-error-for="wrap_up_seconds"]')).to_be_empty()
    shot(page, site, "22-queue-errors")
    page.fill("#f-agent_ring_seconds", "12")
    page.fill("#f-wrap_up_seconds", "5")
    page.fill("#f-max_wait_seconds", "90")
    page.fill("#f-max_callers", "4")
    page.fill("#f-exit_key", "0")
    page.select_option('select[name="exit.kind"]', "voicemail")
    page.select_option('select[name="exit.target"]', "302")
    page.click("#queue-save")
    expect(page.locator(".notice.ok")).to_contain_text("Queue support was saved")
    expect(page.locator("#queue-list tr", has_text="support")).to_contain_text("301, 303")
    shot(page, site, "23-queues")
    assert _object(site, "queues", "support") == {
        "name": "support",
        "agents": [{"line": "301"}, {"line": "303"}],
        "strategy": "round_robin",
        "agent_ring_seconds": 12,
        "wrap_up_seconds": 5,
        "max_wait_seconds": 90,
        "max_callers": 4,
        "exit_key": "0",
        "exit": {"kind": "voicemail", "target": "302"},
    }
    page.locator('[data-edit="support"]').click()
    expect(page.locator('select[name="exit.target"]')).to_have_value("302")
    page.select_option("#f-strategy", "least_recent")
    page.select_option('select[name="exit.kind"]', "ring_group")
    page.click("#queue-save")
    expect(page.locator(".notice.ok")).to_contain_text("Queue support was saved")
    spec = _object(site, "queues", "support")
    assert spec["strategy"] == "least_recent" and spec["exit"] == {"kind": "ring_group", "target": "sales"}
    page.once("dialog", lambda d: d.accept())
    page.locator('[data-delete="support"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("support was deleted")
    with site.api() as c:
        assert c.get("/api/routing/queues").json() == []


def test_german_ring_groups_and_queues(page: Page, site: Site, lines: list[str]) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/queues")
    expect(page.locator("main h1")).to_have_text("Warteschlangen")
    page.click("#queue-add")
    expect(page.locator('label[for="f-wrap_up_seconds"]')).to_have_text(
        "Nachbearbeitungszeit nach einem Anruf (Sekunden)"
    )
    shot(page, site, "24-queue-de")
    page.click('nav.side a[data-page="ring-groups"]')
    expect(page.locator("main h1")).to_have_text("Rufgruppen")
    page.click("#ring-group-add")
    expect(page.locator("#f-strategy option:checked")).to_have_text("alle gleichzeitig")
    shot(page, site, "25-ring-group-de")
