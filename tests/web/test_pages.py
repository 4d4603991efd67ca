"""The web admin's pages over plain HTTP (no browser): what the server answers before any script runs.

Without a session a page redirects to the login (keeping where the user wanted to go); with one, a page
the user's permissions do not allow is a 403; the shell loads only this origin's files (a strict CSP);
the static files are the package's own and every one of them ships in a non-editable install
(pyproject's package-data).
"""

from __future__ import annotations

import contextlib
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.api.app import create_app
from engine.store import Store
from engine.store.admin import AdminStore
from engine.web.pages import PAGES, STATIC_DIR, WEB_ROUTES
from tests.api.conftest import ServerThread

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    store = Store.open(tmp_path, None)
    _, token = AdminStore(store).bootstrap_admin("owner@example.com")
    srv = ServerThread(create_app(store, pages=WEB_ROUTES))
    try:
        yield srv.base_url, token
    finally:
        srv.stop()
        store.close()


@contextlib.contextmanager
def _session(base: str, token: str, permissions: list[str]) -> Iterator[httpx.Client]:
    """A logged-in browser-like client of a new user with custom ``permissions`` (or none)."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
        body = {"first_name": "Web", "last_name": "User", "email": "web@example.com", "allow_web_login": True}
        user = c.post("/api/users", json=body).json()["user"]
        if permissions:
            rights = {"role": "custom", "permissions": permissions}
            assert c.patch(f"/api/users/{user['id']}", json={"admin": rights}).status_code == 200
        invite = c.post(f"/api/users/{user['id']}/login-invitation").json()["token"]
    with httpx.Client(base_url=base, timeout=30) as client:
        done = client.post(
            "/api/login/register", json={"token": invite, "email": "web@example.com", "password": PASSWORD}
        )
        assert done.status_code == 201, done.text
        login = client.post("/api/login", json={"email": "web@example.com", "password": PASSWORD})
        assert login.status_code == 200, login.text
        yield client


def test_without_a_session_every_page_redirects_to_the_login(server: tuple[str, str]) -> None:
    base, _ = server
    for page in PAGES:
        r = httpx.get(f"{base}/{page}")
        assert (r.status_code, r.headers["location"]) == (303, f"/login?next=/{page}")
    assert httpx.get(f"{base}/").headers["location"] == "/login"
    login = httpx.get(f"{base}/login")
    assert login.status_code == 200 and '<script type="module" src="/static/app.js">' in login.text
    assert httpx.get(f"{base}/nosuchpage").status_code == 404


def test_a_page_the_permissions_do_not_allow_is_403(server: tuple[str, str]) -> None:
    base, token = server
    with _session(base, token, ["view_reports"]) as c:
        for page, needed in PAGES.items():
            r = c.get(f"/{page}")
            expected = 200 if needed in ("view_reports", "authenticated") else 403
            assert r.status_code == expected, page
            config = json.loads(re.search(r'id="pbx-config">(.*?)</script>', r.text)[1])  # type: ignore[index]
            assert config == {"pages": PAGES, "status": "ok" if expected == 200 else "forbidden"}
        assert c.get("/api/users").status_code == 403  # the API behind the page agrees


def test_a_user_without_admin_rights_sees_only_their_settings(server: tuple[str, str]) -> None:
    base, token = server
    with _session(base, token, []) as c:
        allowed = [page for page in PAGES if c.get(f"/{page}").status_code == 200]
        assert allowed == ["settings"]


def test_the_shell_loads_only_this_origins_files(server: tuple[str, str]) -> None:
    base, _ = server
    r = httpx.get(f"{base}/login")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for path in STATIC_DIR.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"https?://", text), f"{path} refers to another site"
            served = httpx.get(f"{base}/static/{path.relative_to(STATIC_DIR).as_posix()}")
            assert served.status_code == 200 and served.content == path.read_bytes()
    assert httpx.get(f"{base}/static/../pages.py").status_code == 404
    # The API-doc viewers loaded their scripts from CDNs: only the document itself is served now.
    assert httpx.get(f"{base}/api/openapi.json").status_code == 200
    for viewer in ("swagger", "redoc", "rapidoc", "elements", "scalar"):
        assert httpx.get(f"{base}/api/{viewer}").status_code == 404, viewer
    assert "html" not in httpx.get(f"{base}/api").headers["content-type"]  # the JSON document, no viewer


def test_every_static_file_ships_in_the_package() -> None:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "engine"
    ]
    package = REPO / "engine"
    files = [p.relative_to(package).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files
    shipped = {p.relative_to(package).as_posix() for pattern in patterns for p in package.glob(pattern)}
    missing = [f for f in files if f not in shipped]  # globbed as setuptools does (``*`` stays in a folder)
    assert missing == [], f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def test_one_string_table_per_language_with_the_same_keys() -> None:
    tables = {
        p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (STATIC_DIR / "strings").glob("*.json")
    }
    assert sorted(tables) == ["de", "en"]
    assert sorted(tables["de"]) == sorted(tables["en"])
    assert all(isinstance(v, str) and v.strip() for t in tables.values() for v in t.values())
    untranslated = [
        k for k in tables["en"] if tables["de"][k] == tables["en"][k] and len(tables["en"][k]) > 12
    ]
    assert untranslated == []
