"""Validation rules for admin input and the free-extension search.

Each ``check_*`` function takes the raw value as it came from YAML, JSON or a command line, returns the
normalised value or raises ``ModelError`` naming ``field``. Callers that validate a nested document pass the
path (``users[3].extension``) or re-home the error with ``ModelError.under``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import zoneinfo
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final

from engine.model.entities import DIAL_PERMISSIONS, TRUNK_TRANSPORTS
from engine.model.errors import ModelError

EXTENSION_RE: Final = re.compile(r"[0-9]{3,6}")
MIN_EXTENSION: Final = 100
MAX_EXTENSION: Final = 999_999
E164_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_E164_SEPARATORS: Final = re.compile(r"[\s\-./()]")
EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
REALM_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-_]{0,252}")
PLAN_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")
AREA_CODE_RE: Final = re.compile(r"[0-9]{1,6}")
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
MAX_HOSTNAME: Final = 253
MAX_NAME = 100
MAX_PASSWORD = 128
ROUTE_KINDS: Final = (
    "extension",
    "dial_plan",
    "ring_group",
    "queue",
    "conference_room",
    "fax_line",
    "mailbox",
    "number",
)
"""Where a number can route: a line (by extension), a dial plan, a ring group, a call queue, a conference
room, a fax line, a shared voicemail box (by name) or another of the company's numbers (E.164)."""
ROUTING_OBJECT_KINDS: Final = (
    "ring_groups",
    "schedules",
    "sound_clips",
    "mailboxes",
    "queues",
    "conference_rooms",
    "fax_lines",
)
"""The document sections holding routing objects: JSON specs that the dial-plan compiler validates."""


def check_text(value: object, field: str, *, max_len: int = MAX_NAME) -> str:
    """A required single-line string, stripped, 1..max_len characters."""
    if not isinstance(value, str):
        raise ModelError(field, "must be a string")
    return _check_line(value.strip(), field, max_len)


def check_star_codes(value: object, field: str) -> tuple[tuple[str, str], ...]:
    """A company's own star codes, ``{feature: code}`` (text to text), as sorted pairs; which features
    exist and which codes are valid is the dial-plan compiler's check (``engine.dialplan.starcodes``).

    Raises:
        ModelError: not a mapping of text to text (the entry named).
    """
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ModelError(field, "must be a mapping of feature to code, e.g. {dnd_on: \"*78\"}")
    for key, code in value.items():
        if not isinstance(key, str) or not isinstance(code, str):
            raise ModelError(f"{field}.{key}", "must be a code as text, e.g. \"*78\"")
    return tuple(sorted(value.items()))


def _check_line(text: str, field: str, max_len: int) -> str:
    """Non-empty, at most ``max_len`` characters, no control characters."""
    if not text:
        raise ModelError(field, "must not be empty")
    if len(text) > max_len:
        raise ModelError(field, f"must be at most {max_len} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ModelError(field, "must not contain control characters")
    return text


def check_extension(value: object, field: str = "extension") -> str:
    """3-6 digits. YAML integers are accepted and read as their decimal digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ModelError(field, "must be a string of 3-6 digits")
    text = value.strip()
    if not EXTENSION_RE.fullmatch(text):
        raise ModelError(field, f"{text!r} is not 3-6 digits")
    return text


def check_first_extension(value: object, field: str = "first_extension") -> int:
    """Where free-extension search starts: a number of 3-6 digits."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_EXTENSION <= value <= MAX_EXTENSION:
        raise ModelError(field, f"must be a number from {MIN_EXTENSION} to {MAX_EXTENSION}")
    return value


def check_email(value: object, field: str = "email") -> str | None:
    """An optional e-mail address (None or empty means none)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ModelError(field, "must be a string")
    text = value.strip()
    if not text:
        return None
    if len(text) > 254 or not EMAIL_RE.fullmatch(text) or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ModelError(field, f"{text!r} is not an e-mail address")
    return text


def check_sip_password(value: object, field: str = "sip_password") -> str:
    """A SIP password as given (not stripped: spaces count), 1..128 printable characters."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ModelError(field, "must be a string")
    return _check_line(str(value), field, MAX_PASSWORD)


def check_e164(value: object, field: str = "number") -> str:
    """An E.164 number; spaces, dashes, dots and parentheses are dropped (``+49 30 23125-100``)."""
    if not isinstance(value, str):
        raise ModelError(field, "must be a string in E.164 form, e.g. '+49 30 23125 100'")
    text = _E164_SEPARATORS.sub("", value)
    if not E164_RE.fullmatch(text):
        raise ModelError(field, f"{value!r} is not an E.164 number (+, country code, 7-15 digits)")
    return text


def check_realm(value: object, field: str = "sip_realm") -> str:
    """A digest realm: a host-like token (letters, digits, '.', '-', '_')."""
    if not isinstance(value, str) or not REALM_RE.fullmatch(value.strip()):
        raise ModelError(field, "must be a host-like name (letters, digits, '.', '-', '_')")
    return value.strip()


def check_timezone(value: object, field: str = "timezone") -> str:
    """An IANA time zone name known to this system (``Europe/Berlin``)."""
    if not isinstance(value, str) or not value.strip():
        raise ModelError(field, "must be an IANA time zone name such as 'Europe/Berlin'")
    name = value.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ModelError(field, f"unknown time zone {name!r}") from None
    return name


def check_country(value: object, field: str = "country") -> str:
    """An ISO 3166-1 alpha-2 country code, upper-cased."""
    if not isinstance(value, str) or not COUNTRY_RE.fullmatch(value.strip().upper()):
        raise ModelError(field, "must be a two-letter country code such as 'DE'")
    return value.strip().upper()


def check_plan_name(value: object, field: str = "name") -> str:
    """A dial-plan or trunk name: letters, digits, '_', '.', '-'; up to 64 characters."""
    if not isinstance(value, str) or not PLAN_NAME_RE.fullmatch(value):
        raise ModelError(field, "must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def check_graph(value: object, field: str = "graph") -> dict[str, Any]:
    """A JSON-able mapping with string keys (the dial-plan graph, opaque for now)."""
    if not isinstance(value, dict):
        raise ModelError(field, "must be a mapping")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelError(field, f"must be JSON data: {exc}") from None
    return value


def check_route_kind(value: object, field: str = "route.kind") -> str:
    """The kind of destination a number routes to."""
    if not isinstance(value, str) or value not in ROUTE_KINDS:
        raise ModelError(field, f"must be one of {', '.join(ROUTE_KINDS)}")
    return value


def check_area_code(value: object, field: str = "area_code") -> str | None:
    """An optional national area code without the trunk prefix: 1-6 digits ("30" for Berlin).

    YAML integers are read as their decimal digits; None or empty means none.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ModelError(field, "must be a string of digits, e.g. '30'")
    text = value.strip()
    if not text:
        return None
    if not AREA_CODE_RE.fullmatch(text):
        raise ModelError(field, f"{text!r} is not 1-6 digits (write the area code without spaces)")
    return text


def check_network(value: object, field: str) -> str:
    """An IP address or network (IPv4 or IPv6), normalised to CIDR text (``192.0.2.7`` -> ``192.0.2.7/32``).

    A network with host bits set (``192.0.2.7/24``) is refused rather than silently widened: it is more
    likely a typo for an address or for a different network than what ``strict=False`` would make of it.
    """
    if not isinstance(value, str):
        raise ModelError(field, "not an IP address or network (write it as a string)")
    text = value.strip()
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        pass
    try:
        widened = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ModelError(field, f"not an IP address or network: {text!r}") from None
    raise ModelError(field, f"{text} has host bits set (the network would be {widened})")


def check_networks(value: object, field: str) -> tuple[str, ...]:
    """A list of addresses or networks (see ``check_network``); errors name the item (``field[1]``)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ModelError(field, "must be a list of IP addresses or networks")
    return tuple(check_network(item, f"{field}[{i}]") for i, item in enumerate(value))


def check_dial_permissions(value: object, field: str = "dial_permissions") -> frozenset[str]:
    """A list of permission names from ``DIAL_PERMISSIONS``; empty allows emergency numbers only."""
    if not isinstance(value, list | tuple | set | frozenset):
        raise ModelError(field, f"must be a list of: {', '.join(DIAL_PERMISSIONS)}")
    names: set[str] = set()
    for i, item in enumerate(value):
        at = f"{field}[{i}]"
        if not isinstance(item, str):
            raise ModelError(at, f"must be one of: {', '.join(DIAL_PERMISSIONS)}")
        if item == "emergency":
            raise ModelError(at, "emergency numbers are always allowed; it is not a permission")
        if item not in DIAL_PERMISSIONS:
            raise ModelError(at, f"unknown permission {item!r} (expected: {', '.join(DIAL_PERMISSIONS)})")
        names.add(item)
    return frozenset(names)


def format_dial_permissions(permissions: Collection[str]) -> list[str]:
    """The permissions in ``DIAL_PERMISSIONS`` order (how they are stored and shown)."""
    return [name for name in DIAL_PERMISSIONS if name in permissions]


def check_host(value: object, field: str = "host") -> str:
    """A host name or an IP address literal (IPv6 without brackets); the port goes elsewhere."""
    if not isinstance(value, str):
        raise ModelError(field, "must be a host name or an IP address")
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if len(text) <= MAX_HOSTNAME and HOSTNAME_RE.fullmatch(text):
        return text
    hint = " (give the port separately)" if ":" in text else ""
    raise ModelError(field, f"{text!r} is not a host name or an IP address{hint}")


def check_port(value: object, field: str = "port") -> int:
    """A UDP/TCP port, 1-65535 (a YAML integer or a string of digits)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ModelError(field, "must be a port number from 1 to 65535")
    return value


def check_transport(value: object, field: str = "transport") -> str:
    """A SIP transport we can send on, upper-cased (``udp`` -> ``UDP``)."""
    if not isinstance(value, str) or value.strip().upper() not in TRUNK_TRANSPORTS:
        raise ModelError(field, f"must be one of {', '.join(TRUNK_TRANSPORTS)}")
    return value.strip().upper()


def check_digest_username(value: object, field: str = "username") -> str:
    """A digest username we send: printable, no spaces, no '"' or '\\' (it goes into a quoted-string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ModelError(field, "must be a string")
    text = _check_line(value.strip(), field, MAX_PASSWORD)
    if any(ch.isspace() or ch in '"\\' for ch in text):
        raise ModelError(field, "must not contain spaces, '\"' or '\\'")
    return text


def check_flag(value: object, field: str) -> bool:
    """A YAML/JSON boolean (``true``/``false``), nothing else."""
    if not isinstance(value, bool):
        raise ModelError(field, "must be true or false")
    return value


def check_unique_extension(extension: str, in_use: Collection[str], field: str = "extension") -> str:
    """``extension`` unless it is taken."""
    if extension in in_use:
        raise ModelError(field, f"{extension} is already in use")
    return extension


def next_free_extension(in_use: Collection[str], first: int = 201) -> str:
    """The lowest unused extension >= ``first`` (numeric order; 3-6 digits)."""
    return next(free_extensions(in_use, first))


def free_extensions(in_use: Collection[str], first: int = 201) -> Iterator[str]:
    """Unused extensions from ``first`` upwards, lowest first; for assigning many at once.

    The caller adds what it takes to ``in_use`` if it needs later calls to see them; this iterator never
    yields the same value twice. Raises ``ModelError("extension", ...)`` when the 6-digit range is exhausted.
    """
    candidate = max(first, MIN_EXTENSION)
    while candidate <= MAX_EXTENSION:
        text = str(candidate)
        if text not in in_use:
            yield text
        candidate += 1
    raise ModelError("extension", f"no free extension from {first} to {MAX_EXTENSION}")
