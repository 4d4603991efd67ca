"""The SIP core's exceptions: one root, remote (parse) errors that carry their answer, local misuse.

STYLE 3.5: the parser and the sanity checks raise only ``SipParseError``; it carries the status and reason
phrase to answer with, and, when the message could be split into a start line and headers, the partial
message so the endpoint can address a stateless answer to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.sip.message import Message


class SipError(Exception):
    """Root of every error the SIP core raises."""


class SipParseError(SipError):
    """The peer sent something we cannot accept; answer with ``status`` and ``reason`` when addressable.

    Attributes:
        status: the SIP status to answer with (400 unless a more specific one applies).
        reason: a short human phrase, sent as the reason phrase.
        header: the (lower-case, long-form) header at fault, if any.
        message: the message as far as it could be split, or None when nothing is addressable.
        extra_headers: headers the answer must carry (e.g. ``Unsupported`` with a 420).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        header: str | None = None,
        message: Message | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.header = header
        self.message = message
        self.extra_headers = extra_headers


class LocalProtocolError(SipError):
    """Our own code asked the core for something the protocol state does not allow (a bug here)."""
