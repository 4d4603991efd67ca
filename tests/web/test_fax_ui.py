"""Fax lines and received faxes in the web admin (real chromium): a fax line added on the shared form (a
station ID past T.30's 20 characters and a bad e-mail address answered next to their fields), edited and
deleted; its received faxes listed (of that line, then of all lines), one viewed in the page (the frame
shows the blob that the download link saves: the stored PDF, byte for byte) and deleted; each checked
through the API; German labels.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace

import img2pdf
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from engine.store.faxes import FaxRecord, FaxStore, fax_store_dir
from tests.web.conftest import Site, login, shot

RECEIVED = FaxRecord(id="a" * 32, fax_line="office", caller="+4989555123", caller_name="Kanzlei Huber",
                     called="+4930402", call_id="f1", received_at=1_800_000_000.0, remote_id="+49 89 555123",
                     pages=1, x_dpi=204, y_dpi=196, bit_rate=14400, ecm=True, code=0, text="OK",
                     duration_s=20.0, ok=True, pdf=True)
BROKEN = replace(RECEIVED, id="b" * 32, fax_line="sales", caller="+4940777", caller_name="", pages=0,
                 ok=False, code=49, text="Call dropped prematurely", pdf=False, received_at=1_800_000_100.0)


def _pdf() -> bytes:
    image = Image.new("1", (204, 98), 1)
    image.paste(0, (20, 20, 180, 60))
    png = io.BytesIO()
    image.save(png, "PNG")
    return bytes(img2pdf.convert(png.getvalue()))


@pytest.fixture(scope="module")
def pdf(site: Site) -> Iterator[bytes]:
    data = _pdf()
    store = FaxStore.open(fax_store_dir(site.data))
    store.incoming_path(RECEIVED.id).write_bytes(b"II*\x00 tiff")
    store.commit(RECEIVED, data)
    store.commit(BROKEN, None)
    yield data


def test_a_fax_line_and_its_received_faxes(page: Page, site: Site, pdf: bytes) -> None:
    login(page, "owner@example.com", "/fax-lines")
    expect(page.locator("#fax-line-list")).to_contain_text("No fax lines yet.")
    page.click("#fax-line-add")
    form = page.locator("#fax-line-form")
    page.fill("#f-name", "office")
    page.fill("#f-extension", "780")
    page.fill("#f-station_id", "+49 30 1234567 Office Main")  # 26 characters
    page.fill("#f-email", "fax@example.com, not-an-address")
    page.click("#fax-line-save")
    expect(form.locator('[data-error-for="station_id"]')).to_contain_text("at most 20 printable ASCII")
    bad = "not an e-mail address: 'not-an-address'"
    expect(form.locator('[data-error-for="email"]')).to_contain_text(bad)
    shot(page, site, "70-fax-line-errors")
    page.fill("#f-station_id", "+49 30 1234567")
    page.fill("#f-header", "Example GmbH")
    page.fill("#f-email", "fax@example.com office@example.com")
    page.click("#fax-line-save")
    expect(page.locator(".notice.ok")).to_contain_text("Fax line office was saved")
    with site.api() as c:
        spec = c.get("/api/routing/fax_lines/office").json()["spec"]
    assert spec == {"name": "office", "extension": "780", "station_id": "+49 30 1234567",
                    "header": "Example GmbH", "email": ["fax@example.com", "office@example.com"]}
    row = page.locator("#fax-line-list tr", has_text="office")
    expect(row).to_contain_text("fax@example.com, office@example.com")
    row.locator('[data-edit="office"]').click()
    expect(page.locator("#f-email")).to_have_value("fax@example.com, office@example.com")
    page.fill("#f-header", "Example GmbH Berlin")
    page.click("#fax-line-save")
    expect(page.locator(".notice.ok")).to_contain_text("Fax line office was saved")
    with site.api() as c:
        assert c.get("/api/routing/fax_lines/office").json()["spec"]["header"] == "Example GmbH Berlin"
    # The line's received faxes: only its own.
    page.locator('[data-faxes="office"]').click()
    expect(page.locator("main h1")).to_have_text("Received faxes")
    assert page.url.endswith("/faxes?line=office")
    faxes = page.locator("#fax-list tbody tr")
    expect(faxes).to_have_count(1)
    expect(faxes.first).to_contain_text("Kanzlei Huber +4989555123")
    expect(faxes.first).to_contain_text("received")
    expect(page.locator("#fax-line-filter")).to_have_value("office")
    page.locator(f'[data-view="{RECEIVED.id}"]').click()
    frame = page.locator("#fax-view iframe")
    expect(frame).to_have_count(1)
    link = page.locator("#fax-download")
    src = frame.get_attribute("src")
    assert src is not None and src.startswith("blob:") and link.get_attribute("href") == src
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"fax-{RECEIVED.id}.pdf"
    saved = download.value.path()
    assert saved.read_bytes() == pdf  # the frame and the download are the stored PDF
    shot(page, site, "71-fax-view")
    # All lines: the incomplete fax too, without pages to view.
    page.select_option("#fax-line-filter", "")
    expect(faxes).to_have_count(2)
    broken = page.locator("#fax-list tr", has_text="+4940777")
    expect(broken).to_contain_text("incomplete: Call dropped prematurely")
    expect(broken).to_contain_text("no pages")
    shot(page, site, "72-faxes")
    page.once("dialog", lambda d: d.accept())
    page.locator(f'[data-delete="{RECEIVED.id}"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("The fax was deleted")
    expect(faxes).to_have_count(1)
    with site.api() as c:
        assert [f["id"] for f in c.get("/api/faxes").json()] == [BROKEN.id]
        assert c.get(f"/api/faxes/{RECEIVED.id}/pdf").status_code == 404
    # The fax line goes.
    page.click('nav.side a[data-page="fax-lines"]')
    page.once("dialog", lambda d: d.accept())
    page.locator('[data-delete="office"]').click()
    expect(page.locator(".notice.ok")).to_contain_text("office was deleted")
    with site.api() as c:
        assert c.get("/api/routing/fax_lines").json() == []


def test_german_fax_pages(page: Page, site: Site, pdf: bytes) -> None:
    page.add_init_script("localStorage.setItem('pbx.lang', 'de')")
    login(page, "owner@example.com", "/fax-lines")
    expect(page.locator("main h1")).to_have_text("Faxleitungen")
    page.click("#fax-line-add")
    expect(page.locator('label[for="f-station_id"]')).to_have_text("Kennung (CSI)")
    shot(page, site, "73-fax-lines-de")
    page.click('nav.side a[data-page="faxes"]')
    expect(page.locator("main h1")).to_have_text("Empfangene Faxe")
    expect(page.locator("#fax-list")).to_contain_text("unvollständig")
