"""Queues through the admin API: a full queue is saved and read back, bad fields get 422 naming the field
(the compiler's path inside the object: unknown strategy, an agent that is no line, exit to nowhere)."""

from __future__ import annotations

import httpx

from tests.api.conftest import Api


def test_queue_fields_are_checked_and_named(api: Api, client: httpx.Client) -> None:
    for ext in ("201", "202"):
        r = client.post("/api/users", json={"first_name": "A", "last_name": ext, "extension": ext})
        assert r.status_code == 201, r.text
    spec = {
        "name": "support",
        "extension": "600",
        "agents": [{"line": "201"}, {"line": "202"}],
        "strategy": "least_recent",
        "wrap_up_seconds": 10,
        "max_wait_seconds": 120,
        "exit": {"kind": "voicemail", "target": "201"},
        "exit_key": "0",
    }
    bad = {
        "strategy": ({"strategy": "loudest"}, "strategy"),
        "agent": ({"agents": [{"line": "999"}]}, "agents[0].line"),
        "exit": ({"exit": {"kind": "voicemail", "target": "nowhere"}}, "exit.target"),
        "exit kind": ({"exit": {"kind": "the moon", "target": "x"}}, "exit.kind"),
    }
    for why, (change, field) in bad.items():
        r = client.post("/api/routing/queues", json={**spec, **change})
        assert r.status_code == 422, (why, r.text)
        assert field in r.json()["field"], (why, r.json())
    r = client.post("/api/routing/queues", json=spec)
    assert r.status_code == 201, r.text
    assert client.get("/api/routing/queues/support").json()["spec"] == spec
