"""The administration model (issue 6): admin permissions, devices, secrets, locations, numbers and porting.

Pure values and ``check_*`` rules in the manner of ``engine.model.rules``: each takes raw input (JSON, CLI),
returns the normalised value or raises ``ModelError`` naming the field. No I/O, no clock, no global
randomness: salts and times are arguments.

- Admin permissions follow the seed: *super admin* (everything), *custom* (any of configure PBX, view
  invoices, pay invoices, view reports) or *none*.
- MAC addresses are 12 hex digits, accepted as ``001565aabbcc``, ``00:15:65:AA:BB:CC``,
  ``00-15-65-aa-bb-cc`` or ``0015.65aa.bbcc`` and stored lower-case without separators.
- Dialable username/password (hot desking, the phone's login menu) are numeric, at least 4 digits; the
  password defaults to ``0000`` and is separate from the voicemail PIN.
- Emergency locations are verified only in the US and Canada; the street line is normalised the way
  the USPS writes it (``South`` -> ``S``, ``Street`` -> ``St``).
- A port-in request moves draft -> submitted -> foc_set -> completed, or to rejected (with a reason)
  from submitted or foc_set; a rejected request can be reopened as a draft. ``PORT_TRANSITIONS`` is the
  whole table; a missing (state, action) pair is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from engine.model import rules
from engine.model.errors import ModelError

ADMIN_ROLES: Final = ("super_admin", "custom", "none")
ADMIN_PERMISSIONS: Final = ("configure_pbx", "view_invoices", "pay_invoices", "view_reports")
"""The custom permissions of the seed, in display order."""

DEFAULT_DIAL_PASSWORD: Final = "0000"
MIN_DIAL_DIGITS: Final = 4
MAX_DIAL_DIGITS: Final = 16
PBKDF2_ITERATIONS: Final = 20_000
"""Iterations for the hashed low-entropy secrets (dialable passwords, provisioning passwords). A 4-digit
numeric password falls to an offline search whatever the cost, so the hash only keeps it out of plain
sight; the cost is kept low enough that a bulk edit of 1,000 users stays interactive."""

_MAC_FORMS: Final = (
    re.compile(r"[0-9A-Fa-f]{12}"),
    re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"),
    re.compile(r"[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}"),
    re.compile(r"[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2}"),
)
_RESERVED_MACS: Final = frozenset({"000000000000", "ffffffffffff"})
"""All zeros is the Polycom common file's name; all ones is broadcast. Neither is a phone."""
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_GROUP_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}")
MAX_GROUPS: Final = 50


@dataclass(frozen=True, slots=True)
class AdminRights:
    """What a user may administer: ``role`` from ``ADMIN_ROLES``; ``permissions`` only counts for custom."""

    role: str = "none"
    permissions: frozenset[str] = frozenset()

    def allows(self, permission: str) -> bool:
        """Whether this user may do what ``permission`` (one of ``ADMIN_PERMISSIONS``) guards."""
        if self.role == "super_admin":
            return True
        return self.role == "custom" and permission in self.permissions

    @property
    def is_super_admin(self) -> bool:
        return self.role == "super_admin"

    def listed(self) -> list[str]:
        """The effective permissions in ``ADMIN_PERMISSIONS`` order."""
        return [p for p in ADMIN_PERMISSIONS if self.allows(p)]


NO_RIGHTS: Final = AdminRights()
SUPER_ADMIN: Final = AdminRights("super_admin", frozenset())


def check_admin_rights(role: object, permissions: object, field: str = "admin") -> AdminRights:
    """A role and, for ``custom``, a list of permissions (at least one).

    Raises:
        ModelError: an unknown role or permission, or permissions given with another role.
    """
    if not isinstance(role, str) or role not in ADMIN_ROLES:
        raise ModelError(f"{field}.role", f"must be one of {', '.join(ADMIN_ROLES)}")
    if permissions is None:
        permissions = []
    if not isinstance(permissions, list | tuple | set | frozenset):
        raise ModelError(f"{field}.permissions", f"must be a list of: {', '.join(ADMIN_PERMISSIONS)}")
    names: set[str] = set()
    for i, item in enumerate(permissions):
        if not isinstance(item, str) or item not in ADMIN_PERMISSIONS:
            raise ModelError(
                f"{field}.permissions[{i}]",
                f"unknown permission {item!r} (one of {', '.join(ADMIN_PERMISSIONS)})",
            )
        names.add(item)
    if role != "custom" and names:
        raise ModelError(f"{field}.permissions", f"only a custom role takes permissions, not {role}")
    if role == "custom" and not names:
        raise ModelError(f"{field}.permissions", "a custom role needs at least one permission")
    return AdminRights(role, frozenset(names))


def check_mac(value: object, field: str = "mac") -> str:
    """A MAC address: 12 hex digits, plain or in the ':'/'-' pairs or '.' quads forms; lower-case, no
    separators.

    Raises:
        ModelError: any other form (mixed separators, wrong length, non-hex), or all zeros/all ones.
    """
    if not isinstance(value, str):
        raise ModelError(field, "must be a string of 12 hex digits, e.g. '00:15:65:AA:BB:CC'")
    text = value.strip()
    if not any(form.fullmatch(text) for form in _MAC_FORMS):
        raise ModelError(
            field, f"{text!r} is not a MAC address (12 hex digits, optionally with ':', '-' or '.')"
        )
    mac = re.sub(r"[:.\-]", "", text).lower()
    if mac in _RESERVED_MACS:
        raise ModelError(field, f"{text!r} is not a device's MAC address")
    return mac


def check_dial_digits(value: object, field: str) -> str:
    """A dialable username or password: digits only, 4-16 of them (a phone keypad enters it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ModelError(field, "must be a string of digits (quote it: a leading 0 would be lost)")
    if not isinstance(value, str):
        raise ModelError(field, "must be a string of digits")
    text = value.strip()
    if not _DIGITS_RE.fullmatch(text):
        raise ModelError(field, "must contain digits only")
    if not MIN_DIAL_DIGITS <= len(text) <= MAX_DIAL_DIGITS:
        raise ModelError(field, f"must be {MIN_DIAL_DIGITS} to {MAX_DIAL_DIGITS} digits")
    return text


def check_groups(value: object, field: str = "groups") -> tuple[str, ...]:
    """A list of group names (letters, digits, space, '_', '.', '-'; up to 64), duplicates dropped, sorted."""
    if not isinstance(value, list | tuple):
        raise ModelError(field, "must be a list of group names")
    if len(value) > MAX_GROUPS:
        raise ModelError(field, f"at most {MAX_GROUPS} groups")
    names: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _GROUP_RE.fullmatch(item.strip()):
            raise ModelError(f"{field}[{i}]", "must be 1-64 letters, digits, spaces, '_', '.' or '-'")
        names.add(item.strip())
    return tuple(sorted(names))


# -- secrets -------------------------------------------------------------------------------------------


def hash_secret(secret: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2_sha256$ITER$SALT$HASH`` (hex) of a low-entropy secret, for ``verify_secret``."""
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether ``secret`` matches a ``hash_secret`` value (constant-time comparison)."""
    try:
        scheme, iterations, salt, expected = encoded.split("$")
        rounds = int(iterations)
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256" or not 1 <= rounds <= 10_000_000:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt_bytes, rounds)
    return hmac.compare_digest(digest.hex(), expected)


MIN_WEB_PASSWORD: Final = 10
MAX_WEB_PASSWORD: Final = 128


def check_web_password(value: object, field: str = "password") -> str:
    """A web-login password: 10-128 characters, no control characters (taken as given, never stripped).

    Raises:
        ModelError: not a string, too short or long, or a control character in it.
    """
    if not isinstance(value, str):
        raise ModelError(field, "must be a string")
    if not MIN_WEB_PASSWORD <= len(value) <= MAX_WEB_PASSWORD:
        raise ModelError(field, f"must be {MIN_WEB_PASSWORD}-{MAX_WEB_PASSWORD} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ModelError(field, "must not contain control characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ModelError(field, "must be valid Unicode text (no lone surrogates)") from None
    return value


def token_digest(token: str) -> str:
    """SHA-256 hex of a high-entropy token (API token, registration token): what is stored and looked up.

    Tokens carry 256 random bits, so a fast unsalted hash is enough to make a stolen table useless and
    still lets a request find its token by an indexed equality.
    """
    return hashlib.sha256(token.encode()).hexdigest()


# -- locations (emergency addresses) ---------------------------------------------------------------------

LOCATION_COUNTRIES: Final = ("US", "CA")
"""Where an emergency address can be verified (the seed: US and Canada only)."""
_US: Final = "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM"
_US2: Final = "NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP"
US_STATES: Final = frozenset(f"{_US} {_US2}".split())
CA_PROVINCES: Final = frozenset(f"{'AB BC MB NB NL NS NT NU ON PE QC SK YT'}".split())
_US_ZIP_RE: Final = re.compile(r"[0-9]{5}(?:-[0-9]{4})?")
_CA_POSTAL_RE: Final = re.compile(r"([A-Za-z][0-9][A-Za-z]) ?([0-9][A-Za-z][0-9])")
_STREET_WORDS: Final[Mapping[str, str]] = {
    "north": "N",
    "south": "S",
    "east": "E",
    "west": "W",
    "northeast": "NE",
    "northwest": "NW",
    "southeast": "SE",
    "southwest": "SW",
    "street": "St",
    "avenue": "Ave",
    "road": "Rd",
    "boulevard": "Blvd",
    "drive": "Dr",
    "lane": "Ln",
    "court": "Ct",
    "place": "Pl",
    "suite": "Ste",
    "highway": "Hwy",
    "parkway": "Pkwy",
}
"""USPS Publication 28 abbreviations for directionals and the common suffixes and unit designators."""
_LOCATION_KEYS: Final = frozenset({"name", "country", "street", "city", "region", "postal_code"})


@dataclass(frozen=True, slots=True)
class LocationSpec:
    """A validated emergency address (without the id the store assigns)."""

    name: str
    country: str
    street: str
    city: str
    region: str
    postal_code: str


@dataclass(frozen=True, slots=True)
class Location:
    id: int
    name: str
    country: str
    street: str
    city: str
    region: str
    postal_code: str
    verified: bool


def normalise_street(text: str) -> str:
    """Collapse spaces, drop trailing dots of words, abbreviate directionals and suffixes (USPS)."""
    words = []
    for raw in text.split():
        word = raw.rstrip(".") or raw
        words.append(_STREET_WORDS.get(word.lower(), word))
    return " ".join(words)


def check_location(value: object, field: str = "") -> LocationSpec:
    """A location mapping: name, country (US or CA), street, city, region (state/province code),
    postal code (ZIP / ZIP+4, or Canadian A1A 1A1).

    Raises:
        ModelError: a missing or bad field, or a country where addresses cannot be verified.
    """

    def at(name: str) -> str:
        return f"{field}.{name}" if field else name

    if not isinstance(value, Mapping):
        raise ModelError(field, "must be a mapping")
    unknown = sorted(set(value) - _LOCATION_KEYS)
    if unknown:
        raise ModelError(at(str(unknown[0])), "unknown field")
    for key in ("name", "country", "street", "city", "region", "postal_code"):
        if value.get(key) is None:
            raise ModelError(at(key), "is required")
    name = rules.check_text(value["name"], at("name"))
    country = rules.check_country(value["country"], at("country"))
    if country not in LOCATION_COUNTRIES:
        raise ModelError(
            at("country"), f"emergency addresses can only be verified in {' and '.join(LOCATION_COUNTRIES)}"
        )
    street = normalise_street(rules.check_text(value["street"], at("street"), max_len=200))
    if not any(ch.isdigit() for ch in street.split()[0]):
        raise ModelError(at("street"), "must start with the house number")
    city = rules.check_text(value["city"], at("city"))
    region = rules.check_text(value["region"], at("region")).upper()
    postal = rules.check_text(value["postal_code"], at("postal_code"))
    if country == "US":
        if region not in US_STATES:
            raise ModelError(at("region"), f"{region!r} is not a US state code (e.g. 'NY')")
        if not _US_ZIP_RE.fullmatch(postal):
            raise ModelError(at("postal_code"), "must be a ZIP code: 5 digits or ZIP+4 (12345-6789)")
    else:
        if region not in CA_PROVINCES:
            raise ModelError(at("region"), f"{region!r} is not a Canadian province code (e.g. 'ON')")
        match = _CA_POSTAL_RE.fullmatch(postal)
        if match is None:
            raise ModelError(at("postal_code"), "must be a Canadian postal code (A1A 1A1)")
        postal = f"{match[1]} {match[2]}".upper()
    return LocationSpec(name, country, street, city, region, postal)


# -- phone numbers: orders and porting ---------------------------------------------------------------

ORDER_KINDS: Final = ("order", "port_in")
ORDER_STATES: Final = ("completed", "manual")
"""A new-number order is completed from the available pool at once, or recorded for the carrier team
(``manual``) when the pool cannot serve it (the seed: "contact us to order numbers")."""
PORT_STATES: Final = ("draft", "submitted", "foc_set", "completed", "rejected")
PORT_TRANSITIONS: Final[Mapping[tuple[str, str], str]] = {
    ("draft", "submit"): "submitted",
    ("submitted", "set_foc"): "foc_set",
    ("submitted", "reject"): "rejected",
    ("foc_set", "set_foc"): "foc_set",
    ("foc_set", "complete"): "completed",
    ("foc_set", "reject"): "rejected",
    ("rejected", "reopen"): "draft",
}
"""(state, action) -> next state of a port-in request; FOC is the carrier's firm order commitment date."""
PORT_ACTIONS: Final = ("submit", "set_foc", "complete", "reject", "reopen")
_PORT_KEYS: Final = frozenset(
    {"numbers", "carrier", "account_name", "account_number", "pin", "billing_address"}
)
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class PortRequestSpec:
    """The data a port-in request carries; the account data must match the losing carrier's records."""

    numbers: tuple[str, ...]
    carrier: str
    account_name: str
    account_number: str
    pin: str | None
    billing_address: str | None


def check_port_request(value: object, field: str = "") -> PortRequestSpec:
    """A port-in request body.

    Raises:
        ModelError: a missing or bad field (numbers must be E.164, unique, 1-100 of them).
    """

    def at(name: str) -> str:
        return f"{field}.{name}" if field else name

    if not isinstance(value, Mapping):
        raise ModelError(field, "must be a mapping")
    unknown = sorted(set(value) - _PORT_KEYS)
    if unknown:
        raise ModelError(at(str(unknown[0])), "unknown field")
    raw = value.get("numbers")
    if not isinstance(raw, list) or not raw:
        raise ModelError(at("numbers"), "must be a non-empty list of E.164 numbers")
    if len(raw) > 100:
        raise ModelError(at("numbers"), "at most 100 numbers per request")
    numbers: list[str] = []
    for i, item in enumerate(raw):
        number = rules.check_e164(item, at(f"numbers[{i}]"))
        if number in numbers:
            raise ModelError(at(f"numbers[{i}]"), f"{number} is listed twice")
        numbers.append(number)
    for key in ("carrier", "account_name", "account_number"):
        if value.get(key) is None:
            raise ModelError(at(key), "is required")
    pin = value.get("pin")
    address = value.get("billing_address")
    return PortRequestSpec(
        tuple(numbers),
        rules.check_text(value["carrier"], at("carrier")),
        rules.check_text(value["account_name"], at("account_name")),
        rules.check_text(value["account_number"], at("account_number"), max_len=64),
        None if pin is None else rules.check_text(pin, at("pin"), max_len=32),
        None if address is None else rules.check_text(address, at("billing_address"), max_len=300),
    )


def port_transition(state: str, action: str, field: str = "action") -> str:
    """The state after ``action`` on a request in ``state``.

    Raises:
        ModelError: an unknown action, or one the state does not allow.
    """
    if action not in PORT_ACTIONS:
        raise ModelError(field, f"must be one of {', '.join(PORT_ACTIONS)}")
    after = PORT_TRANSITIONS.get((state, action))
    if after is None:
        allowed = [a for (s, a) in PORT_TRANSITIONS if s == state]
        hint = f" (allowed: {', '.join(allowed)})" if allowed else " (the request is closed)"
        raise ModelError(field, f"cannot {action} a request that is {state}{hint}")
    return after


def check_date(value: object, field: str) -> str:
    """An ISO calendar date ``YYYY-MM-DD`` (the FOC date)."""
    if not isinstance(value, str) or not _DATE_RE.fullmatch(value.strip()):
        raise ModelError(field, "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise ModelError(field, f"{value!r} is not a calendar date") from None


def check_e164_list(value: object, field: str) -> tuple[str, ...]:
    """A non-empty list of unique E.164 numbers (inventory additions)."""
    if not isinstance(value, list) or not value:
        raise ModelError(field, "must be a non-empty list of E.164 numbers")
    out: list[str] = []
    for i, item in enumerate(value):
        number = rules.check_e164(item, f"{field}[{i}]")
        if number in out:
            raise ModelError(f"{field}[{i}]", f"{number} is listed twice")
        out.append(number)
    return tuple(out)


def check_choice(value: object, choices: Collection[str], field: str) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ModelError(field, f"must be one of {', '.join(choices)}")
    return value
