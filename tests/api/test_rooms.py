"""Conference rooms through the admin API (issue 13): a room with every option is saved and read back; bad
options get 422 naming the field (an unknown option, a PIN that is not 4-10 digits, a room without an
extension, a waiting room without a host PIN)."""

from __future__ import annotations

import httpx

from tests.api.conftest import Api


def test_room_options_are_checked_and_named(api: Api, client: httpx.Client) -> None:
    spec = {
        "name": "team",
        "extension": "850",
        "participant_pin": "2468",
        "host_pin": "13579",
        "waiting_room": True,
        "enter_muted": True,
        "end_with_last_host": True,
        "announce_participants": True,
        "omit_from_directory": False,
    }
    bad = {
        "unknown option": ({"loudness": 11}, "loudness"),
        "short pin": ({"participant_pin": "12"}, "participant_pin"),
        "long pin": ({"host_pin": "12345678901"}, "host_pin"),
        "flag": ({"enter_muted": "sometimes"}, "enter_muted"),
    }
    for why, (change, field) in bad.items():
        r = client.post("/api/routing/conference_rooms", json={**spec, **change})
        assert r.status_code == 422, (why, r.text)
        assert field in r.json()["field"], (why, r.json())
    no_ext = {k: v for k, v in spec.items() if k != "extension"}
    r = client.post("/api/routing/conference_rooms", json=no_ext)
    assert r.status_code == 422, r.text
    assert "extension" in r.json()["field"]
    no_host = {k: v for k, v in spec.items() if k != "host_pin"}
    r = client.post("/api/routing/conference_rooms", json=no_host)
    assert r.status_code == 422, r.text
    assert r.json()["field"].endswith(("waiting_room", "end_with_last_host")), r.json()
    r = client.post("/api/routing/conference_rooms", json=spec)
    assert r.status_code == 201, r.text
    assert client.get("/api/routing/conference_rooms/team").json()["spec"] == spec
