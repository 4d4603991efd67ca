"""Desk phones in the web admin (real chromium): add one by MAC (a bad MAC's 422 shown next to the field),
the provisioning URL and credentials the page shows fetch the phone's file from this server, a line put on
the phone and taken off again, and the phone deleted; each step checked through the API; German labels.
"""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.web.conftest import Site, login, shot

MAC = "805ec0aabb01"


def _line(site: Site, extension: str) -> dict[str, object]:
    with site.api() as c:
        (line,) = [x for x in c.get("/api/lines").json() if x["extension"] == extension]
        return dict(line)


def test_add_assign_provision_unassign_delete(page: Page, site: Site) -> None:
    with site.api() as c:
        for first, ext, soft in (("Dora", "360", True), ("Dirk", "361", False)):
            body = {"first_name": first, "last_name": "Desk", "extension": ext, "softphone": soft}
            assert c.post("/api/users", json=body).status_code == 201
    login(page, "owner@example.com", "/devices")
    expect(page.locator("main h1")).to_have_text("Desk phones")
    page.click("#device-add")
    form = page.locator("#device-form")
    page.fill("#f-mac", "80:5E:C0:AA:BB")  # five pairs
    page.click("#device-save")
    expect(form.locator('[data-error-for="mac"]')).to_contain_text("is not a MAC address")
    expect(form.locator('[data-field="mac"]')).to_have_class("field invalid")
    shot(page, site, "50-device-error")
    page.fill("#f-mac", "80:5E:C0:AA:BB:01")
    page.fill("#f-model", "T54W")
    page.click("#device-save")
    secret = page.locator("#device-secret")
    expect(secret).to_contain_text("Desk phone 80:5E:C0:AA:BB:01 was added")
    password = secret.locator("[data-password]").inner_text()
    url = secret.locator("[data-url]").inner_text()
    assert url == f"{site.base_url}/prov/"
    with site.api() as c:
        (device,) = c.get("/api/devices").json()
    assert (device["mac"], device["model"], device["line_ids"]) == (MAC, "T54W", [])
    row = page.locator("#device-list tr", has_text="80:5E:C0:AA:BB:01")
    expect(row).to_contain_text("T54W")
    detail = page.locator("#device-detail")
    expect(detail).to_contain_text(f"{MAC}.cfg")
    expect(detail).to_contain_text("No line on this phone yet.")
    # Put both lines on the phone: the softphone's line gets a new password, which the phone's file carries.
    page.click("#assign-save")  # nothing chosen
    expect(page.locator('#assign-form [data-error-for="line"]')).to_contain_text("choose a line")
    for ext in ("360", "361"):
        page.select_option("#f-line", label=f"{ext} {'Dora' if ext == '360' else 'Dirk'} Desk")
        page.click("#assign-save")
        done = f"Line {ext} is now on desk phone 80:5E:C0:AA:BB:01"
        expect(page.locator(".notice.ok")).to_contain_text(done)
    for ext in ("360", "361"):
        assert _line(site, ext)["device_id"] == device["id"]
    expect(row).to_contain_text("360 Dora Desk, 361 Dirk Desk")
    shot(page, site, "51-device-detail")
    bare = httpx.get(f"{url}{MAC}.cfg")
    assert bare.status_code == 401
    fetched = httpx.get(f"{url}{MAC}.cfg", auth=(MAC, password))
    assert fetched.status_code == 200, fetched.text
    assert "account.1.user_name = 360" in fetched.text and "account.2.user_name = 361" in fetched.text
    # Take 361 off again.
    page.locator('[data-unassign="361"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("Line 361 was taken off desk phone 80:5E:C0:AA:BB:01")
    assert _line(site, "361")["device_id"] is None and _line(site, "360")["device_id"] == device["id"]
    with site.api() as c:
        assert c.get(f"/api/devices/{device['id']}").json()["line_ids"] == [_line(site, "360")["id"]]
    on_phone = page.locator("#device-detail [data-unassign]")
    expect(on_phone).to_have_count(1)
    expect(on_phone).to_have_attribute("data-unassign", "360")
    page.once("dialog", lambda d: d.accept())
    page.locator(f'[data-delete="{MAC}"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("Desk phone 80:5E:C0:AA:BB:01 was deleted")
    expect(page.locator("#device-list")).to_contain_text("No desk phones yet.")
    with site.api() as c:
        assert c.get("/api/devices").json() == []
    assert _line(site, "360")["device_id"] is None  # the line stays, without a phone


def test_german_devices_page(page: Page, site: Site) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/devices")
    expect(page.locator("main h1")).to_have_text("Tischtelefone")
    page.click("#device-add")
    expect(page.locator('label[for="f-mac"]')).to_have_text("MAC-Adresse des Tischtelefons")
    shot(page, site, "52-devices-de")
