"""The web admin's browser fixtures: the real app on 127.0.0.1 over SQLite with a seeded company (an owner
and a reports-only user with web login, a number, a dial plan, two CDRs), Debian's chromium driven by
Playwright (a fresh context per test), the login, and screenshots checked for untranslated string keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from engine.api.app import create_app
from engine.clock import FakeClock
from engine.model import CallRecord, Direction, Disposition
from engine.provisioning import ProvisioningService
from engine.store import Store
from engine.store.admin import AdminStore
from engine.web.pages import WEB_ROUTES
from tests.api.conftest import ServerThread

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
NUMBER = "+12125550142"


@dataclass
class Site:
    base_url: str
    store: Store
    admin: AdminStore
    clock: FakeClock
    token: str
    shots: Path
    data: Path

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )


def _web_user(c: httpx.Client, user_id: int, email: str) -> None:
    """Give a user web login and register ``PASSWORD`` through the invitation, as the guide does."""
    assert c.patch(f"/api/users/{user_id}", json={"allow_web_login": True}).status_code == 200
    token = c.post(f"/api/users/{user_id}/login-invitation").json()["token"]
    done = httpx.post(
        f"{c.base_url}/api/login/register", json={"token": token, "email": email, "password": PASSWORD}
    )
    assert done.status_code == 201, done.text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("web-data")
    shots = Path(os.environ.get("PBX_WEB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    clock = FakeClock()
    store = Store.open(data, None)
    admin = AdminStore(store, clock)
    root, token = admin.bootstrap_admin("owner@example.com")
    provisioning = ProvisioningService(store, "127.0.0.1", 5060, clock=clock)
    server = ServerThread(create_app(store, clock=clock, pages=WEB_ROUTES, provisioning=provisioning))
    site = Site(server.base_url, store, admin, clock, token, shots, data)
    try:
        with site.api() as c:
            assert (
                c.patch(
                    f"/api/users/{root.id}", json={"first_name": "Olivia", "last_name": "Owner"}
                ).status_code
                == 200
            )
            _web_user(c, root.id, "owner@example.com")
            reporter = c.post(
                "/api/users", json={"first_name": "Rita", "last_name": "Report", "email": "rita@example.com"}
            ).json()["user"]
            rights = {"role": "custom", "permissions": ["view_reports"]}
            assert c.patch(f"/api/users/{reporter['id']}", json={"admin": rights}).status_code == 200
            _web_user(c, reporter["id"], "rita@example.com")
            assert c.post("/api/numbers/pool", json={"numbers": [NUMBER]}).status_code == 201
            assert c.post("/api/numbers/orders", json={"quantity": 1}).status_code == 201
            plan = {"name": "main", "graph": {"start": "bye", "nodes": {"bye": {"type": "hangup"}}}}
            assert c.post("/api/dial-plans", json=plan).status_code == 201
        wall = clock.wall()
        store.write_cdrs(
            [
                CallRecord(
                    "c1",
                    Direction.INBOUND,
                    "+12125550199",
                    "Pat Caller",
                    "201",
                    NUMBER,
                    "carrier",
                    wall - 600,
                    wall - 590,
                    wall - 470,
                    Disposition.ANSWERED,
                    200,
                    "caller hung up",
                ),
                CallRecord(
                    "c2",
                    Direction.INTERNAL,
                    "201",
                    "Olivia Owner",
                    "202",
                    None,
                    None,
                    wall - 300,
                    None,
                    wall - 280,
                    Disposition.NO_ANSWER,
                    480,
                    "ring timeout",
                ),
            ]
        )
        yield site
    finally:
        server.stop()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test.sh does)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    context = browser.new_context(
        base_url=site.base_url, locale="en-US", viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(10_000)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert errors == [], errors  # no script error on any page


def login(page: Page, email: str, next_path: str = "/") -> None:
    page.goto(next_path)
    expect(page.locator("#login-form")).to_be_visible()
    page.fill("#login-email", email)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("nav.side")).to_be_visible()


UNTRANSLATED = re.compile(
    r"\b(?:app|nav|top|login|users|numbers|kind|state|locations|country|ringgroups|reports|"
    r"direction|disposition|billing|settings|role|perm|error|queues|objects|lines|clips|schedules|day|devices|rooms|faxes|faxlines|voicemail)\.[a-z_-]+\b"
)


def shot(page: Page, site: Site, name: str) -> None:
    """A screenshot for people to look at; and no string key shows instead of its text."""
    page.screenshot(path=str(site.shots / f"{name}.png"), full_page=True)
    text = page.locator("body").inner_text()
    assert not UNTRANSLATED.search(text.replace("example.com", "")), UNTRANSLATED.search(text)


def nav(page: Page) -> list[str]:
    return page.locator("nav.side a").evaluate_all("links => links.map(a => a.dataset.page)")
