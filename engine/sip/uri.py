"""SIP, SIPS and TEL URIs (RFC 3261 §19.1, RFC 3966), with any other scheme kept as an opaque URI.

``Uri.parse`` is strict about structure (no whitespace, no ``<>``) and lenient about content (escaped
octets, including ``%00``, stay escaped in ``user`` and are decoded by ``user_decoded``). Comparison
follows §19.1.4 for the parts a PBX relies on: scheme, decoded user, password, case-insensitive host,
port, and the transport/user/ttl/method/maddr parameters.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final
from urllib.parse import unquote as _pct_unquote

from engine.sip.grammar import format_params, is_digits, parse_params

SIP_SCHEMES: Final = frozenset({"sip", "sips"})
KNOWN_SCHEMES: Final = frozenset({"sip", "sips", "tel"})
DEFAULT_PORTS: Final = {"sip": 5060, "sips": 5061}
_COMPARED_PARAMS: Final = ("transport", "user", "ttl", "method", "maddr")
_FORBIDDEN_RE: Final = re.compile(r'[\s<>"]')
_HOST_RE: Final = re.compile(r"[A-Za-z0-9\-.]+")
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# The common shape of a SIP URI in one pass: userinfo (anything up to the first @: ';', '?' and ',' are legal
# in a user part, §25.1 user-unreserved, and '@' is nowhere legal unescaped before it),
# host (IPv6 reference or hostname/IPv4), port, parameters, headers.
_SIP_RE: Final = re.compile(
    r"(?:([^@]*)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?::([0-9]{1,5}))?(;[^?]*)?(?:\?(.*))?", re.S
)


@dataclass(frozen=True, slots=True, eq=False)
class Uri:
    """A parsed URI. For schemes other than sip/sips/tel only ``scheme`` and ``opaque`` are set.

    Immutable (``params`` included, by convention): parsed URIs are shared through ``parse_uri``'s cache.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""
    opaque: str = ""

    @classmethod
    def parse(cls, text: str) -> Uri:
        """Parse a URI as it appears in a Request-URI or inside ``<...>``.

        Raises:
            ValueError: the text is not a URI (whitespace, brackets, bad host or port, no scheme).
        """
        colon = text.find(":")
        if colon <= 0:
            raise ValueError("URI has no scheme")
        if _FORBIDDEN_RE.search(text) is not None:
            raise ValueError("URI contains whitespace, quotes or angle brackets")
        scheme = text[:colon]
        if scheme != "sip":
            if _SCHEME_RE.fullmatch(scheme) is None:
                raise ValueError("bad URI scheme")
            scheme = scheme.lower()
        rest = text[colon + 1 :]
        if scheme in SIP_SCHEMES:
            return cls._parse_sip(scheme, rest)
        if scheme == "tel":
            semi = rest.find(";")
            number = rest if semi < 0 else rest[:semi]
            if not number:
                raise ValueError("empty tel number")
            params = parse_params(rest[semi:]) if semi >= 0 else {}
            return cls(scheme=scheme, user=number, params=params)
        if not rest:
            raise ValueError("empty URI")
        return cls(scheme=scheme, opaque=rest)

    @classmethod
    def _parse_sip(cls, scheme: str, rest: str) -> Uri:
        m = _SIP_RE.fullmatch(rest)
        if m is not None:
            userinfo, host, port_text, params_text, headers = m.groups()
            user = password = None
            if userinfo is not None:
                user, colon, pw = userinfo.partition(":")
                if colon:
                    password = pw
                if not user:
                    raise ValueError("empty user part")
            if host[0] == "[":
                check_ipv6_reference(host)
            port = None
            if port_text is not None:
                port = int(port_text)
                if not 0 < port < 65536:
                    raise ValueError(f"port {port} out of range")
            return cls(scheme, user, password, host, port, parse_params(params_text) if params_text else {},
                       headers or "")
        return cls._parse_sip_slow(scheme, rest)

    @classmethod
    def _parse_sip_slow(cls, scheme: str, rest: str) -> Uri:
        user: str | None = None
        password: str | None = None
        at = rest.find("@")  # the first: userinfo may hold '?' and ';' (§25.1), never an unescaped '@'
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            pc = userinfo.find(":")
            if pc >= 0:
                user, password = userinfo[:pc], userinfo[pc + 1 :]
            else:
                user = userinfo
            if not user:
                raise ValueError("empty user part")
        headers = ""
        q = rest.find("?")
        if q >= 0:
            rest, headers = rest[:q], rest[q + 1 :]
        semi = rest.find(";")
        hostport, params = (rest, {}) if semi < 0 else (rest[:semi], parse_params(rest[semi:]))
        host, port = split_hostport(hostport)
        return cls(scheme=scheme, user=user, password=password, host=host, port=port, params=params,
                   headers=headers)

    @property
    def user_decoded(self) -> str | None:
        """The user part with %-escapes resolved (``%32%30%31`` -> ``201``)."""
        if self.user is None or "%" not in self.user:
            return self.user
        return _pct_unquote(self.user, errors="surrogateescape")

    @property
    def host_port(self) -> str:
        """``host`` or ``host:port`` as written in a Via sent-by or a URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme not in KNOWN_SCHEMES:
            return f"{self.scheme}:{self.opaque}"
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host_port)
        if self.params:
            out.append(format_params(self.params))
        if self.headers:
            out.append("?" + self.headers)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Uri({str(self)!r})"

    def same_as(self, other: Uri) -> bool:
        """RFC 3261 §19.1.4 equivalence (the parts that matter for routing and registration)."""
        if self.scheme != other.scheme:
            return False
        if self.scheme not in KNOWN_SCHEMES:
            return self.opaque == other.opaque
        if self.user_decoded != other.user_decoded or self.password != other.password:
            return False
        if self.host.lower() != other.host.lower() or self.port != other.port:
            return False
        # §19.1.4: user/ttl/method/maddr/transport must match when either URI has them; any other
        # parameter present in both must match; header components are never ignored.
        for name in _COMPARED_PARAMS:
            if (name in self.params) != (name in other.params):
                return False
        for name, a in self.params.items():
            if name in other.params:
                b = other.params[name]
                if (a is None) != (b is None) or (a is not None and b is not None and a.lower() != b.lower()):
                    return False
        return _headers_set(self.headers) == _headers_set(other.headers)


def _headers_set(headers: str) -> frozenset[tuple[str, str]]:
    """URI header components as a set of (lower-case name, decoded value): their order does not matter."""
    if not headers:
        return frozenset()
    out = set()
    for item in headers.split("&"):
        name, _, value = item.partition("=")
        out.add((_pct_unquote(name).lower(), _pct_unquote(value)))
    return frozenset(out)


MEMO_MAX_LEN: Final = 256  # see headers.MEMO_MAX_LEN
_memo_uri = lru_cache(maxsize=8192)(Uri.parse)


def parse_uri(text: str) -> Uri:
    """``Uri.parse`` with a bounded memo for short texts: Request-URIs, and the From/To/Contact URIs of a
    phone's refreshes, repeat verbatim, so most lookups skip parsing.

    Raises:
        ValueError: as ``Uri.parse``.
    """
    return _memo_uri(text) if len(text) <= MEMO_MAX_LEN else Uri.parse(text)


def check_ipv6_reference(host: str) -> None:
    """RFC 3261 §25.1 / RFC 5118: ``IPv6reference = "[" IPv6address "]"``, the address written in full
    RFC 4291 form (no zone index). ``[2001:db8:::1]``, ``[1:2:3:4:5:6:7:8:9]`` and ``[::g]`` are refused.

    Raises:
        ValueError: not a bracketed IPv6 address.
    """
    if len(host) < 4 or host[0] != "[" or host[-1] != "]" or "%" in host:
        raise ValueError(f"bad IPv6 reference {host[:60]!r}")
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise ValueError(f"bad IPv6 reference {host[:60]!r}") from None


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 references in brackets).

    Raises:
        ValueError: empty or malformed host, or a port outside 1..65535.
    """
    if not text:
        raise ValueError("empty host")
    if text[0] == "[":
        close = text.find("]")
        if close < 0:
            raise ValueError("unclosed IPv6 reference")
        host, rest = text[: close + 1], text[close + 1 :]
        check_ipv6_reference(host)
        if rest and rest[0] != ":":
            raise ValueError("junk after IPv6 reference")
        port_text = rest[1:] if rest else None
    else:
        colon = text.find(":")
        if colon >= 0:
            host, port_text = text[:colon], text[colon + 1 :]
        else:
            host, port_text = text, None
        if _HOST_RE.fullmatch(host) is None:
            raise ValueError(f"bad host {host!r}")
    if port_text is None:
        return host, None
    if not is_digits(port_text) or len(port_text) > 5:
        raise ValueError(f"bad port {port_text!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return host, port
