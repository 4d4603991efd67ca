"""The seed's getting-started guide, step by step, through the admin API over HTTP (SQLite and PostgreSQL).

Add users (a new desk phone by MAC, a softphone, a standalone user), set permissions, bulk edit, enable
web login and register, order a number, file a port request and move it to completed, route a number to
a dial plan, set an external caller ID, add a location. Every change bumps config_version and leaves an
audit record.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import Api

PLAN: dict[str, Any] = {"start": "bye", "nodes": {"bye": {"type": "hangup"}}}


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def test_the_guide_end_to_end(api: Api, client: httpx.Client) -> None:
    version0 = api.store.config_version()

    # Add users: the proposed extension, a new desk phone by MAC (any separator form), a softphone, none.
    proposed = _ok(client.get("/api/users/next-extension"))["extension"]
    assert proposed == "201"
    desk = _ok(
        client.post(
            "/api/users",
            json={
                "first_name": "Anna",
                "last_name": "Schmidt",
                "email": "anna@example.com",
                "desk_phone": {"mac": "0015.65AA.BBCC", "model": "T54W"},
            },
        ),
        201,
    )
    assert desk["user"]["lines"][0]["extension"] == proposed and desk["user"]["desk_phone"] is True
    assert len(desk["sip_password"]) == 20 and len(desk["provisioning_password"]) == 20
    soft = _ok(
        client.post(
            "/api/users",
            json={"first_name": "Jonas", "last_name": "Becker", "extension": "305", "softphone": True},
        ),
        201,
    )
    assert soft["user"]["softphone"] is True and soft["user"]["lines"][0]["extension"] == "305"
    assert "provisioning_password" not in soft
    alone = _ok(client.post("/api/users", json={"first_name": "Leonie", "last_name": "Wagner"}), 201)
    assert alone["user"]["desk_phone"] is False and alone["user"]["softphone"] is False
    assert alone["user"]["lines"][0]["extension"] == "202"  # 201 taken, 305 explicit
    taken = client.post("/api/users", json={"first_name": "X", "last_name": "Y", "extension": "305"})
    assert taken.status_code == 422 and taken.json()["field"] == "extension"
    devices = _ok(client.get("/api/devices"))
    assert [(d["mac"], d["model"]) for d in devices] == [("001565aabbcc", "T54W")]
    assert devices[0]["line_ids"] == [desk["user"]["lines"][0]["id"]]

    # Admin permissions: Anna gets custom (configure PBX + view reports).
    anna = desk["user"]["id"]
    updated = _ok(
        client.patch(
            f"/api/users/{anna}",
            json={"admin": {"role": "custom", "permissions": ["view_reports", "configure_pbx"]}},
        )
    )
    assert updated["admin"] == {"role": "custom", "permissions": ["configure_pbx", "view_reports"]}

    # Bulk edit: all or nothing with per-row errors.
    jonas, leonie = soft["user"]["id"], alone["user"]["id"]
    bad = client.post(
        "/api/users/bulk",
        json={
            "rows": [
                {"id": jonas, "dial_username": "3050", "dial_password": "4321"},
                {"id": leonie, "dial_password": "12", "email": "not-an-address"},
            ]
        },
    )
    assert bad.status_code == 422
    assert [(e["row"], e["field"]) for e in bad.json()["errors"]] == [(1, "dial_password"), (1, "email")]
    assert _ok(client.get(f"/api/users/{jonas}"))["dial_username"] is None  # nothing was applied
    rows = _ok(
        client.post(
            "/api/users/bulk",
            json={
                "rows": [
                    {"id": jonas, "dial_username": "3050", "dial_password": "4321", "groups": ["Sales"]},
                    {
                        "id": leonie,
                        "email": "leonie@example.com",
                        "hot_desking": True,
                        "groups": ["Sales", "Ops"],
                    },
                ]
            },
        )
    )
    by_id = {r["id"]: r for r in rows}
    assert by_id[jonas]["dial_username"] == "3050" and by_id[jonas]["groups"] == ["Sales"]
    assert by_id[leonie]["hot_desking"] is True and by_id[leonie]["groups"] == ["Ops", "Sales"]

    # Web login: needs the e-mail and "allow"; registration only with the same e-mail.
    no = client.post(f"/api/users/{leonie}/login-invitation")
    assert no.status_code == 422 and no.json()["field"] == "allow_web_login"
    _ok(client.patch(f"/api/users/{leonie}", json={"allow_web_login": True}))
    token = _ok(client.post(f"/api/users/{leonie}/login-invitation"), 201)["token"]
    with httpx.Client(base_url=api.base_url) as anonymous:
        pw = "correct horse battery"
        wrong = anonymous.post(
            "/api/login/register", json={"token": token, "email": "someone@example.com", "password": pw}
        )
        assert wrong.status_code == 422 and wrong.json()["field"] == "email"
        assert "does not match" in wrong.json()["detail"]
        short = anonymous.post(
            "/api/login/register", json={"token": token, "email": "leonie@example.com", "password": "123"}
        )
        assert short.status_code == 422 and short.json()["field"] == "password"
        done = _ok(
            anonymous.post(
                "/api/login/register", json={"token": token, "email": "LEONIE@example.com", "password": pw}
            ),
            201,
        )
        assert done["registered"] is True
        again = anonymous.post(
            "/api/login/register", json={"token": token, "email": "leonie@example.com", "password": pw}
        )
        assert again.status_code == 422 and again.json()["field"] == "token"
        # Registered: she logs in with her e-mail and password (sessions: tests/api/test_sessions.py).
        session = anonymous.post("/api/login", json={"email": "leonie@example.com", "password": pw})
        assert session.status_code == 200 and session.json()["user_id"] == leonie

    # Order a number from the pool; an order the pool cannot serve becomes a manual order.
    _ok(client.post("/api/numbers/pool", json={"numbers": ["+1 212 555 0100", "+1 212 555 0101"]}), 201)
    order = _ok(client.post("/api/numbers/orders", json={"quantity": 1, "prefix": "+1212"}), 201)
    assert order["state"] == "completed" and order["numbers"] == ["+12125550100"]
    manual = _ok(client.post("/api/numbers/orders", json={"quantity": 5, "prefix": "+1415"}), 201)
    assert manual["state"] == "manual" and manual["numbers"] == []

    # Port a number in: draft -> submitted -> FOC date -> completed; it becomes routable.
    port = _ok(
        client.post(
            "/api/numbers/port-ins",
            json={
                "numbers": ["+1 646 555 0199"],
                "carrier": "Old Telco",
                "account_name": "Beispiel Inc",
                "account_number": "A-1001",
                "pin": "9876",
            },
        ),
        201,
    )
    assert port["state"] == "draft" and port["detail"]["pin"] == "***"
    early = client.put("/api/numbers/+16465550199/route", json={"kind": "extension", "target": "201"})
    assert early.status_code == 422 and early.json()["field"] == "number"
    skip = client.post(f"/api/numbers/port-ins/{port['id']}/actions", json={"action": "complete"})
    assert skip.status_code == 422 and "cannot complete a request that is draft" in skip.json()["detail"]
    for step, extra, state in (
        ("submit", {}, "submitted"),
        ("set_foc", {"foc_date": "2027-01-15"}, "foc_set"),
        ("complete", {}, "completed"),
    ):
        port = _ok(client.post(f"/api/numbers/port-ins/{port['id']}/actions", json={"action": step, **extra}))
        assert port["state"] == state
    assert port["foc_date"] == "2027-01-15"
    orders = _ok(client.get("/api/numbers/orders"))
    assert [(o["kind"], o["state"]) for o in orders] == [
        ("order", "completed"),
        ("order", "manual"),
        ("port_in", "completed"),
    ]

    # Route the ported number to a dial plan (go live).
    _ok(client.post("/api/dial-plans", json={"name": "main", "graph": PLAN}), 201)
    route = _ok(client.put("/api/numbers/+16465550199/route", json={"kind": "dial_plan", "target": "main"}))
    assert route == {"number": "+16465550199", "kind": "dial_plan", "target": "main"}
    numbers = {n["number"]: n for n in _ok(client.get("/api/numbers"))}
    assert (
        numbers["+16465550199"]["route_kind"] == "dial_plan" and numbers["+16465550199"]["source"] == "ported"
    )
    assert numbers["+12125550101"]["state"] == "available"
    assert [(n.e164, n.route_kind, n.route_target) for n in api.store.numbers()] == [
        ("+16465550199", "dial_plan", "main")
    ]

    # External caller ID: only the company's numbers.
    line = desk["user"]["lines"][0]["id"]
    foreign = client.patch(f"/api/lines/{line}", json={"external_caller_id": "+12125550101"})
    assert foreign.status_code == 422 and foreign.json()["field"] == "external_caller_id"
    assert (
        _ok(client.patch(f"/api/lines/{line}", json={"external_caller_id": "+1 212 555 0100"}))[
            "external_caller_id"
        ]
        == "+12125550100"
    )

    # A location (emergency address), normalised, assigned to the desk phone.
    loc = _ok(
        client.post(
            "/api/locations",
            json={
                "name": "HQ",
                "country": "US",
                "street": "350 South Fifth Avenue",
                "city": "New York",
                "region": "ny",
                "postal_code": "10118",
            },
        ),
        201,
    )
    assert (loc["street"], loc["region"], loc["verified"]) == ("350 S Fifth Ave", "NY", True)
    device = devices[0]["id"]
    assert (
        _ok(client.patch(f"/api/devices/{device}", json={"location_id": loc["id"]}))["location_id"]
        == loc["id"]
    )
    abroad = client.post(
        "/api/locations",
        json={
            "name": "Berlin",
            "country": "DE",
            "street": "1 Main",
            "city": "B",
            "region": "BE",
            "postal_code": "1",
        },
    )
    assert abroad.status_code == 422 and abroad.json()["field"] == "country"

    # Every change bumped config_version and was audited with who did it.
    assert api.store.config_version() > version0 + 15
    audit = _ok(client.get("/api/audit", params={"limit": 500}))
    actions = {a["action"] for a in audit}
    assert {"user.create", "user.bulk_update", "port.complete", "number.route", "location.create"} <= actions
    assert all(
        a["actor"].startswith("user:1 (root@example.com)") for a in audit if a["action"] == "number.route"
    )
    assert not any("password" in str(a["detail"]).lower() and "4321" in str(a["detail"]) for a in audit)


def test_secrets_are_shown_once_and_rotate(api: Api, client: httpx.Client) -> None:
    made = _ok(
        client.post(
            "/api/users",
            json={"first_name": "A", "last_name": "B", "desk_phone": {"mac": "00:15:65:00:00:01"}},
        ),
        201,
    )
    line_id = made["user"]["lines"][0]["id"]
    assert "sip_password" not in client.get(f"/api/users/{made['user']['id']}").text
    old = api.store.sip_credentials()["201"].ha1_md5
    fresh = _ok(client.post(f"/api/lines/{line_id}/rotate-password", json={}), 201)["password"]
    assert fresh != made["sip_password"] and api.store.sip_credentials()["201"].ha1_md5 != old
    data = api.admin.provisioning_data("001565000001")
    assert data is not None and data.lines[0].sip_password == fresh


def test_routing_objects_and_extensions_unique_across_kinds(api: Api, client: httpx.Client) -> None:
    _ok(client.post("/api/users", json={"first_name": "A", "last_name": "B", "extension": "500"}), 201)
    clash = client.post("/api/routing/queues", json={"name": "support", "extension": "500"})
    assert clash.status_code == 422 and clash.json()["field"] == "extension"
    _ok(client.post("/api/routing/queues", json={"name": "support", "extension": "600"}), 201)
    plan = client.post("/api/dial-plans", json={"name": "p", "graph": {**PLAN, "extension": "600"}})
    assert plan.status_code == 422 and plan.json()["field"] == "graph.extension"
    assert _ok(client.get("/api/users/next-extension"))["extension"] == "201"
    _ok(client.post("/api/dial-plans", json={"name": "p", "graph": {**PLAN, "extension": "201"}}), 201)
    assert _ok(client.get("/api/users/next-extension"))["extension"] == "202"  # a plan's extension counts
    assert _ok(client.get("/api/routing/queues/support"))["spec"] == {"name": "support", "extension": "600"}
    unknown = client.get("/api/routing/parking_lots")
    assert unknown.status_code == 404
    _ok(client.post("/api/numbers/pool", json={"numbers": ["+12125550111"]}), 201)
    _ok(client.post("/api/numbers/orders", json={"quantity": 1}), 201)
    _ok(client.put("/api/numbers/+12125550111/route", json={"kind": "queue", "target": "support"}))
    busy = client.delete("/api/routing/queues/support")
    assert busy.status_code == 422 and "routes to" in busy.json()["detail"]
    assert _ok(client.get("/api/routing/queues"))[0]["name"] == "support"  # the delete was rolled back


def test_saving_a_dial_plan_runs_the_compiler(api: Api, client: httpx.Client) -> None:
    version = api.store.config_version()
    bad = client.post(
        "/api/dial-plans",
        json={
            "name": "broken",
            "graph": {"start": "menu", "nodes": {"menu": {"type": "play_clip", "clip": "nope"}}},
        },
    )
    assert bad.status_code == 422, bad.text
    issues = bad.json()["errors"]
    assert issues and all(i["plan"] == "broken" for i in issues)
    assert {i["node"] for i in issues} == {"menu"}
    assert bad.json()["field"].startswith("dial_plans[broken].nodes.menu")
    assert client.get("/api/dial-plans/broken").status_code == 404  # rolled back
    assert api.store.config_version() == version
