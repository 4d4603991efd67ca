"""The fax line object's own fields, checked for the compiler: station ID (CSI), page header and the
e-mail recipients of received faxes.

Why its own module: the compiler (``engine.dialplan.compiler``) owns references and routing between objects;
what a fax line's fields may hold is the fax line's business, and the limits come from T.30 (a station ID
is at most 20 characters, ITU-T T.30 §5.3.6.2.4) and from what a page header line can carry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from engine.dialplan.plan import FaxLine

FAX_LINE_KEYS: Final = frozenset({"name", "extension", "station_id", "header", "email"})
STATION_ID_MAX: Final = 20
HEADER_MAX: Final = 50
#: an address for SMTP: no spaces, angle brackets, commas or line breaks (they would inject headers)
_ADDRESS_RE: Final = re.compile(r"[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\"]+")


def _text(raw: Mapping[str, Any], key: str, limit: int, path: str,
          error: Callable[[str, str], None]) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or len(value) > limit or not value.isascii() or not value.isprintable():
        error(f"{path}.{key}", f"must be at most {limit} printable ASCII characters, got {value!r}")
        return ""
    return value


def read_fax_line(name: str, raw: Mapping[str, Any], path: str,
                  error: Callable[[str, str], None]) -> FaxLine | None:
    """The fax line ``name`` from its raw object at ``path``, or None when a field is wrong (each wrong
    field reported through ``error(field_path, message)``; unknown keys are the compiler's check).

    Raises:
        Nothing: every problem goes to ``error``.
    """
    failures: list[str] = []

    def fail(field: str, message: str) -> None:
        failures.append(field)
        error(field, message)

    station_id = _text(raw, "station_id", STATION_ID_MAX, path, fail)
    header = _text(raw, "header", HEADER_MAX, path, fail)
    email_raw = raw.get("email", [])
    if isinstance(email_raw, str):
        email_raw = [email_raw]
    addresses: list[str] = []
    if not isinstance(email_raw, list):
        fail(f"{path}.email", f"must be a list of e-mail addresses, got {email_raw!r}")
        email_raw = []
    for i, address in enumerate(email_raw):
        if not isinstance(address, str) or not _ADDRESS_RE.fullmatch(address):
            fail(f"{path}.email[{i}]", f"not an e-mail address: {address!r}")
        elif address not in addresses:
            addresses.append(address)
    if failures:
        return None
    return FaxLine(name, station_id, header, tuple(addresses))
