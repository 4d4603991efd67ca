"""Voicemail to e-mail: a new message as an e-mail with its WAV attached, sent over SMTP off the event loop.

``build_email`` is pure (it takes the audio bytes); ``send_email`` is the blocking SMTP exchange
(``smtplib``); ``VoicemailMailer.send`` reads the audio and sends from a worker thread
(``asyncio.to_thread``), so the event loop never waits on the disk or the mail server. A failure is raised
as ``EmailError`` to the awaiting task; the call controller logs it (the message itself is already stored).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Final

from engine.voicemail.model import MessageInfo, VoicemailError

DEFAULT_SMTP_PORT: Final = 25
DEFAULT_TIMEOUT_S: Final = 30.0


class EmailError(VoicemailError):
    """The e-mail could not be built or sent (``field`` says which part: ``smtp``, ``audio``, ``to``)."""


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to send. ``starttls`` upgrades a plain connection; ``username`` enables AUTH."""

    host: str = "localhost"
    port: int = DEFAULT_SMTP_PORT
    sender: str = "voicemail@localhost"
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


def _duration_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def check_addresses(**addresses: str) -> None:
    """Refuse what is no address before it goes into a header (CR/LF would inject headers).

    Raises:
        EmailError: the first bad one (``field`` is its keyword: ``to``, ``sender``).
    """
    for field_name, address in addresses.items():
        if "@" not in address or any(c in address for c in "\r\n"):
            raise EmailError(field_name, f"not an e-mail address: {address!r}")


def new_email(to: str, sender: str, subject: str, when: datetime) -> EmailMessage:
    """An e-mail's envelope (From, To, Subject, Date, a Message-ID in the sender's domain) for the PBX's
    notices: voicemail and received faxes.

    Raises:
        EmailError: ``to`` or ``sender`` is not an address (CR/LF would inject headers).
    """
    check_addresses(to=to, sender=sender)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(when.timestamp(), localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    return msg


def build_email(
    info: MessageInfo,
    to: str,
    sender: str,
    audio: bytes | None,
    tz: tzinfo,
    mailbox_label: str = "",
) -> EmailMessage:
    """The e-mail for ``info``: a text body (caller, time in ``tz``, duration) and the WAV when given.

    Args:
        info: the stored message.
        to: the mailbox owner's address.
        sender: the From address.
        audio: the message's WAV bytes, or None to send the notice without the attachment.
        tz: the time zone the time is written in (the company's).
        mailbox_label: how to name the mailbox in the text ("201" or "Sales"); the number by default.

    Raises:
        EmailError: ``to`` or ``sender`` is not an address (CR/LF would inject headers).
    """
    caller = info.caller or "unknown"
    who = f"{info.caller_name} <{caller}>" if info.caller_name and info.caller_name != caller else caller
    when = info.received_at.astimezone(tz)
    label = mailbox_label or info.mailbox
    msg = new_email(to, sender, f"New voicemail from {who} ({_duration_text(info.duration_s)})", when)
    msg.set_content(
        f"You have a new voicemail in mailbox {label}.\n\n"
        f"From:     {who}\n"
        f"Received: {when.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
        f"Length:   {_duration_text(info.duration_s)}\n"
        f"Message:  {info.id}\n" + ("\nThe recording is attached.\n" if audio is not None else "")
    )
    if audio is not None:
        msg.add_attachment(audio, maintype="audio", subtype="wav", filename=Path(info.audio_path).name)
    return msg


def send_email(config: SmtpConfig, message: EmailMessage) -> None:
    """Send ``message`` over SMTP (blocking: call it from a worker thread).

    Raises:
        EmailError: the connection, TLS, login or delivery failed (``field`` is ``smtp``).
    """
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.username is not None:
                smtp.login(config.username, config.password or "")
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailError("smtp", f"sending to {config.host}:{config.port} failed: {exc}") from exc


class VoicemailMailer:
    """Sends new-message e-mails without blocking the event loop."""

    def __init__(self, config: SmtpConfig, tz: tzinfo) -> None:
        self.config = config
        self.tz = tz

    def _build_and_send(self, info: MessageInfo, to: str, attach: bool, label: str) -> None:
        audio: bytes | None = None
        if attach:
            try:
                audio = Path(info.audio_path).read_bytes()
            except OSError as exc:
                raise EmailError("audio", f"cannot read {info.audio_path}: {exc}") from exc
        send_email(self.config, build_email(info, to, self.config.sender, audio, self.tz, label))

    async def send(self, info: MessageInfo, to: str, *, attach: bool = True, mailbox_label: str = "") -> None:
        """Build and send the e-mail for ``info`` to ``to`` in a worker thread.

        Raises:
            EmailError: building, reading the audio or sending failed.
        """
        await asyncio.to_thread(self._build_and_send, info, to, attach, mailbox_label)
