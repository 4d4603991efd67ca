"""The fax engine over spandsp: two terminals on in-memory G.711 audio (PCMU both ways) exchange a two-page
TIFF-F; the received pages are pixel-identical, the outcome carries both station IDs, and the PDF has both
pages. A terminal hung up before T.30 finished reports the call dropped; bad text fields are named."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image, ImageChops, ImageDraw

from engine.media.fax import T30_CALL_DROPPED, FaxError, FaxTerminal, tiff_to_pdf
from engine.media.g711 import ulaw_decode, ulaw_encode


def pages_of(path: Path) -> list[Image.Image]:
    out = []
    with Image.open(path) as image:
        for i in range(image.n_frames):
            image.seek(i)
            out.append(image.convert("1").copy())
    return out


def two_pages(path: Path) -> None:
    pages = []
    for n in range(2):
        page = Image.new("1", (1728, 300), 1)
        draw = ImageDraw.Draw(page)
        draw.rectangle((50 + 30 * n, 20, 1600, 280), outline=0, width=5)
        draw.text((100, 60), f"page {n + 1}", fill=0)
        pages.append(page)
    pages[0].save(path, format="TIFF", compression="group3", dpi=(204, 196), save_all=True,
                  append_images=pages[1:])


def run_line(tx: FaxTerminal, rx: FaxTerminal, max_s: float = 180.0) -> None:
    for _ in range(int(max_s * 50)):
        if tx.finished and rx.finished:
            return
        a, b = tx.transmit(), rx.transmit()
        rx.receive(ulaw_decode(ulaw_encode(a)))
        tx.receive(ulaw_decode(ulaw_encode(b)))


def test_two_pages_over_pcmu_arrive_pixel_identical_and_convert_to_a_two_page_pdf(tmp_path: Path) -> None:
    two_pages(tmp_path / "tx.tif")
    tx = FaxTerminal(calling=True, station_id="+49 89 555", tx_path=str(tmp_path / "tx.tif"))
    rx = FaxTerminal(calling=False, station_id="+49 30 402", header="Test", rx_path=str(tmp_path / "rx.tif"))
    run_line(tx, rx)
    assert tx.result is not None and rx.result is not None
    assert rx.result.ok and tx.result.ok, (rx.result, tx.result)
    assert (rx.result.remote_id, tx.result.remote_id) == ("+49 89 555", "+49 30 402")
    assert rx.result.pages == 2 and rx.pages == 2 and rx.result.ecm
    assert (rx.result.x_resolution, rx.result.y_resolution) == (8031, 7700)  # 204 x 196 dpi
    assert rx.result.bit_rate == 14400 and rx.result.duration_s > 5
    tx.close()
    rx.close()
    for a, b in zip(pages_of(tmp_path / "tx.tif"), pages_of(tmp_path / "rx.tif"), strict=True):
        assert ImageChops.difference(a, b).getbbox() is None
    with pikepdf.open(io.BytesIO(tiff_to_pdf((tmp_path / "rx.tif").read_bytes()))) as pdf:
        assert len(pdf.pages) == 2


def test_one_percent_loss_towards_the_receiver_is_concealed_and_ecm_repairs_the_rest(tmp_path: Path) -> None:
    """1 % of the sender's frames lost at random (a fixed pattern): the receiver conceals them by
    repetition and ECM retransmits what they broke; both pages arrive whole. (With silence in place of
    the lost frames this pattern fails.)"""
    two_pages(tmp_path / "tx.tif")
    tx = FaxTerminal(calling=True, station_id="1", tx_path=str(tmp_path / "tx.tif"))
    rx = FaxTerminal(calling=False, station_id="2", rx_path=str(tmp_path / "rx.tif"))
    rng = np.random.default_rng(0)
    lost = 0
    for _ in range(180 * 50):
        if tx.finished and rx.finished:
            break
        a, b = tx.transmit(), rx.transmit()
        if rng.random() < 0.01:
            lost += 1
            rx.receive(None)
        else:
            rx.receive(ulaw_decode(ulaw_encode(a)))
        tx.receive(ulaw_decode(ulaw_encode(b)))
    assert lost >= 5
    assert rx.result is not None and rx.result.ok and rx.result.pages == 2, rx.result
    rx.close()
    tx.close()
    for a, b in zip(pages_of(tmp_path / "tx.tif"), pages_of(tmp_path / "rx.tif"), strict=True):
        assert ImageChops.difference(a, b).getbbox() is None


def test_a_terminal_hung_up_before_the_end_reports_the_call_dropped(tmp_path: Path) -> None:
    rx = FaxTerminal(calling=False, station_id="1", rx_path=str(tmp_path / "rx.tif"))
    for _ in range(50):
        rx.receive(None)
        rx.transmit()
    rx.hangup()
    assert rx.result is not None and not rx.result.ok and rx.result.pages == 0
    assert rx.result.code == T30_CALL_DROPPED
    rx.close()
    rx.close()  # idempotent
    assert rx.transmit().any() == False  # noqa: E712 - silence once closed


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"station_id": "x" * 21}, "station_id"),
    ({"station_id": "Fax\n"}, "station_id"),
    ({"header": "ü"}, "header"),
    ({"rx_path": None}, "rx_path"),
])
def test_bad_arguments_are_named(kwargs: dict[str, object], field: str, tmp_path: Path) -> None:
    args: dict[str, object] = {"calling": False, "rx_path": str(tmp_path / "rx.tif"), **kwargs}
    with pytest.raises(FaxError) as err:
        FaxTerminal(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_a_tiff_that_is_no_tiff_is_refused() -> None:
    with pytest.raises(FaxError) as err:
        tiff_to_pdf(b"not a tiff")
    assert err.value.field == "tiff"
