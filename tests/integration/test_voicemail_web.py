"""A user's own voicemail through the admin API of a running ``pbx serve --http`` (issue 15, My settings):
line 202's mailbox holds a message when the engine starts, so its pjsua2 phone's MWI subscription says
"1/0"; the line's user logs in (web session, CSRF token), lists the message, marks it heard (the phone is
told "0/1"), and deletes it (the phone is told "0/0", the engine's own mailbox cache no longer lists it:
the API works on the engine's store and hands the new counts to its loop, engine.api.voicemail).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..web.conftest import PASSWORD, _web_user
from .audio import write_tone
from .harness import free_port, require_module, run_pbx, wait_http
from .test_calls_phones import rtp_range
from .test_voicemail import OTHER, Rig, company_yaml

pytestmark = pytest.mark.integration
EMAIL = "otto@example.com"


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[tuple[Rig, httpx.Client]]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    from engine.voicemail.store import VoicemailStore

    company = tmp_path / "vm-company.yaml"
    company.write_text(company_yaml())
    # A message waiting in 202's mailbox before the engine starts (as after a restart).
    store = VoicemailStore.open(tmp_path / "vmweb-data", recover=False)
    store.ensure_mailbox(OTHER)
    when = datetime.datetime(2026, 12, 7, 9, 0, tzinfo=datetime.UTC)
    store.deposit(OTHER, write_tone(tmp_path / "left.wav", 700.0, 1.0), "+4930555111", "Paula", when, 1.0)
    rtp = rtp_range()
    http_port = free_port()
    args = ["--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--http", f"127.0.0.1:{http_port}"]
    server = pbx_factory(company_file=company, name="vmweb", extra_args=args)
    admin = json.loads(run_pbx("admin", "token", "create", "--json", "--data-dir", str(server.data_dir),
                               "--email", "ops@pbx.test").stdout)
    base = f"http://127.0.0.1:{http_port}"
    wait_http(f"{base}/api/health")
    bearer = {"Authorization": f"Bearer {admin['token']}"}
    with httpx.Client(base_url=base, headers=bearer, timeout=10) as api:
        (line,) = [x for x in api.get("/api/lines").json() if x["extension"] == OTHER]
        assert api.patch(f"/api/users/{line['user_id']}", json={"email": EMAIL}).status_code == 200
        _web_user(api, line["user_id"], EMAIL)
    rig = Rig(server, tmp_path, peers)
    with httpx.Client(base_url=base, timeout=10) as user:
        login = user.post("/api/login", json={"email": EMAIL, "password": PASSWORD})
        assert login.status_code == 200, login.text
        user.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        try:
            yield rig, user
        finally:
            for phone in rig.phones:
                phone.close()


def test_heard_and_deleted_in_the_web_admin_the_phone_is_told(rig: tuple[Rig, httpx.Client]) -> None:
    pbx, user = rig
    phone = pbx.phone("other", OTHER, mwi_subscribe=True)
    first = phone.wait_mwi()  # the NOTIFY that follows the SUBSCRIBE's 200: the counts primed at start
    assert first["waiting"] and first["voice"] == "1/0", first
    (box,) = user.get("/api/me/voicemail").json()
    assert box["extension"] == OTHER and [(m["id"], m["folder"]) for m in box["messages"]] == [(1, "new")]
    audio = user.get(f"/api/me/voicemail/{OTHER}/messages/1")
    assert audio.status_code == 200 and audio.content[:4] == b"RIFF"
    assert user.post(f"/api/me/voicemail/{OTHER}/messages/1/heard").status_code == 204
    heard = phone.wait_mwi(lambda e: e["voice"] == "0/1")
    assert not heard["waiting"] and "Messages-Waiting: no" in heard["body"], heard
    assert user.delete(f"/api/me/voicemail/{OTHER}/messages/1").status_code == 204
    gone = phone.wait_mwi(lambda e: e["voice"] == "0/0")
    assert not gone["waiting"], gone
    assert user.get("/api/me/voicemail").json()[0]["messages"] == []
    assert user.delete(f"/api/me/voicemail/{OTHER}/messages/1").status_code == 404
    assert user.get("/api/me/voicemail/201/messages/1").status_code == 404  # not this user's line
