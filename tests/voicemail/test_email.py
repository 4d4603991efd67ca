"""Voicemail to e-mail against a real local SMTP server (aiosmtpd): the WAV arrives attached, the event loop
keeps running while the mail is sent, and failures are typed."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import socket
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.voicemail.email import EmailError, SmtpConfig, VoicemailMailer, build_email
from engine.voicemail.model import Folder, MessageInfo
from tests.conftest import Inbox

T0 = dt.datetime(2026, 3, 2, 14, 5, 9, tzinfo=dt.UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def message(tmp_path: Path, audio: bytes) -> MessageInfo:
    path = tmp_path / "msg-000003.wav"
    path.write_bytes(audio)
    return MessageInfo(3, "201", Folder.NEW, "+4930123456", "Jürgen Beispiel", T0, 65.4, str(path))


AUDIO = b"RIFF" + bytes(range(256)) * 40


def test_mail_arrives_with_the_wav_attached(smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    inbox.delay_s = 0.3
    mailer = VoicemailMailer(
        SmtpConfig("127.0.0.1", port, sender="pbx@example.com"), ZoneInfo("Europe/Berlin")
    )

    async def main() -> int:
        ticks = 0
        send = asyncio.create_task(mailer.send(message(tmp_path, AUDIO), "ann@example.com"))
        while not send.done():  # the loop keeps running while the mail goes out
            ticks += 1
            await asyncio.sleep(0.01)
        await send
        return ticks

    ticks = asyncio.run(main())
    assert ticks >= 10  # ~30 ticks of 10 ms while the server took 300 ms: the loop was never blocked
    assert len(inbox.envelopes) == 1
    env = inbox.envelopes[0]
    assert env.mail_from == "pbx@example.com" and env.rcpt_tos == ["ann@example.com"]
    assert isinstance(env.content, bytes)
    parsed = email.message_from_bytes(env.content, policy=email.policy.default)
    assert parsed["Subject"] == "New voicemail from Jürgen Beispiel <+4930123456> (1:05)"
    body = parsed.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "2026-03-02 15:05:09 CET" in text and "mailbox 201" in text
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["msg-000003.wav"]
    assert attachments[0].get_content_type() == "audio/wav"
    assert attachments[0].get_content() == AUDIO


def test_notice_without_attachment(smtp: tuple[Inbox, int], tmp_path: Path) -> None:
    inbox, port = smtp
    mailer = VoicemailMailer(SmtpConfig("127.0.0.1", port), dt.UTC)
    asyncio.run(mailer.send(message(tmp_path, AUDIO), "ann@example.com", attach=False, mailbox_label="Sales"))
    parsed = email.message_from_bytes(inbox.envelopes[0].content, policy=email.policy.default)  # type: ignore[arg-type]
    assert list(parsed.iter_attachments()) == []
    assert "mailbox Sales" in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_unreachable_server_is_a_typed_error(tmp_path: Path) -> None:
    mailer = VoicemailMailer(SmtpConfig("127.0.0.1", free_port(), timeout_s=5.0), dt.UTC)
    with pytest.raises(EmailError) as exc:
        asyncio.run(mailer.send(message(tmp_path, AUDIO), "ann@example.com"))
    assert exc.value.field == "smtp"


def test_missing_audio_is_a_typed_error(tmp_path: Path) -> None:
    info = message(tmp_path, AUDIO)
    Path(info.audio_path).unlink()
    mailer = VoicemailMailer(SmtpConfig("127.0.0.1", free_port()), dt.UTC)
    with pytest.raises(EmailError) as exc:
        asyncio.run(mailer.send(info, "ann@example.com"))
    assert exc.value.field == "audio"


@pytest.mark.parametrize("to", ["nobody", "ann@example.com\r\nBcc: eve@example.com"])
def test_header_injection_refused(tmp_path: Path, to: str) -> None:
    with pytest.raises(EmailError) as exc:
        build_email(message(tmp_path, AUDIO), to, "pbx@example.com", None, dt.UTC)
    assert exc.value.field == "to"


def test_unknown_caller_subject(tmp_path: Path) -> None:
    info = MessageInfo(1, "201", Folder.NEW, "", "", T0, 3.0, str(tmp_path / "m.wav"))
    msg = build_email(info, "ann@example.com", "pbx@example.com", None, dt.UTC)
    assert msg["Subject"] == "New voicemail from unknown (0:03)"
