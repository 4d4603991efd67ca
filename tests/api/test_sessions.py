"""Web-login sessions over HTTP (SQLite and PostgreSQL): log in with e-mail and password, an HttpOnly
SameSite=Strict cookie stored only as a digest, the user's permissions, the CSRF token on changes,
expiry on an injected clock, logout, a password change ending the other sessions, throttled failures.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from engine.api.app import create_app
from engine.api.sessions import CSRF_HEADER, MAX_FAILURES, SESSION_COOKIE, csrf_token
from engine.clock import FakeClock
from engine.store import Store, schema
from engine.store.admin import AdminStore
from tests.api.conftest import ServerThread

TTL_S = 3600.0
PASSWORD = "a long enough secret"


@dataclass
class Rig:
    base_url: str
    store: Store
    clock: FakeClock
    root: str  # the super admin's API token
    user_id: int
    email: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def admin(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.root}"}
        return httpx.Client(base_url=self.base_url, timeout=30, headers=auth)

    def login(self, c: httpx.Client, password: str = PASSWORD) -> httpx.Response:
        return c.post("/api/login", json={"email": self.email, "password": password})


@pytest.fixture
def rig(data_dir: Path, db_url: str | None) -> Iterator[Rig]:
    """A server on an injected clock; Leonie may log in and has registered with ``PASSWORD``."""
    clock = FakeClock()
    store = Store.open(data_dir, db_url)
    _, root = AdminStore(store, clock).bootstrap_admin("root@example.com")
    server = ServerThread(create_app(store, clock=clock, session_ttl_s=TTL_S))
    try:
        with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {root}"}) as c:
            made = c.post(
                "/api/users",
                json={
                    "first_name": "Leonie",
                    "last_name": "Wagner",
                    "email": "leonie@example.com",
                    "allow_web_login": True,
                },
            )
            assert made.status_code == 201, made.text
            user_id = made.json()["user"]["id"]
            invite = c.post(f"/api/users/{user_id}/login-invitation").json()["token"]
        with httpx.Client(base_url=server.base_url) as anonymous:
            done = anonymous.post(
                "/api/login/register",
                json={"token": invite, "email": "leonie@example.com", "password": PASSWORD},
            )
            assert done.status_code == 201, done.text
        yield Rig(server.base_url, store, clock, root, user_id, "leonie@example.com")
    finally:
        server.stop()
        store.close()


def stored_hashes(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(schema.web_sessions.c.token_hash)).scalars())


def test_login_sets_an_httponly_strict_cookie_stored_only_as_a_digest(rig: Rig) -> None:
    with rig.client() as c:
        r = rig.login(c)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["user_id"], body["email"], body["role"]) == (rig.user_id, rig.email, "none")
        assert body["expires_at"] == rig.clock.wall() + TTL_S
        cookie = r.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "max-age"} <= attributes and "secure" not in attributes  # plain HTTP
        assert "samesite=strict" in cookie.lower() and "path=/;" in cookie.lower() + ";"
        assert f"max-age={int(TTL_S)}" in cookie.lower()
        assert r.headers["cache-control"] == "no-store"
        secret = c.cookies[SESSION_COOKIE]
        assert len(secret) == 64 and body["csrf_token"] == csrf_token(secret)
        # At rest: only the digest (and nowhere the secret itself).
        assert hashlib.sha256(secret.encode()).hexdigest() in stored_hashes(rig.store)
        with rig.store.engine.connect() as conn:
            for table in schema.metadata.sorted_tables:
                for row in conn.execute(sa.select(table)).all():
                    assert secret not in json.dumps([str(v) for v in row]), table.name
                    assert PASSWORD not in json.dumps([str(v) for v in row]), table.name
        me = c.get("/api/me")
        assert me.status_code == 200 and me.json()["user_id"] == rig.user_id
    with rig.admin() as a:
        audit = a.get("/api/audit", params={"action": "session."}).json()
        assert [x["action"] for x in audit] == ["session.login"]
        listed = a.get("/api/tokens").json()
        assert listed and all(t["name"] != "web session" for t in listed)  # sessions are no API tokens


def test_wrong_credentials_get_the_same_401(rig: Rig) -> None:
    with rig.client() as c:
        answers = [
            c.post("/api/login", json={"email": rig.email, "password": "not the password"}),
            c.post("/api/login", json={"email": "nobody@example.com", "password": PASSWORD}),
            c.post("/api/login", json={"email": "root@example.com", "password": PASSWORD}),  # unregistered
            c.post("/api/login", json={"email": "not an address", "password": PASSWORD}),
        ]
        assert [a.status_code for a in answers] == [401] * len(answers)
        assert len({a.json()["detail"] for a in answers}) == 1
        assert SESSION_COOKIE not in c.cookies
        assert c.post("/api/login", json={"email": rig.email}).status_code == 400
        surrogate = c.post(  # a lone surrogate, escaped in the JSON text: a bad body, not a crash
            "/api/login",
            content=b'{"email": "leonie@example.com", "password": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        assert surrogate.status_code in (400, 401)


def test_a_session_has_the_users_permissions_and_changes_need_the_csrf_token(rig: Rig) -> None:
    with rig.client() as c:
        csrf = rig.login(c).json()["csrf_token"]
        assert c.get("/api/users").status_code == 403  # no admin rights
        with rig.admin() as a:
            grant = {"admin": {"role": "custom", "permissions": ["configure_pbx"]}}
            assert a.patch(f"/api/users/{rig.user_id}", json=grant).status_code == 200
        assert c.get("/api/users").status_code == 200  # rights are read per request
        body = {"first_name": "New", "last_name": "User"}
        missing = c.post("/api/users", json=body)
        assert missing.status_code == 403 and CSRF_HEADER in missing.json()["detail"]
        forged = c.post("/api/users", json=body, headers={CSRF_HEADER: "0" * 64})
        assert forged.status_code == 403
        assert c.delete(f"/api/users/{rig.user_id}").status_code == 403
        ok = c.post("/api/users", json=body, headers={CSRF_HEADER: csrf})
        assert ok.status_code == 201, ok.text
        audit = c.get("/api/audit", params={"action": "user.create"}).json()
        assert audit[0]["actor"] == f"user:{rig.user_id} ({rig.email})"


def test_a_session_is_not_a_bearer_token_nor_the_other_way_round(rig: Rig) -> None:
    with rig.client() as c:
        rig.login(c)
        secret = c.cookies[SESSION_COOKIE]
    with httpx.Client(base_url=rig.base_url, headers={"Authorization": f"Bearer {secret}"}) as b:
        assert b.get("/api/me").status_code == 401
    with httpx.Client(base_url=rig.base_url, cookies={SESSION_COOKIE: rig.root}) as k:
        assert k.get("/api/me").status_code == 401
    with httpx.Client(base_url=rig.base_url, cookies={SESSION_COOKIE: "x" * 64}) as k:
        assert k.get("/api/me").status_code == 401


def test_sessions_expire(rig: Rig) -> None:
    with rig.client() as c:
        rig.login(c)
        rig.clock.advance(TTL_S - 1)
        assert c.get("/api/me").status_code == 200
        rig.clock.advance(1)
        expired = c.get("/api/me")
        assert expired.status_code == 401 and "log in again" in expired.json()["detail"]
        before = len(stored_hashes(rig.store))
        rig.login(c)  # a new login clears the expired sessions
        assert len(stored_hashes(rig.store)) == before
        assert c.get("/api/me").status_code == 200


def test_logout_ends_the_session_and_clears_the_cookie(rig: Rig) -> None:
    with rig.client() as c:
        csrf = rig.login(c).json()["csrf_token"]
        secret = c.cookies[SESSION_COOKIE]
        assert c.post("/api/logout").status_code == 403  # a change: the CSRF token is needed
        out = c.post("/api/logout", headers={CSRF_HEADER: csrf})
        assert out.status_code == 204
        assert SESSION_COOKIE in out.headers["set-cookie"] and SESSION_COOKIE not in c.cookies
    with httpx.Client(base_url=rig.base_url, cookies={SESSION_COOKIE: secret}) as replay:
        assert replay.get("/api/me").status_code == 401
    with rig.admin() as a:
        actions = [x["action"] for x in a.get("/api/audit", params={"action": "session."}).json()]
        assert actions == ["session.logout", "session.login"]
        assert a.post("/api/logout").status_code == 204  # an API token: nothing to end
        assert a.get("/api/me").status_code == 200


def test_a_password_change_ends_the_other_sessions(rig: Rig) -> None:
    with rig.client() as one, rig.client() as two:
        csrf = rig.login(one).json()["csrf_token"]
        rig.login(two)
        wrong = one.post(
            "/api/me/password",
            json={"current_password": "guess guess guess", "new_password": "another long secret"},
            headers={CSRF_HEADER: csrf},
        )
        assert wrong.status_code == 422 and wrong.json()["field"] == "current_password"
        weak = one.post(
            "/api/me/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers={CSRF_HEADER: csrf},
        )
        assert weak.status_code == 422 and weak.json()["field"] == "new_password"
        done = one.post(
            "/api/me/password",
            json={"current_password": PASSWORD, "new_password": "another long secret"},
            headers={CSRF_HEADER: csrf},
        )
        assert done.status_code == 204, done.text
        assert one.get("/api/me").status_code == 200 and two.get("/api/me").status_code == 401
    with rig.client() as c:
        assert rig.login(c).status_code == 401
        assert rig.login(c, "another long secret").status_code == 200


def test_turning_web_login_off_or_a_new_invitation_ends_the_sessions(rig: Rig) -> None:
    with rig.client() as c, rig.admin() as a:
        rig.login(c)
        assert a.post(f"/api/users/{rig.user_id}/login-invitation").status_code == 201
        assert c.get("/api/me").status_code == 401  # re-invited: registered again with a new password
        assert rig.login(c).status_code == 401
        assert a.patch(f"/api/users/{rig.user_id}", json={"allow_web_login": False}).status_code == 200
        assert rig.login(c).status_code == 401


def test_failed_logins_are_throttled_per_address_and_source(rig: Rig) -> None:
    with rig.client() as c:
        for _ in range(MAX_FAILURES):
            assert rig.login(c, "wrong wrong wrong").status_code == 401
        blocked = rig.login(c)  # even the right password, for now
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        other = c.post("/api/login", json={"email": "someone@example.com", "password": PASSWORD})
        assert other.status_code == 429  # the same source
        rig.clock.advance(301)
        assert rig.login(c).status_code == 200


def test_the_current_session_tells_a_reloaded_page_its_user_and_csrf_token(rig: Rig) -> None:
    with rig.client() as c:
        assert c.get("/api/session").status_code == 401  # no session yet
        login = rig.login(c).json()
        r = c.get("/api/session")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["csrf_token"] == login["csrf_token"] == csrf_token(c.cookies[SESSION_COOKIE])
        assert (body["user_id"], body["email"], body["first_name"], body["last_name"]) == (
            rig.user_id,
            rig.email,
            "Leonie",
            "Wagner",
        )
        assert (body["role"], body["permissions"]) == ("none", [])
        assert r.headers["cache-control"] == "no-store"
        rig.clock.advance(TTL_S + 1)
        assert c.get("/api/session").status_code == 401  # expired with the session
    with rig.admin() as a:
        tokened = a.get("/api/session")  # an API token has no session (and no CSRF token)
        assert tokened.status_code == 404 and "API token" in tokened.json()["detail"]
