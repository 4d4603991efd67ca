"""The web admin in Debian's chromium, driven by Playwright, against the real app on 127.0.0.1 over SQLite.

One browser for the module (a fresh context, so a fresh cookie jar, per test). The walk: log in; the
navigation of a super admin; add a user with a desk phone by MAC and custom permissions, with the API's
field errors for a bad MAC and a bad e-mail shown next to those fields first; route a number to a dial
plan; add a location (a bad postal code first); a "view reports"-only user sees the call reports and his
own settings and nothing else, and a direct URL to another page is refused by the page and by the API;
a session that expires while a form is being filled sends the user to the login and the form comes back
filled; German; logout. Screenshots of each page go to ``PBX_WEB_SCREENSHOTS`` (default: the module's
pytest tmp dir), for a person to look at.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from engine.api.sessions import SESSION_TTL_S
from tests.integration.harness import run_pbx
from tests.web.conftest import NUMBER, PASSWORD, Site, login, nav, shot


def test_login_page_then_a_super_admin_sees_every_page(page: Page, site: Site) -> None:
    page.goto("/users")
    assert page.url.endswith("/login?next=/users")  # the server sent us to the login
    shot(page, site, "01-login")
    page.fill("#login-email", "owner@example.com")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    expect(page.locator("#login-message")).to_contain_text("Wrong e-mail address or password")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("h1")).to_have_text("Users")
    assert page.url.endswith("/users")
    assert nav(page) == [
        "users",
        "lines",
        "devices",
        "numbers",
        "ring-groups",
        "queues",
        "conference-rooms",
        "fax-lines",
        "faxes",
        "schedules",
        "sound-clips",
        "locations",
        "reports",
        "billing",
        "settings",
    ]
    expect(page.locator("header.top .who")).to_have_text("Olivia Owner")
    for name in ["ring-groups", "reports", "billing", "settings"]:
        page.click(f'nav.side a[data-page="{name}"]')
        expect(page.locator(f'nav.side a.active[data-page="{name}"]')).to_be_visible()
        expect(page.locator("main h1")).to_be_visible()
        shot(page, site, f"02-{name}")
    expect(page.locator("#call-list")).to_be_hidden()  # left the reports page


def test_add_a_user_with_a_desk_phone_and_custom_permissions(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/users")
    with site.api() as c:
        proposed = c.get("/api/users/next-extension").json()["extension"]
    page.click("#user-add")
    expect(page.locator("#f-extension")).to_have_value(proposed)  # the next free extension, filled in
    page.fill("#f-first_name", "Anna")
    page.fill("#f-last_name", "Schmidt")
    page.fill("#f-email", "anna@example.com")
    page.check("input[name=phone][value=desk]")
    page.fill('[id="f-desk_phone-mac"]', "80:5E:C0:11:22")  # one byte short
    page.fill('[id="f-desk_phone-model"]', "T54W")
    page.check("input[name=role][value=custom]")
    page.check("input[name=permission][value=configure_pbx]")
    page.check("input[name=permission][value=view_reports]")
    page.click("#user-save")
    mac_error = page.locator('[data-error-for="desk_phone.mac"]')
    expect(mac_error).not_to_be_empty()
    expect(page.locator('[data-field="desk_phone.mac"]')).to_have_class("field invalid")
    shot(page, site, "03-user-mac-error")
    page.fill('[id="f-desk_phone-mac"]', "80:5E:C0:11:22:33")
    page.fill("#f-email", "anna-at-example.com")
    page.click("#user-save")
    expect(page.locator('[data-error-for="email"]')).not_to_be_empty()
    expect(mac_error).to_be_empty()  # the earlier error is gone
    page.fill("#f-email", "anna@example.com")
    page.click("#user-save")
    created = page.locator("#user-created")
    expect(created).to_contain_text(f"Anna Schmidt was added with extension {proposed}")
    expect(created.locator(".secret")).to_have_count(2)  # SIP and provisioning passwords, shown once
    expect(page.locator("#user-list")).to_contain_text("Configure PBX, View reports")
    shot(page, site, "04-users")
    with site.api() as c:
        anna = next(u for u in c.get("/api/users").json() if u["email"] == "anna@example.com")
        devices = c.get("/api/devices").json()
    assert anna["admin"] == {"role": "custom", "permissions": ["configure_pbx", "view_reports"]}
    assert anna["lines"][0]["extension"] == proposed and anna["desk_phone"] is True
    assert [(d["mac"], d["model"]) for d in devices] == [("805ec0112233", "T54W")]


def test_route_a_number_to_a_dial_plan(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/numbers")
    row = page.locator("#number-list tr", has_text=NUMBER)
    expect(row).to_contain_text("not routed")
    shot(page, site, "05-numbers")
    row.locator(f'[data-route="{NUMBER}"]').click()
    form = page.locator(f'form[data-number="{NUMBER}"]')
    form.locator("select[name=kind]").select_option("number")
    form.locator("input[name=target]").fill("+19995550100")  # not one of the company's numbers
    form.locator("button[type=submit]").click()
    expect(form.locator('[data-error-for="target"]')).not_to_be_empty()
    form.locator("select[name=kind]").select_option("dial_plan")
    form.locator("select[name=target]").select_option("main")
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice.ok")).to_contain_text(f"{NUMBER} now rings Dial plan main")
    expect(page.locator("#number-list tr", has_text=NUMBER)).to_contain_text("Dial plan: main")
    with site.api() as c:
        number = next(n for n in c.get("/api/numbers").json() if n["number"] == NUMBER)
    assert (number["route_kind"], number["route_target"]) == ("dial_plan", "main")


def test_add_a_location(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/locations")
    page.fill("#f-name", "Head office")
    page.select_option("#f-country", "CA")
    page.fill("#f-street", "1 Main Street West")
    page.fill("#f-city", "Toronto")
    page.fill("#f-region", "ON")
    page.fill("#f-postal_code", "12345")  # a US ZIP, not a Canadian postal code
    page.click("#location-save")
    expect(page.locator('[data-error-for="postal_code"]')).not_to_be_empty()
    shot(page, site, "06-location-error")
    page.fill("#f-postal_code", "m5v2t6")
    page.click("#location-save")
    expect(page.locator(".notice.ok")).to_contain_text("Location Head office was added")
    expect(page.locator("#location-list")).to_contain_text("Toronto")
    shot(page, site, "07-locations")
    with site.api() as c:
        assert [loc["name"] for loc in c.get("/api/locations").json()] == ["Head office"]


def test_a_reports_only_user_sees_reports_and_nothing_else(page: Page, site: Site) -> None:
    login(page, "rita@example.com")
    assert page.url.endswith("/reports")  # the first page she may see
    assert nav(page) == ["reports", "settings"]
    calls = page.locator("#call-list tbody tr")
    expect(calls).to_have_count(2)
    expect(calls.first).to_contain_text("Olivia Owner")  # newest first
    expect(calls.nth(1)).to_contain_text("answered")
    page.select_option("select[name=disposition]", "answered")
    expect(calls).to_have_count(1)
    shot(page, site, "08-reports-only")
    for path in ["/users", "/numbers", "/locations", "/billing"]:
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        expect(page.locator("main h1")).to_have_text("Not allowed")
    shot(page, site, "09-forbidden")
    status = page.evaluate("fetch('/api/users').then(r => r.status)")
    assert status == 403  # and the API behind the page refuses her too
    page.goto("/settings")
    expect(page.locator("#account")).to_contain_text("rita@example.com")


def test_an_expired_session_goes_to_the_login_and_keeps_what_was_typed(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/users")
    page.click("#user-add")
    page.fill("#f-first_name", "Max")
    page.fill("#f-last_name", "Mustermann")
    page.fill("#f-email", "max@example.com")
    page.check("input[name=phone][value=softphone]")
    site.clock.advance(SESSION_TTL_S + 1)
    page.click("#user-save")
    expect(page.locator("#login-message")).to_contain_text("Your session has expired")
    page.fill("#login-email", "owner@example.com")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator(".notice.info")).to_contain_text("what you typed has been restored")
    expect(page.locator("#f-first_name")).to_have_value("Max")
    expect(page.locator("#f-email")).to_have_value("max@example.com")
    expect(page.locator("input[name=phone][value=softphone]")).to_be_checked()
    page.click("#user-save")
    expect(page.locator("#user-created")).to_contain_text("Max Mustermann was added")


def test_german_and_logout(page: Page, site: Site) -> None:
    login(page, "owner@example.com", "/users")
    page.select_option("#language", "de")
    expect(page.locator("main h1")).to_have_text("Benutzer")
    expect(page.locator('nav.side a[data-page="reports"]')).to_have_text("Anrufberichte")
    shot(page, site, "10-users-de")
    page.reload()
    expect(page.locator("#logout")).to_have_text("Abmelden")  # the choice is kept
    page.select_option("#language", "en")
    page.click("#logout")
    expect(page.locator("#login-form")).to_be_visible()
    page.goto("/users")
    assert "/login?next=/users" in page.url  # the session has ended on the server


def test_the_cli_invitation_link_sets_the_password_then_the_login_works(page: Page, site: Site) -> None:
    made = run_pbx(
        "admin", "invite", "--data-dir", str(site.data), "--email", "boss@example.com", "--url", site.base_url
    )
    link = made.stdout.strip()
    assert link.startswith(f"{site.base_url}/register?token=") and "super admin" in made.stderr
    page.goto(link)
    expect(page.locator("#register-form h1")).to_have_text("Set your password")
    page.fill("#f-email", "someone-else@example.com")
    page.fill("#f-password", PASSWORD)
    page.click("#register-submit")
    expect(page.locator('[data-error-for="email"]')).not_to_be_empty()  # not the invited address
    shot(page, site, "11-register")
    page.fill("#f-email", "boss@example.com")
    page.click("#register-submit")
    expect(page.locator("#login-message")).to_contain_text("Your password is set")
    expect(page.locator("#login-email")).to_have_value("boss@example.com")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("main h1")).to_have_text("Users")  # a super admin
