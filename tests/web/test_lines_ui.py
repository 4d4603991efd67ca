"""Lines in the web admin (chromium): the external caller ID chosen from the company's numbers, and a
voicemail greeting uploaded as a WAV file (a bad file's error shown at the upload first) and listened to in
the page: the <audio> element plays the stored audio the API serves (its length checked in the browser).
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from engine.media.wav import decode_wav
from tests.api.test_sound_clips import dominant_hz, tone
from tests.web.conftest import NUMBER, Site, login, shot


def test_caller_id_and_a_greeting_uploaded_and_played(page: Page, site: Site, tmp_path: Path) -> None:
    with site.api() as c:
        made = c.post("/api/users", json={"first_name": "Gina", "last_name": "Greet", "extension": "350"})
        assert made.status_code == 201, made.text
        line_id = made.json()["user"]["lines"][0]["id"]
    good = tmp_path / "greeting.wav"
    good.write_bytes(tone(600.0, 1.5, 44_100, 2))
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is no WAV file")
    login(page, "owner@example.com", "/lines")
    page.click('#line-list [data-line="350"]')
    detail = page.locator("#line-detail")
    expect(detail.locator("h2").first).to_have_text("Line 350 (Gina Greet)")
    page.select_option("#f-external_caller_id", NUMBER)
    page.click("#caller-id-save")
    expect(page.locator(".notice.ok")).to_contain_text("Line 350 was saved")
    expect(page.locator("#line-list tr", has_text="350")).to_contain_text(NUMBER)
    with site.api() as c:
        assert c.get(f"/api/lines/{line_id}").json()["external_caller_id"] == NUMBER
    page.click('#line-list [data-line="350"]')
    expect(page.locator("#f-external_caller_id")).to_have_value(NUMBER)
    busy = page.locator('form[data-greeting-form="busy"]')
    expect(busy).to_contain_text("none yet")
    busy.locator("input[type=file]").set_input_files(str(bad))
    busy.locator("button[type=submit]").click()
    expect(busy.locator('[data-error-for="file"]')).to_contain_text("not a WAV file")
    busy.locator("input[type=file]").set_input_files(str(good))
    busy.locator("button[type=submit]").click()
    expect(busy.locator(".notice.ok")).to_contain_text("Uploaded (1.5 s)")
    player = busy.locator('audio[data-greeting="busy"]')
    expect(player).to_have_count(1)
    # The browser decodes what the API serves: the duration is the upload's.
    duration = player.evaluate(
        "a => new Promise(ok => a.readyState >= 1 ? ok(a.duration)"
        " : a.addEventListener('loadedmetadata', () => ok(a.duration)))"
    )
    assert abs(duration - 1.5) < 0.05, duration
    shot(page, site, "40-line-greetings")
    with site.api() as c:
        stored = c.get(f"/api/lines/{line_id}/voicemail/greetings/busy").content
    assert decode_wav(stored).sample_rate_hz == 8000 and abs(dominant_hz(stored) - 600.0) < 2.0
    expect(page.locator('form[data-greeting-form="unavailable"]')).to_contain_text("none yet")


def test_german_lines_page(page: Page, site: Site) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/lines")
    expect(page.locator("main h1")).to_have_text("Leitungen und Ansagen")
    page.locator("#line-list [data-line]").first.click()
    expect(page.locator('label[for="f-greeting-busy"]')).to_have_text("Ansage bei Besetzt")
    shot(page, site, "41-lines-de")
