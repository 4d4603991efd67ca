"""The company's table of star codes (issue 19 part 6): which dialled code runs which phone feature.

A phone dials a code (``*78``), or a code followed by an argument (``*72`` then the number to forward to,
``*45`` then a queue's extension, ``*98`` then a mailbox). The table maps each ``Feature`` to its code;
a company may change any code (``company.star_codes: {dnd_on: "*30", ...}`` in the company file, the
store and ``GET /api/company``); the rest keep their defaults, which follow FreePBX/Asterisk where it has
the feature (``*72``/``*73`` forward, ``*78``/``*79`` DND, ``*90``-``*93`` forward busy/no answer,
``*45`` queue login; ``*11``/``*12`` hot-desk login/logout) and keep the engine's voicemail codes
(``*98``, ``*99``).

``check_table`` is the compiler's part: every code is 2-8 keys of 0-9, ``*``, ``#``; no code is used
twice; a code that takes an argument may not begin another code (``*4`` + queue would swallow ``*45``);
no code is an extension, and no extension begins with a code that takes an argument (``*`` codes never
clash with extensions, but a company may choose digit codes). Each issue names the field
(``company.star_codes.dnd_on``). ``StarCodeTable.match`` is what routing asks of a dialled string: the
feature and its argument, or None. Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


class Feature(enum.Enum):
    """A phone feature reached by a star code (the value is its key in ``company.star_codes``)."""

    VOICEMAIL_OWN = "voicemail_own"
    VOICEMAIL_ANY = "voicemail_any"
    DND_ON = "dnd_on"
    DND_OFF = "dnd_off"
    FORWARD_ALWAYS_ON = "forward_always_on"
    FORWARD_ALWAYS_OFF = "forward_always_off"
    FORWARD_BUSY_ON = "forward_busy_on"
    FORWARD_BUSY_OFF = "forward_busy_off"
    FORWARD_NO_ANSWER_ON = "forward_no_answer_on"
    FORWARD_NO_ANSWER_OFF = "forward_no_answer_off"
    QUEUE_LOGIN = "queue_login"
    QUEUE_LOGOUT = "queue_logout"
    QUEUE_PAUSE = "queue_pause"
    PARK = "park"  # the park extension: a blind transfer to it parks the call (engine.call.park)
    PICKUP = "pickup"  # directed pickup: the code and a ringing extension (engine.call.pickup)
    HOT_DESK_LOGIN = "hot_desk_login"
    HOT_DESK_LOGOUT = "hot_desk_logout"


DEFAULT_CODES: Final[Mapping[Feature, str]] = MappingProxyType({
    Feature.VOICEMAIL_OWN: "*99",
    Feature.VOICEMAIL_ANY: "*98",
    Feature.DND_ON: "*78",
    Feature.DND_OFF: "*79",
    Feature.FORWARD_ALWAYS_ON: "*72",
    Feature.FORWARD_ALWAYS_OFF: "*73",
    Feature.FORWARD_BUSY_ON: "*90",
    Feature.FORWARD_BUSY_OFF: "*91",
    Feature.FORWARD_NO_ANSWER_ON: "*92",
    Feature.FORWARD_NO_ANSWER_OFF: "*93",
    Feature.QUEUE_LOGIN: "*45",
    Feature.QUEUE_LOGOUT: "*46",
    Feature.QUEUE_PAUSE: "*47",
    Feature.PARK: "70",
    Feature.PICKUP: "**",
    Feature.HOT_DESK_LOGIN: "*11",  # then the dialable username and password (asked for)
    Feature.HOT_DESK_LOGOUT: "*12",
})
"""The codes a company gets unless its ``star_codes`` say otherwise."""

TAKES_ARGUMENT: Final = frozenset({
    Feature.VOICEMAIL_ANY,  # the mailbox (bare: asked for)
    Feature.FORWARD_ALWAYS_ON, Feature.FORWARD_BUSY_ON, Feature.FORWARD_NO_ANSWER_ON,  # the number
    Feature.QUEUE_LOGIN, Feature.QUEUE_LOGOUT,  # a queue's extension (bare: every queue of the agent)
    Feature.PICKUP,  # the ringing extension
})
"""Features whose code may be followed by digits (an argument); the others are dialled alone."""

PARK_SLOTS: Final = 9
"""How many orbits the park extension has: 70 parks on 71-79 (as FreePBX numbers its default lot)."""
HOT_DESK_FEATURES: Final = frozenset({Feature.HOT_DESK_LOGIN, Feature.HOT_DESK_LOGOUT})
"""Codes a desk phone dials as itself (every other call from a phone with a hot-desk login is the user's)."""

_CODE_RE: Final = re.compile(r"[0-9*#]{2,8}")
_ARGUMENT_RE: Final = re.compile(r"\+?[0-9]{1,20}")
FIELD: Final = "company.star_codes"


@dataclass(frozen=True, slots=True)
class StarCode:
    """A dialled string that is a star code: ``argument`` is what followed the code ("" when nothing)."""

    feature: Feature
    code: str
    argument: str = ""


@dataclass(frozen=True, slots=True)
class StarCodeTable:
    """The company's codes, feature -> code (every feature has one)."""

    codes: Mapping[Feature, str]

    def code(self, feature: Feature) -> str:
        return self.codes[feature]

    def park_slots(self) -> tuple[str, ...]:
        """The orbits of the park extension (``park_slots``)."""
        return park_slots(self.codes[Feature.PARK])

    def match(self, dialled: str) -> StarCode | None:
        """The star code ``dialled`` is: a code exactly, or a code that takes an argument followed by one
        (digits, optionally after ``+``); None when it is none (routing goes on with extensions and numbers).

        Raises:
            Nothing.
        """
        for feature, code in self.codes.items():
            if dialled == code:
                return StarCode(feature, code)
            if feature in TAKES_ARGUMENT and dialled.startswith(code) \
                    and _ARGUMENT_RE.fullmatch(dialled[len(code):]):
                return StarCode(feature, code, dialled[len(code):])
        return None


DEFAULT_TABLE: Final = StarCodeTable(DEFAULT_CODES)


def park_slots(code: str) -> tuple[str, ...]:
    """The orbits of park extension ``code``: the next ``PARK_SLOTS`` numbers when it is all digits (70:
    71-79, FreePBX's default lot; 700: 701-709), else the code followed by 1-9 (``*70``: ``*701``...)."""
    if code.isdigit():
        return tuple(str(int(code) + i).zfill(len(code)) for i in range(1, PARK_SLOTS + 1))
    return tuple(f"{code}{i}" for i in range(1, PARK_SLOTS + 1))


def read_overrides(raw: object, report: Callable[[str, str], None]) -> dict[Feature, str]:
    """A company's ``star_codes`` (feature key -> code) checked key by key: unknown keys and malformed
    codes are reported (``report(field, message)``) and left out.

    Raises:
        Nothing: every problem is reported.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        report(FIELD, "must be a mapping of feature to code, e.g. {dnd_on: \"*78\"}")
        return {}
    known = {f.value: f for f in Feature}
    out: dict[Feature, str] = {}
    for key, code in raw.items():
        field = f"{FIELD}.{key}"
        feature = known.get(key) if isinstance(key, str) else None
        if feature is None:
            report(field, f"unknown feature (expected one of: {', '.join(sorted(known))})")
        elif not isinstance(code, str) or not _CODE_RE.fullmatch(code):
            report(field, f"must be 2-8 keys of 0-9, * and # as text, got {code!r}")
        else:
            out[feature] = code
    return out


def check_table(raw: object, extensions: Mapping[str, str],
                report: Callable[[str, str], None]) -> StarCodeTable:
    """The company's table: its ``star_codes`` over the defaults, every clash reported.

    Args:
        raw: ``Company.star_codes`` (feature key -> code), or None.
        extensions: every extension in use -> what owns it ("line 201", "queue 'support'").
        report: called with (field, message) for each problem.
    Returns:
        The table (with a clashing code still in it: the compiler refuses the configuration anyway).
    Raises:
        Nothing.
    """
    codes = dict(DEFAULT_CODES)
    codes.update(read_overrides(raw, report))
    by_code: dict[str, Feature] = {}
    for feature, code in codes.items():
        field = f"{FIELD}.{feature.value}"
        other = by_code.get(code)
        if other is not None:
            report(field, f"{code} is already the code of {other.value}")
            continue
        by_code[code] = feature
        owner = extensions.get(code)
        if owner is not None:
            report(field, f"{code} is the extension of {owner}")
        elif feature in TAKES_ARGUMENT:
            begun = sorted(ext for ext in extensions if ext.startswith(code))
            if begun:
                report(field, f"{code} takes digits after it, so it would shadow extension {begun[0]} "
                              f"({extensions[begun[0]]})")
    park_field = f"{FIELD}.{Feature.PARK.value}"
    for slot in park_slots(codes[Feature.PARK]):
        if slot in extensions:
            report(park_field, f"its orbit {slot} is the extension of {extensions[slot]}")
        elif slot in by_code:
            report(park_field, f"its orbit {slot} is the code of {by_code[slot].value}")
    for feature, code in codes.items():
        if feature not in TAKES_ARGUMENT or by_code.get(code) is not feature:
            continue
        for other_code, other in by_code.items():
            if other is not feature and other_code.startswith(code):
                report(f"{FIELD}.{feature.value}", f"{code} takes digits after it, so it would shadow "
                                                   f"{other_code} ({other.value})")
    return StarCodeTable(MappingProxyType(codes))
