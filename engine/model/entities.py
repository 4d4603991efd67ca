"""The minimal admin domain: company, users, lines, phone numbers and dial plans as frozen values.

These are plain values; rules about them live in ``engine.model.rules`` and persistence in ``engine.store``.
A line's SIP username is its extension. Passwords are never kept: a line holds the two digest HA1 values
for the company's realm, so changing ``Company.sip_realm`` needs new SIP passwords for every line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_FIRST_EXTENSION = 201
DEFAULT_SIP_REALM = "pbx-engine"
DEFAULT_TIMEZONE = "Europe/Berlin"
DEFAULT_COUNTRY = "DE"


@dataclass(frozen=True, slots=True)
class Company:
    """The one company this engine serves.

    ``country`` is the ISO 3166-1 alpha-2 code used to read national numbers; ``first_extension`` is where
    the search for a free extension starts.
    """

    name: str
    sip_realm: str = DEFAULT_SIP_REALM
    timezone: str = DEFAULT_TIMEZONE
    country: str = DEFAULT_COUNTRY
    first_extension: int = DEFAULT_FIRST_EXTENSION


@dataclass(frozen=True, slots=True)
class User:
    """A person; reaches the PBX through one or more lines."""

    id: int
    first_name: str
    last_name: str
    email: str | None = None

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True, slots=True)
class Line:
    """An extension with SIP credentials; the SIP username is ``extension``."""

    id: int
    user_id: int
    extension: str
    name: str
    external_caller_id: str | None
    ha1_md5: str
    ha1_sha256: str


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A public number (E.164) and where calls to it go: ``route_kind`` names the kind of destination
    (``dial_plan`` or ``extension`` for now) and ``route_target`` the destination's name or extension."""

    e164: str
    route_kind: str
    route_target: str


@dataclass(frozen=True, slots=True)
class DialPlan:
    """A named node graph, kept as an opaque JSON-able mapping until the dial-plan compiler owns it."""

    id: int
    name: str
    graph: dict[str, Any] = field(default_factory=dict)
