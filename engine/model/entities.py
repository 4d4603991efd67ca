"""The minimal admin domain: company, users, lines, phone numbers, dial plans and trunks as frozen values.

These are plain values; rules about them live in ``engine.model.rules`` and persistence in ``engine.store``.
A line's SIP username is its extension. Line passwords are never kept: a line holds the two digest HA1
values for the company's realm, so changing ``Company.sip_realm`` needs new SIP passwords for every line.
Trunk passwords are the exception (see ``Trunk``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

DEFAULT_FIRST_EXTENSION = 201
DEFAULT_SIP_REALM = "pbx-engine"
DEFAULT_TIMEZONE = "Europe/Berlin"
DEFAULT_COUNTRY = "DE"

DIAL_PERMISSIONS: Final = ("internal", "local", "national", "mobile", "international")
"""What a line may dial, in this order wherever the set is written out. Emergency numbers are not a
permission: every line may always call them."""
DEFAULT_DIAL_PERMISSIONS: Final = frozenset({"internal", "local", "national", "mobile"})
"""International calls must be granted: they are where toll fraud with stolen SIP credentials costs money."""
DEFAULT_TRUNK_PORT: Final = 5060
TRUNK_TRANSPORTS: Final = ("UDP", "TCP")


@dataclass(frozen=True, slots=True)
class Company:
    """The one company this engine serves.

    ``country`` is the ISO 3166-1 alpha-2 code used to read national numbers; ``first_extension`` is where
    the search for a free extension starts. ``area_code`` is the national area code without the trunk
    prefix ("30" for Berlin, not "030"): a number dialled without one is read as local to it.
    ``media_release_networks`` are networks (normalised CIDR strings) inside which two phones may send
    RTP to each other directly when both ends of a call are in the same one (the classic PBX "media
    release"); empty, the default, means the engine always anchors media, which also works across NAT.
    ``hold_clip`` names the sound clip callers hear on hold: a phone's hold and queues without a clip of
    their own (None: the system hold music). ``star_codes`` are the company's own codes for phone features
    as (feature, code) pairs, e.g. ``(("dnd_on", "*30"),)``; the features not named keep their defaults
    (``engine.dialplan.starcodes``, which checks them).
    """

    name: str
    sip_realm: str = DEFAULT_SIP_REALM
    timezone: str = DEFAULT_TIMEZONE
    country: str = DEFAULT_COUNTRY
    first_extension: int = DEFAULT_FIRST_EXTENSION
    area_code: str | None = None
    media_release_networks: tuple[str, ...] = ()
    hold_clip: str | None = None
    star_codes: tuple[tuple[str, str], ...] = ()


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
    """An extension with SIP credentials; the SIP username is ``extension``.

    ``external_caller_id`` (one of the company's numbers, E.164) is what the line presents on outbound
    calls. ``dial_permissions`` is a subset of ``DIAL_PERMISSIONS``; emergency numbers are always allowed.
    """

    id: int
    user_id: int
    extension: str
    name: str
    external_caller_id: str | None
    ha1_md5: str
    ha1_sha256: str
    dial_permissions: frozenset[str] = DEFAULT_DIAL_PERMISSIONS


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


@dataclass(frozen=True, slots=True)
class Trunk:
    """A carrier connection: where inbound calls may come from and where outbound calls go.

    ``sources`` are the networks (normalised CIDR strings, a single address as ``/32`` or ``/128``) an
    inbound INVITE may come from; a trunk is trusted by source address, not by digest. No two trunks'
    sources overlap, so a source address names at most one trunk. Empty means the trunk takes no inbound
    calls. ``host``/``port``/``transport`` are where outbound requests go; ``from_domain`` is the host
    part of the From of outbound calls (None: ``host``).

    ``username``/``password`` are the digest credentials the carrier asks of us on outbound calls. Unlike a
    line's, this password is kept in clear text: we compute digest responses with it, so a hash would not
    do (a carrier's challenge may name any realm and algorithm). Protect the data directory accordingly.

    The first trunk with ``outbound`` set (in file order: ``Store.trunks()`` order) carries outbound calls.
    """

    id: int
    name: str
    sources: tuple[str, ...]
    host: str
    port: int = DEFAULT_TRUNK_PORT
    transport: str = "UDP"
    username: str | None = None
    password: str | None = None
    from_domain: str | None = None
    outbound: bool = True
