"""Greeting precedence, PIN hashing and input validation of the pure voicemail model."""

from __future__ import annotations

import pytest

from engine.model.errors import ModelError
from engine.script import File, Sound
from engine.voicemail.model import (
    DepositReason,
    GreetingKind,
    Mailbox,
    VoicemailError,
    choose_greeting,
    digit_sounds,
    hash_pin,
    validate_mailbox_number,
    validate_pin,
    verify_pin,
)

SALT = b"0123456789abcdef"
UNAV, BUSY, TEMP = "/vm/201/u.wav", "/vm/201/b.wav", "/vm/201/t.wav"


def box(
    greetings: dict[GreetingKind, str], temporary_active: bool = False, name: str | None = None
) -> Mailbox:
    return Mailbox("201", hash_pin("0000", SALT, 1), greetings, temporary_active, name)


ALL = {GreetingKind.UNAVAILABLE: UNAV, GreetingKind.BUSY: BUSY, GreetingKind.TEMPORARY: TEMP}
DEFAULT_UNAVAILABLE = (
    Sound("vm-person-at-extension"),
    Sound("digit-2"),
    Sound("digit-0"),
    Sound("digit-1"),
    Sound("vm-not-available"),
)
DEFAULT_BUSY = (*DEFAULT_UNAVAILABLE[:-1], Sound("vm-busy"))


@pytest.mark.parametrize(
    ("greetings", "temp_on", "reason", "kind", "items"),
    [
        (ALL, True, DepositReason.UNAVAILABLE, GreetingKind.TEMPORARY, (File(TEMP),)),
        (ALL, True, DepositReason.BUSY, GreetingKind.TEMPORARY, (File(TEMP),)),
        (ALL, False, DepositReason.BUSY, GreetingKind.BUSY, (File(BUSY),)),
        (ALL, False, DepositReason.UNAVAILABLE, GreetingKind.UNAVAILABLE, (File(UNAV),)),
        # temporary switched on but never recorded: falls through
        (
            {GreetingKind.UNAVAILABLE: UNAV},
            True,
            DepositReason.UNAVAILABLE,
            GreetingKind.UNAVAILABLE,
            (File(UNAV),),
        ),
        # busy reason without a busy greeting: the unavailable one
        (
            {GreetingKind.UNAVAILABLE: UNAV},
            False,
            DepositReason.BUSY,
            GreetingKind.UNAVAILABLE,
            (File(UNAV),),
        ),
        # a busy greeting is never used when the line is merely unavailable
        ({GreetingKind.BUSY: BUSY}, False, DepositReason.UNAVAILABLE, None, DEFAULT_UNAVAILABLE),
        ({}, False, DepositReason.UNAVAILABLE, None, DEFAULT_UNAVAILABLE),
        ({}, True, DepositReason.BUSY, None, DEFAULT_BUSY),
    ],
)
def test_greeting_precedence(
    greetings: dict[GreetingKind, str],
    temp_on: bool,
    reason: DepositReason,
    kind: GreetingKind | None,
    items: tuple[object, ...],
) -> None:
    choice = choose_greeting(box(greetings, temp_on), reason)
    assert choice.kind is kind
    assert choice.items == items


def test_default_greeting_uses_recorded_name() -> None:
    choice = choose_greeting(box({}, name="/vm/201/name.wav"), DepositReason.UNAVAILABLE)
    assert choice.items == (File("/vm/201/name.wav"), Sound("vm-not-available"))


def test_digit_sounds() -> None:
    assert digit_sounds("2*#9") == (Sound("digit-2"), Sound("star"), Sound("pound"), Sound("digit-9"))
    assert digit_sounds("anonymous") == ()


def test_pin_hash_round_trip_and_salting() -> None:
    stored = hash_pin("0000", SALT)
    assert stored.startswith("pbkdf2_sha256$20000$")
    assert "0000" not in stored.split("$", 2)[2]
    assert verify_pin("0000", stored)
    assert not verify_pin("0001", stored)
    assert not verify_pin("00000", stored)
    other = hash_pin("0000", b"another salt....")
    assert other != stored and verify_pin("0000", other)


def test_pin_iterations_are_part_of_the_hash() -> None:
    stored = hash_pin("123456", SALT, iterations=5)
    assert stored.split("$")[1] == "5"
    assert verify_pin("123456", stored)


@pytest.mark.parametrize("pin", ["", "123", "12345678901", "12a4", "١٢٣٤", "12 34", "*123"])
def test_invalid_pins_rejected(pin: str) -> None:
    with pytest.raises(VoicemailError) as exc:
        validate_pin(pin)
    assert exc.value.field == "pin"
    assert isinstance(exc.value, ModelError)  # the CLI and API report it like any admin input error
    with pytest.raises(VoicemailError):
        hash_pin(pin, SALT)
    assert not verify_pin(pin, hash_pin("0000", SALT, 1))


@pytest.mark.parametrize("pin", ["0000", "1234567890", "98765"])
def test_valid_pins(pin: str) -> None:
    assert validate_pin(pin) == pin


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "0000",
        "md5$1$a$b",
        "pbkdf2_sha256$x$AAAA$AAAA",
        "pbkdf2_sha256$0$AAAAAAAAAAA=$AAAA",
        "pbkdf2_sha256$10$!!!$AAAA",
        "pbkdf2_sha256$10$AAAA",
    ],
)
def test_malformed_stored_hash_never_matches(stored: str) -> None:
    assert verify_pin("0000", stored) is False


def test_short_salt_rejected() -> None:
    with pytest.raises(VoicemailError) as exc:
        hash_pin("0000", b"short")
    assert exc.value.field == "salt"


@pytest.mark.parametrize("number", ["", "20a", "../etc", "12345678901", "2 1", "٢٠١"])
def test_mailbox_numbers_are_digits(number: str) -> None:
    with pytest.raises(VoicemailError) as exc:
        validate_mailbox_number(number)
    assert exc.value.field == "mailbox"
