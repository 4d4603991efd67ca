"""Typed header values (RFC 3261 §20): Via, name-addr (From/To/Contact/Route), CSeq, integer headers.

Each type has ``parse(str)`` raising ``ValueError`` and ``serialize() -> str``. The message layer turns
a ``ValueError`` into ``SipParseError`` naming the header, so this module stays free of status codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from engine.sip.grammar import (
    format_params,
    is_digits,
    is_token,
    parse_params,
    quote,
    split_list,
    unquote,
)
from engine.sip.uri import Uri, check_ipv6_reference, parse_uri

_HOST_RE: Final = re.compile(r"[A-Za-z0-9\-.]+")
MAX_CSEQ: Final = 2**31 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be less than 2**31
# [ "quoted display" | tokens ] <uri> [;params], no stray quotes or brackets: the common case, one regex.
_ADDR_RE: Final = re.compile(
    r'\s*(?:"([^"\\]*(?:\\.[^"\\]*)*)"\s*|([^"<>]*))<([^<>"\s]+)>\s*(;.*)?', re.S
)

# sent-protocol with LWS allowed around each "/" (§25.1 SLASH), then LWS, then sent-by.
_VIA_RE: Final = re.compile(
    r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+(\[[0-9A-Fa-f:.]+\]|[^\s;:]+)(?:\s*:\s*(\d+))?\s*(;.*)?\Z",
    re.S | re.I,
)


@dataclass(slots=True, eq=False)
class Via:
    """One Via value (§20.42): transport, sent-by and parameters (branch, received, rport, ...)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma-joined list).

        Raises:
            ValueError: not ``SIP/2.0/<transport> host[:port][;params]``.
        """
        m = _VIA_RE.match(text.strip())
        if m is None:
            raise ValueError("malformed Via")
        transport, host, port_text, params_text = m.groups()
        port = None
        if port_text is not None:
            port = int(port_text)
            if not 0 < port < 65536 or len(port_text) > 5:
                raise ValueError("Via port out of range")
        if host[0] == "[":
            check_ipv6_reference(host)
        elif _HOST_RE.fullmatch(host) is None:
            raise ValueError(f"bad Via host {host!r}")
        return cls(transport.upper(), host, port, parse_params(params_text) if params_text else {})

    @classmethod
    def parse_list(cls, text: str) -> list[Via]:
        """Parse a comma-joined Via header value.

        Raises:
            ValueError: any element is malformed.
        """
        return [cls.parse(part) for part in split_list(text)]

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def serialize(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


@dataclass(frozen=True, slots=True, eq=False)
class Address:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route, Record-Route, ...).

    Immutable (``params`` included, by convention): parsed addresses are shared through ``parse_address``.
    """

    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    uri_text: str = ""

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse one address (see ``_parse``), through a fast path for the common ``[name] <uri>;params``.

        Raises:
            ValueError: unbalanced quotes or brackets, a bad URI, or bad parameters.
        """
        m = _ADDR_RE.fullmatch(text)
        if m is not None:
            quoted, plain, uri_text, params_text = m.groups()
            if quoted is not None:
                display: str | None = unquote(f'"{quoted}"')
            else:
                display = plain.strip() or None if plain else None
                if display is not None and not all(is_token(w) for w in display.split()):
                    raise ValueError("display name must be tokens or a quoted string")
            params = parse_params(params_text) if params_text else {}
            return cls(parse_uri(uri_text), display, params, uri_text)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> Address:
        """Parse one address (§20.10 syntax, shared by From/To/Contact/Route).

        In the addr-spec form (no ``<...>``) a URI cannot carry ``;``, ``?`` or ``,``: everything after the
        first ``;`` is a header parameter, and a ``?`` or angle bracket there is an error (§20.10).

        Raises:
            ValueError: unbalanced quotes or brackets, a bad URI, or bad parameters.
        """
        text = text.strip()
        display: str | None = None
        if text.startswith('"'):
            close_q = _closing_quote(text)
            end = text.find("<", close_q)
            if end < 0:
                raise ValueError("quoted display name without <uri>")
            display = unquote(text[: close_q + 1])
            if text[close_q + 1 : end].strip():
                raise ValueError("junk between display name and <uri>")
            rest = text[end:]
        else:
            lt = text.find("<")
            if lt >= 0:
                name = text[:lt].strip()
                # §25.1 display-name = *(token LWS) / quoted-string
                if name and not all(is_token(word) for word in name.split()):
                    raise ValueError("display name must be tokens or a quoted string")
                display = name or None
                rest = text[lt:]
            else:
                rest = ""
        if rest:
            gt = rest.find(">")
            if gt < 0:
                raise ValueError("unclosed <")
            uri_text = rest[1:gt]
            params_text = rest[gt + 1 :]
            if params_text.strip() and not params_text.lstrip().startswith(";"):
                raise ValueError("junk after >")
        else:
            semi = text.find(";")
            uri_text, params_text = (text, "") if semi < 0 else (text[:semi], text[semi:])
            if "?" in uri_text or ">" in text:
                raise ValueError("addr-spec with headers or brackets must be written as <uri>")
        return cls(parse_uri(uri_text.strip()), display, parse_params(params_text), uri_text.strip())

    @classmethod
    def parse_list(cls, text: str) -> list[Address]:
        """Parse a comma-joined list of addresses (Contact, Route, Record-Route).

        Raises:
            ValueError: any element is malformed.
        """
        return [cls.parse(part) for part in split_list(text)]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def serialize(self) -> str:
        uri = self.uri_text or str(self.uri)
        head = f"{quote(self.display)} <{uri}>" if self.display else f"<{uri}>"
        return head + format_params(self.params)


#: Longest value the parse memos keep: real From/To/Contact values are far shorter, and a peer must not be
#: able to pin large strings in memory (8192 entries x 64 KB would be half a gigabyte).
MEMO_MAX_LEN: Final = 256
_memo_address = lru_cache(maxsize=8192)(Address.parse)


def parse_address(text: str) -> Address:
    """``Address.parse`` with a bounded memo for short values (a phone's From/To/Contact repeat verbatim
    between the challenged and the authenticated REGISTER, and across refreshes).

    Raises:
        ValueError: as ``Address.parse``.
    """
    return _memo_address(text) if len(text) <= MEMO_MAX_LEN else Address.parse(text)


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise ValueError("unbalanced quotes")


@dataclass(frozen=True, slots=True)
class CSeq:
    """§20.16: a sequence number below 2**31 and the request method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``<number> <method>``.

        Raises:
            ValueError: not exactly a number and a token, or the number is 2**31 or more.
        """
        parts = text.split()
        if len(parts) != 2 or not is_digits(parts[0]) or not is_token(parts[1]):
            raise ValueError("malformed CSeq")
        if len(parts[0]) > 10 or int(parts[0]) > MAX_CSEQ:
            raise ValueError("CSeq number out of range")
        return cls(int(parts[0]), parts[1])

    def serialize(self) -> str:
        return f"{self.seq} {self.method}"


def parse_uint(text: str, limit: int) -> int:
    """Parse a non-negative decimal no larger than ``limit`` (Max-Forwards, Expires, Content-Length).

    Raises:
        ValueError: not digits, or above ``limit``.
    """
    text = text.strip()
    if not is_digits(text) or len(text) > 12:
        raise ValueError("not a non-negative integer")
    value = int(text)
    if value > limit:
        raise ValueError("integer out of range")
    return value


def parse_tokens(text: str) -> list[str]:
    """Parse a comma-joined list of tokens (Require, Supported, Allow, ...), lower-cased.

    Raises:
        ValueError: an element is not a token.
    """
    items = split_list(text)
    for item in items:
        if not is_token(item):
            raise ValueError(f"not a token: {item!r}")
    return [item.lower() for item in items]
