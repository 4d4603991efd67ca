"""A conference room's options, checked (issue 13): the compiler's reader for ``conference_rooms`` entries.

Kept beside the compiler rather than in it so the room's rules read in one place: the PINs (4-10 digits,
not equal), the flags (true or false), and the combinations that cannot work (a waiting room or an end with
the last host in a room that has no host PIN, since only the host PIN makes a host). Every problem is a
``(field, message)`` pair; the compiler prefixes the object's path, and the API's 422 names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from engine.dialplan.plan import PIN_DIGITS, ConferenceRoom

ROOM_KEYS: Final = frozenset(
    {
        "name",
        "extension",
        "participant_pin",
        "host_pin",
        "waiting_room",
        "enter_muted",
        "end_with_last_host",
        "announce_participants",
        "omit_from_directory",
    }
)
_FLAGS: Final = (
    "waiting_room",
    "enter_muted",
    "end_with_last_host",
    "announce_participants",
    "omit_from_directory",
)
_NEEDS_HOST: Final = ("waiting_room", "end_with_last_host")


def read_room(name: str, raw: Mapping[str, Any]) -> tuple[ConferenceRoom | None, list[tuple[str, str]]]:
    """The room ``raw`` describes (its ``name`` and ``extension`` are the compiler's), or None and the
    problems found, each as (field, message).

    Raises:
        Nothing: every problem is returned.
    """
    problems: list[tuple[str, str]] = []
    pins: dict[str, str | None] = {}
    low, high = PIN_DIGITS
    for field in ("participant_pin", "host_pin"):
        pin = raw.get(field)
        if pin is not None and not (
            isinstance(pin, str) and pin.isascii() and pin.isdigit() and low <= len(pin) <= high
        ):
            problems.append((field, f"must be {low}-{high} digits as text, got {pin!r}"))
            pin = None
        pins[field] = pin
    if pins["host_pin"] is not None and pins["host_pin"] == pins["participant_pin"]:
        problems.append(("host_pin", "must differ from participant_pin (the host PIN is what makes a host)"))
    flags: dict[str, bool] = {}
    for field in _FLAGS:
        value = raw.get(field, False)
        if not isinstance(value, bool):
            problems.append((field, f"must be true or false, got {value!r}"))
            value = False
        flags[field] = value
    for field in _NEEDS_HOST:
        if flags[field] and raw.get("host_pin") is None:
            problems.append((field, "needs a host_pin: only a caller with the host PIN is a host"))
    if problems:
        return None, problems
    return (
        ConferenceRoom(
            name=name,
            participant_pin=pins["participant_pin"],
            host_pin=pins["host_pin"],
            **flags,
        ),
        [],
    )
