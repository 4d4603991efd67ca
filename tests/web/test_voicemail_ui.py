"""A user's own voicemail on My settings (real chromium), logged in as a user without admin rights: the
messages of her line's mailbox listed (new first), one played in the page (the <audio> element decodes the
stored message: its length checked in the browser), marked heard, one deleted; a greeting uploaded, played
and removed; the temporary greeting switched on; a bad PIN's 422 next to the field, then a PIN set. Each step
is checked through the API with her own session; another line's mailbox is a 404 for her. German labels.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from engine.api.sessions import CSRF_HEADER
from engine.voicemail.model import verify_pin
from engine.voicemail.store import VoicemailStore
from tests.api.test_sound_clips import tone
from tests.web.conftest import PASSWORD, Site, _web_user, login, shot

EMAIL = "vera@example.com"
BOX = "390"


@pytest.fixture(scope="module")
def vera(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with site.api() as c:
        body = {"first_name": "Vera", "last_name": "Voice", "email": EMAIL, "extension": BOX}
        made = c.post("/api/users", json={**body, "softphone": True})
        assert made.status_code == 201, made.text
        _web_user(c, made.json()["user"]["id"], EMAIL)
        other = {"first_name": "Otto", "last_name": "Other", "extension": "391", "softphone": True}
        assert c.post("/api/users", json=other).status_code == 201
    store = VoicemailStore.open(site.data, recover=False)
    when = datetime.datetime(2026, 12, 7, 9, 30, tzinfo=datetime.UTC)
    tmp = tmp_path_factory.mktemp("recordings")
    for box, n, (caller, name, seconds) in (
        (BOX, 1, ("+4930555111", "Paula Kundin", 2.0)),
        (BOX, 2, ("+4930555222", "", 1.0)),
        ("391", 1, ("+4930555333", "", 1.0)),
    ):
        store.ensure_mailbox(box)
        wav = tmp / f"{box}-{n}.wav"
        wav.write_bytes(tone(440.0 * n, seconds, 8000, 1))
        store.deposit(box, wav, caller, name, when + datetime.timedelta(minutes=n), seconds)
    with httpx.Client(base_url=site.base_url, timeout=30) as client:
        logged_in = client.post("/api/login", json={"email": EMAIL, "password": PASSWORD})
        assert logged_in.status_code == 200, logged_in.text
        client.headers[CSRF_HEADER] = logged_in.json()["csrf_token"]
        yield client


def _box(vera: httpx.Client) -> dict[str, object]:
    r = vera.get("/api/me/voicemail")
    assert r.status_code == 200, r.text
    (box,) = r.json()  # only her own line's mailbox
    assert box["extension"] == BOX
    return dict(box)


def test_my_voicemail_messages_greetings_and_pin(
    page: Page, site: Site, vera: httpx.Client, tmp_path: Path
) -> None:
    assert vera.get("/api/me/voicemail/391/messages/1").status_code == 404  # not her line
    assert vera.delete("/api/me/voicemail/391/messages/1").status_code == 404
    login(page, EMAIL)
    assert page.url.endswith("/settings")
    panel = page.locator(f"#voicemail-{BOX}")
    expect(panel.locator("h2").first).to_have_text(f"Voicemail of line {BOX} (Vera Voice)")
    rows = panel.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Paula Kundin (+4930555111)")
    expect(rows.nth(0)).to_contain_text("new")
    expect(rows.nth(1)).to_contain_text("+4930555222")
    panel.locator('[data-play="1"]').click()
    player = panel.locator('audio[data-message="1"]')
    expect(player).to_have_count(1)
    duration = player.evaluate(
        "a => new Promise(ok => a.readyState >= 1 ? ok(a.duration)"
        " : a.addEventListener('loadedmetadata', () => ok(a.duration)))"
    )
    assert abs(duration - 2.0) < 0.05, duration
    shot(page, site, "80-my-voicemail")
    panel.locator('[data-heard="1"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("marked as heard")
    messages = _box(vera)["messages"]
    assert isinstance(messages, list)
    assert [(m["id"], m["folder"]) for m in messages] == [(2, "new"), (1, "saved")]  # new ones first
    page.once("dialog", lambda d: d.accept())
    page.locator(f'#voicemail-{BOX} [data-delete="2"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("The message was deleted")
    box = _box(vera)
    assert (box["new"], box["saved"]) == (0, 1)
    # A greeting: uploaded, played, removed.
    greeting = tmp_path / "hello.wav"
    greeting.write_bytes(tone(600.0, 1.5, 44_100, 2))
    form = page.locator(f'#voicemail-{BOX} form[data-greeting-form="unavailable"]')
    expect(form).to_contain_text("none yet")
    form.locator("input[type=file]").set_input_files(str(greeting))
    form.locator("button[type=submit]").click()
    expect(form.locator(".notice.ok")).to_contain_text("Uploaded (1.5 s)")
    expect(form.locator('audio[data-greeting="unavailable"]')).to_have_count(1)
    assert _box(vera)["greetings"] == ["unavailable"]
    form.locator('[data-remove-greeting="unavailable"]').click()
    expect(form).to_contain_text("none yet")
    assert _box(vera)["greetings"] == []
    page.check(f"#f-temporary-{BOX}")
    expect(page.locator(".notice.ok")).to_contain_text("The temporary greeting is on")
    assert _box(vera)["temporary_active"] is True
    pin = page.locator(f"#voicemail-{BOX} form[data-pin-form]")
    pin.locator("input[name=pin]").fill("12")
    pin.locator("button[type=submit]").click()
    expect(pin.locator('[data-error-for="pin"]')).to_contain_text("4-10 digits")
    pin.locator("input[name=pin]").fill("4321")
    pin.locator("button[type=submit]").click()
    expect(pin.locator(".notice.ok")).to_contain_text("The PIN was changed")
    mailbox = VoicemailStore.open(site.data, recover=False).mailbox(BOX)
    assert mailbox is not None and verify_pin("4321", mailbox.pin_hash)
    shot(page, site, "81-my-voicemail-greeting")
    other = VoicemailStore.open(site.data, recover=False).messages("391")
    assert [m.id for m in other] == [1]  # Otto's mailbox untouched


def test_german_my_voicemail(page: Page, site: Site, vera: httpx.Client) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, EMAIL)
    expect(page.locator(f"#voicemail-{BOX} h2").first).to_have_text(f"Mailbox der Leitung {BOX} (Vera Voice)")
    expect(page.locator(f"#voicemail-{BOX} label[for='f-pin']")).to_have_text("Mailbox-PIN")
    shot(page, site, "82-my-voicemail-de")
