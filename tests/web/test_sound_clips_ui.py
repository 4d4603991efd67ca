"""The sound clips page in chromium: a WAV uploaded (a bad name's error at the name first), listed and
played in the page (the browser decodes the audio the API serves), then deleted; checked through the API.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.api.test_sound_clips import tone
from tests.web.conftest import Site, login, shot

DURATION = (
    "a => new Promise(ok => a.readyState >= 1 ? ok(a.duration)"
    " : a.addEventListener('loadedmetadata', () => ok(a.duration)))"
)


def test_upload_play_and_delete_a_sound_clip(page: Page, site: Site, tmp_path: Path) -> None:
    wav = tmp_path / "welcome.wav"
    wav.write_bytes(tone(440.0, 2.0, 16_000, 1))
    login(page, "owner@example.com", "/sound-clips")
    expect(page.locator("#clip-list")).to_contain_text("No sound clips yet")
    page.fill("#f-name", "welcome message!")  # not a clip name
    page.locator("#clip-form input[type=file]").set_input_files(str(wav))
    page.click("#clip-save")
    expect(page.locator('#clip-form [data-error-for="name"]')).not_to_be_empty()
    page.fill("#f-name", "welcome")
    page.locator("#clip-form input[type=file]").set_input_files(str(wav))
    page.click("#clip-save")
    expect(page.locator(".notice.ok")).to_contain_text("Sound clip welcome was uploaded (2.0 s)")
    player = page.locator('audio[data-clip="welcome"]')
    duration = player.evaluate(DURATION)
    assert abs(duration - 2.0) < 0.05, duration
    shot(page, site, "50-sound-clips")
    with site.api() as c:
        assert [o["name"] for o in c.get("/api/routing/sound_clips").json()] == ["welcome"]
    page.once("dialog", lambda d: d.accept())
    page.click('[data-delete="welcome"]')
    expect(page.locator(".notice.ok")).to_contain_text("welcome was deleted")
    expect(page.locator("#clip-list")).to_contain_text("No sound clips yet")
    with site.api() as c:
        assert c.get("/api/routing/sound_clips").json() == []
        assert c.get("/api/sound-clips/welcome").status_code == 404


def test_german_sound_clips(page: Page, site: Site) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/sound-clips")
    expect(page.locator("main h1")).to_have_text("Ansagen")
    expect(page.locator("#clip-save")).to_have_text("Hochladen")
    shot(page, site, "51-sound-clips-de")
