"""Voicemail greetings over HTTP (SQLite and PostgreSQL), issue 5's "and the admin API when it exists": a
pre-recorded WAV of any rate is converted and assigned to a line's mailbox as its unavailable, busy or
temporary greeting, the voicemail model then picks it by precedence, and it can be removed again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.media.wav import decode_wav
from engine.voicemail.model import DepositReason, GreetingKind, choose_greeting
from engine.voicemail.store import VoicemailStore
from tests.api.conftest import Api
from tests.api.test_sound_clips import WAV, dominant_hz, tone


def _line(api: Api) -> tuple[int, str]:
    with api.client() as c:
        made = c.post("/api/users", json={"first_name": "Vera", "last_name": "Voice"})
        assert made.status_code == 201, made.text
        (line,) = made.json()["user"]["lines"]
        return int(line["id"]), str(line["extension"])


def test_a_greeting_is_converted_assigned_chosen_and_removed(api: Api) -> None:
    line_id, extension = _line(api)
    with api.client() as c:
        greetings = f"/api/lines/{line_id}/voicemail/greetings"
        up = c.put(f"{greetings}/unavailable", content=tone(500.0, 2.0, 22_050, 2), headers=WAV)
        assert up.status_code == 200, up.text
        assert up.json() == {"mailbox": extension, "kind": "unavailable", "duration_seconds": 2.0,
                             "temporary_active": False}
        store = VoicemailStore.open(api.store.data_dir, recover=False)
        box = store.mailbox(extension)
        assert box is not None
        stored = Path(box.greetings[GreetingKind.UNAVAILABLE]).read_bytes()
        audio = decode_wav(stored)
        assert (audio.sample_rate_hz, audio.channels) == (8000, 1) and abs(dominant_hz(stored) - 500.0) < 2.0
        assert choose_greeting(box, DepositReason.UNAVAILABLE).kind is GreetingKind.UNAVAILABLE

        # A temporary greeting is stored but only heard once switched on (from the phone menu).
        temp = c.put(f"/api/lines/{line_id}/voicemail/greetings/temporary", content=tone(800.0, 1.0, 8000, 1),
                     headers=WAV)
        assert temp.status_code == 200 and temp.json()["temporary_active"] is False
        box = store.mailbox(extension)
        assert box is not None and GreetingKind.TEMPORARY in box.greetings
        assert choose_greeting(box, DepositReason.BUSY).kind is GreetingKind.UNAVAILABLE

        assert c.delete(f"/api/lines/{line_id}/voicemail/greetings/unavailable").status_code == 204
        box = store.mailbox(extension)
        assert box is not None and choose_greeting(box, DepositReason.UNAVAILABLE).kind is None  # the default
        audit = c.get("/api/audit", params={"action": "voicemail."}).json()
        assert [a["action"] for a in audit] == [  # newest first
            "voicemail.greeting_cleared", "voicemail.greeting_set", "voicemail.greeting_set"]


@pytest.mark.parametrize(
    ("path", "content", "status", "field"),
    [
        ("greetings/holiday", None, 422, "kind"),
        ("greetings/busy", b"not a wav", 422, "file.riff"),
    ],
)
def test_bad_greeting_uploads_name_the_field(api: Api, path: str, content: bytes | None, status: int,
                                             field: str) -> None:
    line_id, _ = _line(api)
    with api.client() as c:
        r = c.put(f"/api/lines/{line_id}/voicemail/{path}", content=content or tone(500.0, 0.5, 8000, 1),
                  headers=WAV)
        assert r.status_code == status, r.text
        assert r.json()["field"] == field


def test_a_greeting_for_no_such_line_is_404_and_needs_configure_pbx(api: Api) -> None:
    with api.client() as c:
        r = c.put("/api/lines/99999/voicemail/greetings/busy", content=tone(500.0, 0.5, 8000, 1), headers=WAV)
        assert r.status_code == 404, r.text
    with api.client(token="") as c:
        r = c.put("/api/lines/1/voicemail/greetings/busy", content=tone(500.0, 0.5, 8000, 1), headers=WAV)
        assert r.status_code == 401


def test_a_greeting_is_downloaded_as_stored_and_a_missing_one_is_404(api: Api) -> None:
    line_id, _ = _line(api)
    with api.client() as c:
        url = f"/api/lines/{line_id}/voicemail/greetings"
        assert c.get(f"{url}/busy").status_code == 404  # no mailbox yet
        assert c.put(f"{url}/busy", content=tone(700.0, 1.0, 16_000, 1), headers=WAV).status_code == 200
        got = c.get(f"{url}/busy")
        assert got.status_code == 200 and got.headers["content-type"].startswith("audio/wav")
        assert decode_wav(got.content).sample_rate_hz == 8000 and abs(dominant_hz(got.content) - 700.0) < 2.0
        assert c.get(f"{url}/unavailable").status_code == 404  # the mailbox has no such greeting
        bad = c.get(f"{url}/loud")
        assert bad.status_code == 422 and bad.json()["field"] == "kind"
        assert c.get("/api/lines/99999/voicemail/greetings/busy").status_code == 404
