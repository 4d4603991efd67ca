"""Fax lines through the admin API (issue 14): a fax line with station ID, header and e-mail recipients is
saved and read back; bad fields get 422 naming the field (the compiler's path inside the object)."""

from __future__ import annotations

import httpx

from tests.api.conftest import Api


def test_fax_line_fields_are_checked_and_named(api: Api, client: httpx.Client) -> None:
    spec = {"name": "office", "extension": "402", "station_id": "+49 30 2312 5402", "header": "Example GmbH",
            "email": ["office@example.com"]}
    bad = {
        "station id too long": ({"station_id": "1" * 21}, "station_id"),
        "header not text": ({"header": 42}, "header"),
        "address": ({"email": ["office@example.com", "nobody"]}, "email[1]"),
        "unknown field": ({"colour": "red"}, "colour"),
    }
    for why, (change, field) in bad.items():
        r = client.post("/api/routing/fax_lines", json={**spec, **change})
        assert r.status_code == 422, (why, r.text)
        assert field in r.json()["field"], (why, r.json())
    r = client.post("/api/routing/fax_lines", json=spec)
    assert r.status_code == 201, r.text
    assert client.get("/api/routing/fax_lines/office").json()["spec"] == spec
