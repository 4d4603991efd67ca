"""Voicemail to e-mail end to end: ``pbx serve --smtp`` e-mails a new message, WAV attached, to the user of a
line with ``voicemail_to_email`` (a local aiosmtpd server stands in for the mail server; a real pjsua2 phone
leaves the message), and a line without it sends nothing.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Inbox

from .audio import dominant_frequency, signal_seconds
from .harness import require_module
from .test_calls_phones import rtp_range
from .test_voicemail import MESSAGE_HZ, MESSAGE_S, Rig, default_greeting, password, spoken

pytestmark = pytest.mark.integration

REALM = "pbx.test"
MAILED = "201"  # voicemail to e-mail
QUIET = "202"  # voicemail, no e-mail
CALLER = "203"
ADDRESS = "olga@example.com"
SENDER = "pbx@example.com"


def company_yaml() -> str:
    return f"""version: 1
company: {{name: Mail Test GmbH, sip_realm: {REALM}, timezone: Europe/Berlin, country: DE}}
users:
  - {{first_name: Olga, last_name: Owner, extension: "{MAILED}", sip_password: {password(MAILED)},
     email: {ADDRESS}, voicemail_to_email: true}}
  - {{first_name: Otto, last_name: Other, extension: "{QUIET}", sip_password: {password(QUIET)},
     email: otto@example.com}}
  - {{first_name: Cara, last_name: Caller, extension: "{CALLER}", sip_password: {password(CALLER)}}}
"""


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path, smtp: tuple[Inbox, int]) -> Iterator[Rig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    company = tmp_path / "mail-company.yaml"
    company.write_text(company_yaml())
    rtp = rtp_range()
    server = pbx_factory(company_file=company, name="mail", extra_args=[
        "--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--smtp", f"127.0.0.1:{smtp[1]}", "--smtp-from", SENDER])
    rig = Rig(server, tmp_path, peers)
    try:
        yield rig
    finally:
        for phone in rig.phones:
            phone.close()


def leave_message(rig: Rig, caller: Any, box: str, tone: Path) -> None:
    """``caller`` calls the unregistered line ``box``: greeting, beep, the tone, ``#``."""
    ear = rig.dial(caller, box)
    found = ear.heard(default_greeting(box))
    ear.beep(found[-1][3] - 160)
    caller.play(tone)
    time.sleep(MESSAGE_S)
    caller.dtmf("#")
    caller.wait_state("DISCONNECTED", timeout=15.0)
    ear.stop()


def test_a_new_message_is_mailed_with_its_audio_and_a_line_without_the_option_sends_none(
    rig: Rig, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, _ = smtp
    tone = tmp_path / "message.wav"
    spoken(tone, MESSAGE_HZ, MESSAGE_S)
    caller = rig.phone("caller", CALLER)
    leave_message(rig, caller, MAILED, tone)
    (envelope,) = rig.until("the e-mail", lambda: inbox.envelopes, timeout=15.0)
    mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(mail, email.message.EmailMessage)
    assert (envelope.mail_from, envelope.rcpt_tos) == (SENDER, [ADDRESS])
    assert mail["To"] == ADDRESS and mail["From"] == SENDER
    assert CALLER in str(mail["Subject"]), mail["Subject"]
    (attachment,) = [part for part in mail.iter_attachments()]
    assert attachment.get_content_type() in ("audio/wav", "audio/x-wav"), attachment.get_content_type()
    wav = tmp_path / "attached.wav"
    wav.write_bytes(attachment.get_content())
    (stored,) = rig.until("a stored message", lambda: rig.messages(MAILED))
    assert wav.read_bytes() == Path(stored["_wav"]).read_bytes()  # the stored message, byte for byte
    assert abs(dominant_frequency(str(wav)) - MESSAGE_HZ) <= 10.0
    assert signal_seconds(str(wav)) == pytest.approx(MESSAGE_S, abs=0.5)

    caller2 = rig.phone("caller2", CALLER)
    leave_message(rig, caller2, QUIET, tone)
    rig.until("the second message stored", lambda: rig.messages(QUIET))
    time.sleep(1.0)
    assert len(inbox.envelopes) == 1  # 202 has an address but did not ask for e-mails
