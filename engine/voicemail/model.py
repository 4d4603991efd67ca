"""Mailboxes, message metadata, greeting choice and PIN hashing: pure, no audio, files or clock.

What a mailbox *is* lives here; where it is kept lives in ``engine.voicemail.store`` and what a caller hears
in ``engine.voicemail.flows``. Everything takes its inputs as arguments (times are tz-aware datetimes, salts
are bytes handed in), so it is unit-testable without a data directory.

Greeting precedence (issue 5, as GoTo Connect documents it): the **temporary** greeting while it is switched
on, else the **busy** greeting when the caller reached a busy line through a dial plan, else the
**unavailable** greeting, else a system default that names the mailbox ("The person at extension 2 0 1 is not
available"; the recorded name replaces "the person at extension" and the digits when there is one, as
Asterisk's ``vm-theperson`` does).

PINs: 4-10 digits, default ``0000``, stored as ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64) and
compared in constant time. PBKDF2 runs on the event loop once per attempt (at most three per call), so its
cost is kept to a few milliseconds: a PIN space of 10^4 cannot be protected by a slow hash against an
offline attacker anyway; the salt stops precomputed tables, and the online defence is hanging up after three
wrong tries. The iteration count is part of the stored value, so it can be raised without a migration.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from engine.model.errors import ModelError
from engine.script import File, PromptItem, Sound

DEFAULT_PIN: Final = "0000"
PIN_MIN_DIGITS: Final = 4
PIN_MAX_DIGITS: Final = 10
PIN_ITERATIONS: Final = 20_000
PIN_SALT_BYTES: Final = 16
PIN_SCHEME: Final = "pbkdf2_sha256"
DEFAULT_MAX_MESSAGES: Final = 100
DEFAULT_MAX_MESSAGE_S: Final = 180.0
DEFAULT_MAX_GREETING_S: Final = 120.0
#: A message shorter than this (after trailing silence is trimmed) is discarded (issue 5).
MIN_MESSAGE_S: Final = 1.0
MAILBOX_MAX_DIGITS: Final = 10


class VoicemailError(ModelError):
    """Invalid voicemail input (a PIN, a mailbox number, a limit); ``field`` names what is wrong."""


class MailboxFullError(VoicemailError):
    """The mailbox already holds its maximum number of messages."""


class GreetingKind(enum.Enum):
    """The three greeting types of the seed. The recorded name is not a greeting (``Mailbox.name_path``)."""

    UNAVAILABLE = "unavailable"
    BUSY = "busy"
    TEMPORARY = "temporary"


class Folder(enum.Enum):
    """Where a message is: ``NEW`` until heard to the end or saved with 9, then ``SAVED`` (Asterisk's Old)."""

    NEW = "new"
    SAVED = "saved"


class DepositReason(enum.Enum):
    """Why a caller is leaving a message. ``BUSY`` only when a dial plan sent a busy line to voicemail."""

    UNAVAILABLE = "unavailable"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One stored message. ``audio_path`` is the absolute path of its 8 kHz 16-bit mono WAV."""

    id: int
    mailbox: str
    folder: Folder
    caller: str  # the caller's number or user part; "" when withheld/unknown
    caller_name: str
    received_at: datetime  # tz-aware
    duration_s: float
    audio_path: str


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A mailbox's settings. Greeting and name paths are absolute (the store resolves them)."""

    number: str
    pin_hash: str
    greetings: Mapping[GreetingKind, str] = field(default_factory=dict)
    temporary_active: bool = False
    name_path: str | None = None
    email: str | None = None
    attach_audio: bool = True
    max_messages: int = DEFAULT_MAX_MESSAGES
    max_message_s: float = DEFAULT_MAX_MESSAGE_S


@dataclass(frozen=True, slots=True)
class GreetingChoice:
    """What a caller hears before the beep. ``kind`` is None for the system default."""

    kind: GreetingKind | None
    items: tuple[PromptItem, ...]


def validate_mailbox_number(number: str, field_name: str = "mailbox") -> str:
    """A mailbox number is 1-10 ASCII digits (it names a directory, so nothing else gets through).

    Raises:
        VoicemailError: not 1-10 digits.
    """
    if not (number.isascii() and number.isdigit() and 1 <= len(number) <= MAILBOX_MAX_DIGITS):
        raise VoicemailError(field_name, f"expected 1-{MAILBOX_MAX_DIGITS} digits, got {number!r}")
    return number


def digit_sounds(digits: str) -> tuple[Sound, ...]:
    """Say a digit string one digit at a time ("2 0 1"); ``*`` and ``#`` by name, anything else skipped."""
    names = {"*": "star", "#": "pound"}
    return tuple(
        Sound(f"digit-{ch}" if ch.isdigit() else names[ch]) for ch in digits if ch.isdigit() or ch in names
    )


def choose_greeting(mailbox: Mailbox, reason: DepositReason) -> GreetingChoice:
    """The greeting for a caller by precedence: temporary (on) > busy (reason busy) > unavailable > default.

    A greeting type counts only when a file is assigned; the temporary greeting also needs to be on.
    """
    greetings = mailbox.greetings
    temporary = greetings.get(GreetingKind.TEMPORARY)
    if mailbox.temporary_active and temporary:
        return GreetingChoice(GreetingKind.TEMPORARY, (File(temporary),))
    busy = greetings.get(GreetingKind.BUSY)
    if reason is DepositReason.BUSY and busy:
        return GreetingChoice(GreetingKind.BUSY, (File(busy),))
    unavailable = greetings.get(GreetingKind.UNAVAILABLE)
    if unavailable:
        return GreetingChoice(GreetingKind.UNAVAILABLE, (File(unavailable),))
    who: tuple[PromptItem, ...]
    if mailbox.name_path:
        who = (File(mailbox.name_path),)
    else:
        who = (Sound("vm-person-at-extension"), *digit_sounds(mailbox.number))
    tail = Sound("vm-busy") if reason is DepositReason.BUSY else Sound("vm-not-available")
    return GreetingChoice(None, (*who, tail))


# -- PINs -------------------------------------------------------------------------------------------------


def validate_pin(pin: str, field_name: str = "pin") -> str:
    """A PIN is 4-10 ASCII digits.

    Raises:
        VoicemailError: anything else (the message never repeats the PIN).
    """
    if not (pin.isascii() and pin.isdigit() and PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS):
        raise VoicemailError(field_name, f"a PIN is {PIN_MIN_DIGITS}-{PIN_MAX_DIGITS} digits")
    return pin


def hash_pin(pin: str, salt: bytes, iterations: int = PIN_ITERATIONS) -> str:
    """The stored form of ``pin``: ``pbkdf2_sha256$iterations$salt$hash`` with base64 salt and hash.

    Args:
        pin: 4-10 digits.
        salt: at least 8 random bytes, from the caller (the core reads no randomness).
        iterations: PBKDF2 rounds.

    Raises:
        VoicemailError: a PIN that is not 4-10 digits, a salt shorter than 8 bytes or iterations < 1.
    """
    validate_pin(pin)
    if len(salt) < 8:
        raise VoicemailError("salt", "at least 8 bytes")
    if iterations < 1:
        raise VoicemailError("iterations", "must be positive")
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode("ascii"), salt, iterations)
    return f"{PIN_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches ``stored`` (from ``hash_pin``), compared in constant time.

    A malformed stored value or a PIN that is not 4-10 digits never matches (and raises nothing: a caller
    typing garbage gets "invalid PIN", not an error).
    """
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != PIN_SCHEME or not parts[1].isdigit():
        return False
    if not (pin.isascii() and pin.isdigit() and PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS):
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    iterations = int(parts[1])
    if iterations < 1:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode("ascii"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
