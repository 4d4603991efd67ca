"""The permission matrix: each permission set against each endpoint group, over HTTP.

Permission sets: super admin, custom with exactly one permission (each of the four), and none. Endpoint
groups: configure (users, devices, lines, numbers, routing, dial plans, locations, audit), reports,
invoices (view), invoices (pay), and "me" (any token). A request is allowed exactly when the set grants
the group's permission; refused ones get 403 and change nothing. Every route the app serves declares its
permission (a route without one would not start).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from engine.api import routes, sessions
from engine.api.faxes import FAX_ROUTES
from engine.model.admin import ADMIN_PERMISSIONS
from tests.api.conftest import Api

SETS: dict[str, dict[str, Any]] = {
    "super_admin": {"role": "super_admin", "permissions": []},
    **{p: {"role": "custom", "permissions": [p]} for p in ADMIN_PERMISSIONS},
    "none": {"role": "none", "permissions": []},
}

# group -> (permission needed, requests: (method, path, json body))
GROUPS: dict[str, tuple[str | None, list[tuple[str, str, Any]]]] = {
    "configure": (
        "configure_pbx",
        [
            ("GET", "/api/users", None),
            ("POST", "/api/users", {"first_name": "New", "last_name": "User"}),
            ("GET", "/api/devices", None),
            ("GET", "/api/lines", None),
            ("GET", "/api/numbers", None),
            ("POST", "/api/numbers/orders", {"quantity": 1}),
            ("GET", "/api/routing/ring_groups", None),
            ("POST", "/api/routing/queues", {"name": "q1"}),
            ("GET", "/api/dial-plans", None),
            (
                "POST",
                "/api/locations",
                {
                    "name": "Office",
                    "country": "CA",
                    "street": "1 Main Street West",
                    "city": "Toronto",
                    "region": "ON",
                    "postal_code": "m5v2t6",
                },
            ),
            ("GET", "/api/audit", None),
            ("GET", "/api/company", None),
            ("DELETE", f"/api/faxes/{'0' * 32}", None),
        ],
    ),
    "reports": ("view_reports", [("GET", "/api/reports/calls", None), ("GET", "/api/faxes", None)]),
    "invoices": ("view_invoices", [("GET", "/api/invoices", None)]),
    "pay": ("pay_invoices", [("POST", "/api/invoices/1/pay", None)]),
    "me": (None, [("GET", "/api/me", None), ("GET", "/api/tokens", None)]),
}


@pytest.fixture
def tokens(api: Api, client: httpx.Client) -> dict[str, str]:
    """One user and API token per permission set (granted by the super admin)."""
    out: dict[str, str] = {}
    for i, (name, rights) in enumerate(SETS.items()):
        made = client.post(
            "/api/users", json={"first_name": name, "last_name": "Admin", "email": f"{name}@example.com"}
        )
        assert made.status_code == 201, made.text
        user_id = made.json()["user"]["id"]
        assert client.patch(f"/api/users/{user_id}", json={"admin": rights}).status_code == 200
        created = client.post("/api/tokens", json={"name": f"t{i}", "user_id": user_id})
        assert created.status_code == 201, created.text
        out[name] = created.json()["secret"]
    return out


def test_each_permission_set_against_each_endpoint_group(api: Api, tokens: dict[str, str]) -> None:
    for set_name, rights in SETS.items():
        for group, (needed, requests) in GROUPS.items():
            allowed = needed is None or rights["role"] == "super_admin" or needed in rights["permissions"]
            with api.client(tokens[set_name]) as c:
                for method, path, body in requests:
                    before = api.store.config_version()
                    r = c.request(method, path, json=body)
                    where = f"{set_name} -> {group}: {method} {path}"
                    if allowed:
                        # Allowed: anything but 401/403 (pay answers 404: there are no invoices yet).
                        assert r.status_code not in (401, 403), f"{where}: {r.status_code} {r.text}"
                        assert r.status_code < 500, f"{where}: {r.text}"
                    else:
                        assert r.status_code == 403, f"{where}: {r.status_code} {r.text}"
                        assert needed is not None and needed in r.json()["detail"]
                        assert api.store.config_version() == before, f"{where} changed the configuration"


def test_without_or_with_a_bad_token_everything_is_401(api: Api) -> None:
    for header in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        with httpx.Client(base_url=api.base_url, headers=header) as c:
            for _, (_, requests) in GROUPS.items():
                for method, path, body in requests:
                    assert c.request(method, path, json=body).status_code == 401, (header, path)


def test_only_a_super_admin_grants_rights_or_stocks_the_pool(api: Api, tokens: dict[str, str]) -> None:
    with api.client(tokens["configure_pbx"]) as c:
        me = c.get("/api/me").json()
        escalate = c.patch(f"/api/users/{me['user_id']}", json={"admin": {"role": "super_admin"}})
        assert escalate.status_code == 403
        assert c.post("/api/numbers/pool", json={"numbers": ["+12125550177"]}).status_code == 403
        other = c.post("/api/tokens", json={"name": "x", "user_id": 1})
        assert other.status_code == 403
        assert c.post("/api/tokens", json={"name": "mine"}).status_code == 201  # own tokens are fine
    assert api.admin.user(me["user_id"]).admin.role == "custom"


def test_revoked_tokens_stop_working(api: Api, client: httpx.Client, tokens: dict[str, str]) -> None:
    with api.client(tokens["view_reports"]) as c:
        assert c.get("/api/reports/calls").status_code == 200
        mine = c.get("/api/tokens").json()
        assert len(mine) == 1
        assert c.delete(f"/api/tokens/{mine[0]['id']}").status_code == 204
        assert c.get("/api/reports/calls").status_code == 401


def test_every_route_declares_a_permission() -> None:
    handlers = [*routes.ROUTES, *FAX_ROUTES, *sessions.SESSION_ROUTES]
    declared = {h.opt.get("permission") for h in handlers}
    assert declared <= {*ADMIN_PERMISSIONS, routes.AUTHENTICATED, routes.PUBLIC}
    public = [h for h in handlers if h.opt.get("permission") == routes.PUBLIC]
    assert sorted(p for h in public for p in h.paths) == ["/api/login", "/api/login/register"]
