"""SIP requests and responses as value objects with lazily typed headers (RFC 3261 §7).

A parsed message keeps every header line's original text (``Field.raw``); serialising an unchanged header
writes that text back, so a forwarded message keeps its bytes (kamailio keeps buffer slices, h11 keeps raw
casing). A typed view (``vias``, ``cseq``, ``from_``, ...) is parsed on first access and cached; a header
that fails to parse raises ``SipParseError`` naming it. Header names are stored as lower-case long forms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from engine.sip.errors import SipParseError
from engine.sip.grammar import COMPACT_FORMS, LIST_HEADERS, canonical_name, split_list
from engine.sip.headers import Address, CSeq, Via, parse_address, parse_tokens, parse_uint
from engine.sip.uri import Uri, parse_uri

SIP_VERSION: Final = "SIP/2.0"
_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 603: "Decline",
}


class Field:
    """One header line: lower-case long name, its value (unfolded, stripped) and original text."""

    __slots__ = ("name", "raw", "value")

    def __init__(self, name: str, value: str, raw: str | None = None) -> None:
        self.name = name
        self.value = value
        self.raw = raw

    def line(self) -> str:
        raw = self.raw
        return raw if raw is not None else f"{canonical_name(self.name)}: {self.value}"

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.value!r})"


def header_key(name: str) -> str:
    """Normalise a header name to the stored key (lower-case long form)."""
    key = name.lower()
    return COMPACT_FORMS.get(key, key)


class Message:
    """Headers and body shared by requests and responses."""

    __slots__ = ("_cache", "_index", "_index_of", "body", "fields")

    def __init__(self, fields: list[Field] | None = None, body: bytes = b"") -> None:
        self.fields: list[Field] = fields if fields is not None else []
        self.body = body
        self._cache: dict[str, object] = {}
        self._index: dict[str, Field] = {}
        self._index_of: tuple[int, int] = (0, -1)  # (id, len) of the field list the index describes

    # -- raw access --------------------------------------------------------------------------------
    def _first(self, key: str) -> Field | None:
        """The first field called ``key``: one dict lookup. The index is rebuilt (one pass) whenever the
        field list was replaced or grew, so code may append to ``fields`` directly."""
        fields = self.fields
        if self._index_of != (id(fields), len(fields)):
            index: dict[str, Field] = {}
            for f in reversed(fields):
                index[f.name] = f
            self._index = index
            self._index_of = (id(fields), len(fields))
        return self._index.get(key)

    def get(self, name: str) -> str | None:
        """The value of the first header called ``name`` (compact forms accepted), or None."""
        f = self._first(header_key(name))
        return None if f is None else f.value

    def get_fields(self, name: str) -> list[Field]:
        key = header_key(name)
        return [f for f in self.fields if f.name == key]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``: repeated headers in order, list headers split at commas.

        Raises:
            SipParseError: a list header has unbalanced quotes or brackets.
        """
        key = header_key(name)
        values: list[str] = []
        for f in self.fields:
            if f.name == key:
                if key in LIST_HEADERS:
                    try:
                        values.extend(split_list(f.value))
                    except ValueError as exc:
                        raise self._bad(key, exc) from None
                else:
                    values.append(f.value)
        return values

    def has(self, name: str) -> bool:
        return self._first(header_key(name)) is not None

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append (or, with ``first``, prepend) a header."""
        key = header_key(name)
        field = Field(key, value)
        if first:
            self.fields.insert(0, field)
        else:
            self.fields.append(field)
        self._cache.pop(key, None)

    def set(self, name: str, value: str) -> None:
        """Replace every header called ``name`` with one value (kept at the first one's position)."""
        key = header_key(name)
        new = Field(key, value)
        out: list[Field] = []
        placed = False
        for f in self.fields:
            if f.name == key:
                if not placed:
                    out.append(new)
                    placed = True
            else:
                out.append(f)
        if not placed:
            out.append(new)
        self.fields = out
        self._cache.pop(key, None)

    def remove(self, name: str) -> None:
        key = header_key(name)
        self.fields = [f for f in self.fields if f.name != key]
        self._cache.pop(key, None)

    # -- typed views -------------------------------------------------------------------------------
    def _bad(self, key: str, exc: Exception | None = None) -> SipParseError:
        detail = f": {exc}" if exc else ""
        return SipParseError(400, f"Bad {canonical_name(key)} header", header=key, message=self,
                             extra_headers=(("Warning", f'399 pbx "{canonical_name(key)}{detail}"'),)
                             if exc else ())

    def _missing(self, key: str) -> SipParseError:
        return SipParseError(400, f"Missing {canonical_name(key)}", header=key, message=self)

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first.

        Raises:
            SipParseError: a Via is malformed, or there is none.
        """
        cached = self._cache.get("via")
        if cached is None:
            values = self.get_all("via")
            if not values:
                raise self._missing("via")
            try:
                cached = [Via.parse(v) for v in values]
            except ValueError as exc:
                raise self._bad("via", exc) from None
            self._cache["via"] = cached
        return cached  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        """The first Via (parsing only that one when the others have not been asked for).

        Raises:
            SipParseError: missing or malformed.
        """
        cached = self._cache.get("via")
        if cached is not None:
            return cached[0]  # type: ignore[index,no-any-return]
        top = self._cache.get("via:top")
        if top is None:
            for f in self.fields:
                if f.name == "via":
                    value = f.value
                    break
            else:
                raise self._missing("via")
            try:
                first = split_list(value)[0] if "," in value else value
                top = Via.parse(first)
            except (ValueError, IndexError) as exc:
                raise self._bad("via", exc if isinstance(exc, ValueError) else None) from None
            self._cache["via:top"] = top
        return top  # type: ignore[return-value]

    def set_top_via(self, via: Via) -> None:
        """Replace the top Via value (e.g. to add ``received``/``rport``, RFC 3581), keeping the others."""
        vias_rest: list[str] = []
        for idx, f in enumerate(self.fields):
            if f.name == "via":
                values = split_list(f.value) if "," in f.value else [f.value]
                vias_rest = values[1:]
                new = [Field("via", via.serialize())]
                if vias_rest:
                    new.append(Field("via", ", ".join(vias_rest)))
                self.fields[idx : idx + 1] = new
                self._index_of = (0, -1)  # replaced in place: the index is stale
                break
        else:
            self.fields.insert(0, Field("via", via.serialize()))
        self._cache.pop("via", None)
        self._cache["via:top"] = via

    def _single(self, key: str) -> str:
        f = self._first(key)
        if f is None:
            raise self._missing(key)
        return f.value

    @property
    def call_id(self) -> str:
        """Raises: SipParseError when missing or empty."""
        value = self._single("call-id")
        if not value or " " in value:
            raise self._bad("call-id")
        return value

    @property
    def cseq(self) -> CSeq:
        """Raises: SipParseError when missing or malformed."""
        cached = self._cache.get("cseq")
        if cached is None:
            try:
                cached = CSeq.parse(self._single("cseq"))
            except ValueError as exc:
                raise self._bad("cseq", exc) from None
            self._cache["cseq"] = cached
        return cached  # type: ignore[return-value]

    def _address(self, key: str) -> Address:
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = parse_address(self._single(key))
            except ValueError as exc:
                raise self._bad(key, exc) from None
            self._cache[key] = cached
        return cached  # type: ignore[return-value]

    @property
    def from_(self) -> Address:
        """Raises: SipParseError when missing or malformed."""
        return self._address("from")

    @property
    def to(self) -> Address:
        """Raises: SipParseError when missing or malformed."""
        return self._address("to")

    def addresses(self, name: str) -> list[Address]:
        """Every address of a list header (Contact, Route, Record-Route, Path), in order.

        Raises:
            SipParseError: an element is malformed.
        """
        key = header_key(name)
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = [parse_address(v) for v in self.get_all(key)]
            except ValueError as exc:
                raise self._bad(key, exc) from None
            self._cache[key] = cached
        return cached  # type: ignore[return-value]

    def int_header(self, name: str, limit: int = 2**32 - 1) -> int | None:
        """An integer header's value, or None when absent.

        Raises:
            SipParseError: not a non-negative integer within ``limit``.
        """
        key = header_key(name)
        value = self.get(key)
        if value is None:
            return None
        try:
            return parse_uint(value, limit)
        except ValueError as exc:
            raise self._bad(key, exc) from None

    @property
    def max_forwards(self) -> int | None:
        """Raises: SipParseError when not an integer 0..255 (§20.22)."""
        return self.int_header("max-forwards", 255)

    @property
    def expires(self) -> int | None:
        """Raises: SipParseError when not a non-negative integer (§20.19)."""
        return self.int_header("expires")

    def tokens(self, name: str) -> list[str]:
        """A token-list header (Require, Supported, Allow, ...), lower-cased; [] when absent.

        Raises:
            SipParseError: an element is not a token.
        """
        out: list[str] = []
        key = header_key(name)
        if self._first(key) is None:
            return out
        for f in self.fields:
            if f.name == key:
                try:
                    out.extend(parse_tokens(f.value))
                except ValueError as exc:
                    raise self._bad(key, exc) from None
        return out

    # -- wire form ---------------------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The wire form. Content-Length is always written last and always matches the body."""
        lines = [self.start_line()]
        for f in self.fields:
            raw = f.raw
            if raw is not None:
                if f.name != "content-length":
                    lines.append(raw)
            elif f.name != "content-length":
                lines.append(f"{canonical_name(f.name)}: {f.value}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        head = "\r\n".join(lines).encode(_ENCODING, _ERRORS)
        return head + self.body if self.body else head

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)


class Request(Message):
    """A SIP request: method, Request-URI (text, parsed on demand) and version."""

    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: str,
        fields: list[Field] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(fields, body)
        self.method = method
        self.uri = uri
        self.version = version

    @property
    def request_uri(self) -> Uri:
        """The parsed Request-URI.

        Raises:
            SipParseError: 400 when it is not a URI.
        """
        cached = self._cache.get(":ruri")
        if cached is None:
            try:
                cached = parse_uri(self.uri)
            except ValueError as exc:
                raise SipParseError(400, "Bad Request-URI", message=self,
                                    extra_headers=(("Warning", f'399 pbx "Request-URI: {exc}"'),)) from None
            self._cache[":ruri"] = cached
        return cached  # type: ignore[return-value]

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response: status code and reason phrase."""

    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        fields: list[Field] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(fields, body)
        self.status = status
        self.reason = reason if reason is not None else REASON_PHRASES.get(status, "Unknown")
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


#: §8.2.6.2: a response copies these from the request (Via in order, From, To, Call-ID, CSeq).
RESPONSE_COPIED: Final = ("via", "from", "to", "call-id", "cseq")


def make_response(
    request: Message, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """Build a response to ``request`` per RFC 3261 §8.2.6.

    The copied headers keep their original text; a To tag is added when ``to_tag`` is given and the To
    header does not have one yet (§8.2.6.2). 100 Trying also copies Timestamp (§8.2.6.1).
    """
    resp = Response(status, reason)
    fields = resp.fields
    if to_tag is not None:
        try:
            add_tag = request.to.tag is None
        except SipParseError:
            add_tag = False  # answering a malformed To: echo it as it came
    # Field objects are never changed in place once parsed (set/remove replace them), so the response
    # shares the request's: no copies on the hot path.
    for f in request.fields:
        name = f.name
        if name in RESPONSE_COPIED or (status == 100 and name == "timestamp"):
            if name == "to" and to_tag is not None and add_tag:
                fields.append(Field("to", f"{f.value};tag={to_tag}"))
            else:
                fields.append(f)
    return resp
