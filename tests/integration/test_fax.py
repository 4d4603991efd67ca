"""Virtual fax lines end to end (issue 14): a fax machine on the carrier's side (``faxpeer``: SIP over UDP,
RTP/PCMU, a spandsp sender) calls a DID routed to a fax line of a real ``pbx serve``; the engine answers,
receives over G.711 and stores the fax; the test decodes the stored TIFF's pages and compares them pixel
by pixel with the pages sent, reads the record, and gets the PDF from the e-mail (aiosmtpd).
A sender that hangs up in page 2
leaves a failure record with the one page that arrived, and nothing half-written.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image, ImageChops, ImageDraw

from tests.conftest import Inbox

from .audio import signal_seconds, write_tone
from .faxpeer import FaxPeer
from .harness import PbxServer, require_module
from .test_calls_phones import rtp_range
from .test_dialplan_calls import Rig, assert_heard, record_for

pytestmark = pytest.mark.integration

DID = "+493023125402"
DID_DETECT = "+493023125400"  # a plan that detects fax first
STATION_ID = "+49 30 2312 5402"
SENDER_ID = "+49 89 555 0100"
TO = "faxes@example.com"
SENDER = "pbx@example.com"
PAGES = 2
MENU_HZ = 600.0  # the auto attendant's clip, which a voice caller hears after the detection


def company_yaml(clips: Path) -> str:
    return f"""version: 1
company: {{name: Fax Test GmbH, sip_realm: pbx.test, timezone: Europe/Berlin, country: DE}}
users:
  - {{first_name: Olga, last_name: Owner, extension: "201", sip_password: secret-201-pw}}
numbers:
  - {{number: "{DID}", route: {{kind: fax_line, target: office}}}}
  - {{number: "{DID_DETECT}", route: {{kind: dial_plan, target: reception}}}}
dial_plans:
  - name: reception
    graph:
      start: detect
      nodes:
        detect: {{type: detect_fax, seconds: 5, next: {{voice: menu, fax: fax}}}}
        fax: {{type: receive_fax, fax_line: office}}
        menu: {{type: auto_attendant, clip: menu, options: {{"1": bye}}, retries: 0, timeout_seconds: 3,
               next: {{timeout: bye, invalid: bye}}}}
        bye: {{type: hangup}}
sound_clips:
  - {{name: menu, file: {clips / "menu.wav"}}}
fax_lines:
  - {{name: office, extension: "402", station_id: "{STATION_ID}", header: Fax Test GmbH, email: [{TO}]}}
trunks:
  - {{name: carrier, sources: ["127.0.0.2"], host: 127.0.0.2, port: 5080}}
"""


def make_pages(path: Path, count: int = PAGES) -> list[Image.Image]:
    """``count`` different 1-bit pages, 1728 px wide (A4 at 204 dpi), short so a test runs in seconds,
    saved as one multi-page TIFF-F (G3) at 204 x 196 dpi, and read back."""
    pages = []
    for n in range(count):
        page = Image.new("1", (1728, 500), 1)
        draw = ImageDraw.Draw(page)
        draw.rectangle((60 + 40 * n, 40, 1660, 460), outline=0, width=6)
        draw.text((120, 80), f"PAGE {n + 1} OF {count} FROM {SENDER_ID}", fill=0)
        for i in range(0, 360, 30):
            draw.line((120, 120 + i, 1600, 440 - i + 11 * n), fill=0, width=3)
        pages.append(page)
    pages[0].save(path, format="TIFF", compression="group3", dpi=(204, 196), save_all=True,
                  append_images=pages[1:])
    return tiff_pages(path.read_bytes())  # the pages as a TIFF reader sees them (photometric applied)


def tiff_pages(data: bytes) -> list[Image.Image]:
    pages = []
    with Image.open(io.BytesIO(data)) as image:
        for i in range(getattr(image, "n_frames", 1)):
            image.seek(i)
            pages.append(image.convert("1").copy())
    return pages


def assert_same_pages(sent: list[Image.Image], got: list[Image.Image]) -> None:
    assert len(got) == len(sent)
    for i, (a, b) in enumerate(zip(sent, got, strict=True)):
        assert b.size == a.size, (i, b.size)
        assert ImageChops.difference(a, b).getbbox() is None, f"page {i + 1} differs"


class FaxRig:
    def __init__(self, server: PbxServer) -> None:
        self.server = server

    @property
    def fax_dir(self) -> Path:
        return self.server.data_dir / "faxes"

    def records(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [json.loads(p.read_bytes()) for p in sorted(self.fax_dir.glob("*.json"))]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{count} fax records expected, log:\n{self.server.log_tail()}")

    def peer(self, **kwargs: Any) -> FaxPeer:
        return FaxPeer(self.server.addr, station_id=SENDER_ID, **kwargs)


@pytest.fixture
def rig(pbx_factory: Any, tmp_path: Path, smtp: tuple[Inbox, int]) -> Iterator[FaxRig]:
    clips = tmp_path / "clips"
    clips.mkdir()
    write_tone(clips / "menu.wav", MENU_HZ, 3.0)
    company = tmp_path / "fax-company.yaml"
    company.write_text(company_yaml(clips))
    rtp = rtp_range()
    server = pbx_factory(company_file=company, name="fax", extra_args=[
        "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--smtp", f"127.0.0.1:{smtp[1]}", "--smtp-from", SENDER])
    yield FaxRig(server)


def test_a_two_page_fax_over_g711_arrives_pixel_identical_and_is_mailed_as_pdf(
    rig: FaxRig, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    sent = make_pages(tmp_path / "send.tif")
    call = rig.peer().send(DID, str(tmp_path / "send.tif"))
    assert call.status == 200 and not call.errors, call
    assert call.outcome is not None and call.outcome.ok, call.outcome
    assert call.outcome.remote_id == STATION_ID  # the fax line's CSI reached the sender
    assert call.outcome.pages == PAGES and call.outcome.ecm
    (record,) = rig.records(1)
    assert record["ok"] and record["code"] == 0 and record["text"] == "OK", record
    assert record["pages"] == PAGES and record["remote_id"] == SENDER_ID and record["fax_line"] == "office"
    assert (record["x_dpi"], record["y_dpi"]) == (204, 196) and record["bit_rate"] >= 9600 and record["ecm"]
    assert record["called"] == DID and record["duration_s"] > 3
    tiff = (rig.fax_dir / f"{record['id']}.tif").read_bytes()
    assert_same_pages(sent, tiff_pages(tiff))
    assert list((rig.fax_dir / "incoming").iterdir()) == []

    inbox, _ = smtp
    deadline = time.monotonic() + 15.0
    while not inbox.envelopes and time.monotonic() < deadline:
        time.sleep(0.2)
    (envelope,) = inbox.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == (SENDER, [TO])
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(mail, email.message.EmailMessage)
    assert SENDER_ID in str(mail["Subject"]) and "2 pages" in str(mail["Subject"]), mail["Subject"]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    pdf = attachment.get_content()
    assert pdf.startswith(b"%PDF") and pdf == (rig.fax_dir / f"{record['id']}.pdf").read_bytes()
    with pikepdf.open(io.BytesIO(pdf)) as document:
        assert len(document.pages) == PAGES
    (cdr,) = rig.server.cdrs(1, exact=True)
    assert cdr["disposition"] == "answered", cdr
    assert "fax:office:0 OK" in cdr["path"], cdr["path"]


def test_with_one_percent_of_the_packets_to_the_engine_lost_the_fax_completes(
    rig: FaxRig, tmp_path: Path
) -> None:
    sent = make_pages(tmp_path / "send.tif")
    call = rig.peer(loss=0.01, loss_in=0.0, seed=1401).send(DID, str(tmp_path / "send.tif"))
    assert call.dropped > 0, call  # the loss happened
    assert call.outcome is not None and call.outcome.ok, call.outcome
    (record,) = rig.records(1)
    assert record["ok"] and record["pages"] == PAGES and record["ecm"], record
    assert_same_pages(sent, tiff_pages((rig.fax_dir / f"{record['id']}.tif").read_bytes()))


def test_a_sender_hanging_up_in_page_two_leaves_a_failure_record_with_the_first_page(
    rig: FaxRig, tmp_path: Path
) -> None:
    sent = make_pages(tmp_path / "send.tif")
    call = rig.peer(hangup_after_pages=1).send(DID, str(tmp_path / "send.tif"))
    assert call.bye_sent and not call.bye_from_engine, call
    assert call.outcome is not None and not call.outcome.ok
    (record,) = rig.records(1)
    assert not record["ok"] and record["code"] != 0 and record["pages"] == 1, record
    tiff = (rig.fax_dir / f"{record['id']}.tif").read_bytes()
    assert_same_pages(sent[:1], tiff_pages(tiff))
    assert record["pdf"] and (rig.fax_dir / f"{record['id']}.pdf").read_bytes().startswith(b"%PDF")
    assert list((rig.fax_dir / "incoming").iterdir()) == []
    assert not [p for p in rig.fax_dir.iterdir() if p.name.endswith(".tmp")]
    (cdr,) = rig.server.cdrs(1, exact=True)
    steps = [step for step in cdr["path"] if step.startswith("fax:office:")]
    assert len(steps) == 1 and not steps[0].startswith("fax:office:0 "), cdr["path"]


def test_the_detect_fax_node_hears_the_calling_tone_and_sends_the_fax_to_the_fax_line(
    rig: FaxRig, tmp_path: Path
) -> None:
    sent = make_pages(tmp_path / "send.tif")
    call = rig.peer().send(DID_DETECT, str(tmp_path / "send.tif"))
    assert call.outcome is not None and call.outcome.ok, call.outcome
    (record,) = rig.records(1)
    assert record["ok"] and record["called"] == DID_DETECT, record
    assert_same_pages(sent, tiff_pages((rig.fax_dir / f"{record['id']}.tif").read_bytes()))
    (cdr,) = rig.server.cdrs(1, exact=True)
    assert "reception/detect:fax" in cdr["path"] and "fax:office:0 OK" in cdr["path"], cdr["path"]


def test_a_voice_caller_hears_silence_while_the_node_listens_then_the_auto_attendant(
    rig: FaxRig, peers: Any, tmp_path: Path
) -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    phones = Rig(rig.server, tmp_path, peers)
    try:
        carrier = phones.carrier()
        carrier.call(phones.did_uri(DID_DETECT))
        carrier.wait_state("CONFIRMED")  # the node answers to listen
        quiet = record_for(phones, carrier, "listening", 3.0)
        assert signal_seconds(quiet) < 0.2, "a caller hears silence while the node listens"
        time.sleep(2.5)  # the rest of the 5 s
        assert_heard(record_for(phones, carrier, "menu", 1.5), MENU_HZ, 1.0)
        carrier.hangup()
    finally:
        for phone in phones.phones:
            phone.close()
    (cdr,) = rig.server.cdrs(1, exact=True)
    assert "reception/detect:voice" in cdr["path"], cdr["path"]
    assert not list(rig.fax_dir.glob("*.json"))  # no fax was received
