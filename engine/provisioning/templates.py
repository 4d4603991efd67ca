"""Desk-phone configuration files (pure): which file a phone asks for, and its text for a device.

Yealink phones fetch ``y000000000000.cfg`` (common to all phones of the site) and ``<mac>.cfg`` (theirs);
Polycom phones fetch ``000000000000.cfg`` (the master file, which names ``[PHONE_MAC_ADDRESS]-extension.cfg``)
and ``<mac>-extension.cfg``. Common files carry no credentials; a device file carries the SIP server,
each line of the device and its credentials. MACs in file names are 12 lower- or upper-case hex digits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal
from xml.sax.saxutils import escape

Vendor = Literal["yealink", "polycom"]
YEALINK_COMMON: Final = "y000000000000.cfg"
POLYCOM_COMMON: Final = "000000000000.cfg"
_YEALINK_DEVICE: Final = re.compile(r"([0-9a-fA-F]{12})\.cfg")
_POLYCOM_DEVICE: Final = re.compile(r"([0-9a-fA-F]{12})-extension\.cfg")
_YEALINK_UA: Final = re.compile(r"Yealink\s+(?:SIP-)?([A-Za-z0-9_\-]{1,40})")
_POLYCOM_UA: Final = re.compile(r"Polycom[A-Za-z]*-([A-Za-z0-9_]{1,40})-UA")


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed file name: the vendor, and the MAC for a device file (None for a common file)."""

    vendor: Vendor
    mac: str | None


@dataclass(frozen=True, slots=True)
class LineConfig:
    extension: str
    label: str
    password: str


def parse_filename(name: str) -> Request | None:
    """What ``name`` asks for, or None when it is no file we serve."""
    if name == YEALINK_COMMON:
        return Request("yealink", None)
    if name == POLYCOM_COMMON:
        return Request("polycom", None)
    if (m := _POLYCOM_DEVICE.fullmatch(name)) is not None:
        return Request("polycom", m[1].lower())
    if (m := _YEALINK_DEVICE.fullmatch(name)) is not None:
        return Request("yealink", m[1].lower())
    return None


def model_from_user_agent(user_agent: str) -> str | None:
    """The phone model a provisioning request's User-Agent names (``T54W``, ``VVX_450``), if any."""
    for pattern in (_YEALINK_UA, _POLYCOM_UA):
        if (m := pattern.search(user_agent)) is not None:
            return m[1]
    return None


def render_common(vendor: Vendor) -> str:
    """The site-wide file: no credentials, only what makes the phone ask for its own file."""
    if vendor == "yealink":
        return "#!version:1.0.0.1\nauto_provision.repeat.enable = 1\nauto_provision.repeat.minutes = 1440\n"
    return (
        '<?xml version="1.0" standalone="yes"?>\n'
        '<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="[PHONE_MAC_ADDRESS]-extension.cfg" '
        'MISC_FILES="" LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY=""/>\n'
    )


def render_device(vendor: Vendor, server: str, port: int, realm: str, lines: Sequence[LineConfig]) -> str:
    """A device's file with its lines (account N = the N-th line) registering to ``server:port``."""
    if vendor == "yealink":
        out = ["#!version:1.0.0.1"]
        for n, line in enumerate(lines, start=1):
            out += [
                f"account.{n}.enable = 1",
                f"account.{n}.label = {_flat(line.label)}",
                f"account.{n}.display_name = {_flat(line.label)}",
                f"account.{n}.auth_name = {line.extension}",
                f"account.{n}.user_name = {line.extension}",
                f"account.{n}.password = {_flat(line.password)}",
                f"account.{n}.sip_server.1.address = {server}",
                f"account.{n}.sip_server.1.port = {port}",
                f"account.{n}.sip_server.1.transport_type = 0",
            ]
        return "\n".join(out) + "\n"
    attrs = []
    for n, line in enumerate(lines, start=1):
        attrs += [
            f"reg.{n}.address={quoteattr(line.extension)}",
            f"reg.{n}.label={quoteattr(line.label)}",
            f"reg.{n}.displayName={quoteattr(line.label)}",
            f"reg.{n}.auth.userId={quoteattr(line.extension)}",
            f"reg.{n}.auth.password={quoteattr(line.password)}",
            f"reg.{n}.auth.domain={quoteattr(realm)}",
            f"reg.{n}.server.1.address={quoteattr(server)}",
            f'reg.{n}.server.1.port="{port}"',
        ]
    body = "\n  ".join(attrs)
    return f'<?xml version="1.0" standalone="yes"?>\n<polycomConfig>\n<reg\n  {body}\n/>\n</polycomConfig>\n'


def quoteattr(text: str) -> str:
    """An XML attribute value, always in double quotes (``"``, ``<``, ``&``... escaped)."""
    return '"' + escape(text, {'"': "&quot;", "'": "&apos;", "\n": "&#10;", "\r": "&#13;"}) + '"'


def _flat(text: str) -> str:
    """One line of a Yealink file: no line breaks can end the value early (names are checked upstream)."""
    return text.replace("\r", " ").replace("\n", " ")
