"""The users page's bulk edit and web-login invitation in chromium: the guide's fields (dialable username and
password, web login, groups, hot desking) for several selected users in one save, a bad row's error shown
in that row and nothing saved; then the invitation link from the page, registered and logged in with.
"""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.web.conftest import PASSWORD, Site, login, shot


def _users(site: Site) -> dict[str, dict[str, object]]:
    with site.api() as c:
        return {u["first_name"]: u for u in c.get("/api/users").json()}


def test_bulk_edit_several_users(page: Page, site: Site) -> None:
    with site.api() as c:
        for first in ("Ben", "Cara"):
            body = {"first_name": first, "last_name": "Bulk", "email": f"{first.lower()}@example.com"}
            assert c.post("/api/users", json=body).status_code == 201
    ids = {name: u["id"] for name, u in _users(site).items()}
    login(page, "owner@example.com", "/users")
    expect(page.locator("#bulk-edit")).to_be_disabled()
    page.check(f'[data-select="{ids["Ben"]}"]')
    page.check(f'[data-select="{ids["Cara"]}"]')
    page.click("#bulk-edit")
    form = page.locator("#bulk-form")
    expect(form.locator("h2")).to_have_text("Edit 2 users")
    page.fill('[name="0.dial_username"]', "4101")
    page.fill('[name="0.dial_password"]', "2468")
    page.fill('[name="0.groups"]', "sales, berlin")
    page.check('[name="0.hot_desking"]')
    page.check('[name="0.allow_web_login"]')
    page.fill('[name="1.dial_username"]', "41x2")  # not digits
    page.fill('[name="1.groups"]', "support")
    page.click("#bulk-save")
    expect(form.locator('[data-error-for="1.dial_username"]')).to_contain_text("digits only")
    expect(form.locator('[data-error-for="0.dial_username"]')).to_be_empty()
    shot(page, site, "30-bulk-error")
    assert _users(site)["Ben"]["groups"] == []  # all or nothing: the good row was not saved either
    page.fill('[name="1.dial_username"]', "4102")
    page.click("#bulk-save")
    expect(page.locator(".notice.ok")).to_contain_text("2 users were saved")
    users = _users(site)
    ben, cara = users["Ben"], users["Cara"]
    assert (ben["dial_username"], ben["groups"], ben["hot_desking"], ben["allow_web_login"]) == (
        "4101",
        ["berlin", "sales"],
        True,
        True,
    )
    assert (cara["dial_username"], cara["groups"], cara["hot_desking"], cara["allow_web_login"]) == (
        "4102",
        ["support"],
        False,
        False,
    )
    shot(page, site, "31-users-bulk-saved")


def test_invite_to_web_login_from_the_users_page(page: Page, site: Site) -> None:
    with site.api() as c:
        body = {
            "first_name": "Dora",
            "last_name": "Invite",
            "email": "dora@example.com",
            "allow_web_login": True,
        }
        assert c.post("/api/users", json=body).status_code == 201
    dora = _users(site)["Dora"]
    login(page, "owner@example.com", "/users")
    page.click(f'[data-invite="{dora["id"]}"]')
    expect(page.locator("#invitation")).to_contain_text("Send Dora Invite this link")
    link = page.locator("#invitation-link").get_attribute("href")
    assert link is not None and link.startswith(f"{site.base_url}/register?token=")
    shot(page, site, "32-invitation")
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible()
    page.goto(link)
    page.fill("#f-email", "dora@example.com")
    page.fill("#f-password", PASSWORD)
    page.click("#register-submit")
    expect(page.locator("#login-message")).to_contain_text("Your password is set")
    assert _users(site)["Dora"]["registered"] is True
    r = httpx.post(f"{site.base_url}/api/login", json={"email": "dora@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text


def test_german_bulk_edit(page: Page, site: Site) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/users")
    expect(page.locator("#bulk-edit")).to_have_text("Auswahl bearbeiten")
    page.locator("[data-select]").first.check()
    page.click("#bulk-edit")
    expect(page.locator('label[for="f-0-dial_username"]')).to_have_text("Wählbarer Benutzername")
    shot(page, site, "33-bulk-de")
