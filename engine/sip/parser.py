"""bytes -> Request | Response (RFC 3261 §7, §18.3): start line and header boundaries eagerly, bodies lazily.

``parse_message`` raises only ``SipParseError``. When the start line and headers could be split, the error
carries the partial message so that the endpoint can still address a stateless answer to it (STYLE 3.5).
``StreamFramer`` cuts a TCP byte stream into messages by Content-Length (§18.3) and recognises RFC 5626
CRLF keep-alives.
"""

from __future__ import annotations

import re
from typing import Final

from engine.sip.errors import SipParseError
from engine.sip.grammar import COMPACT_FORMS, canonical_name, is_digits, is_token
from engine.sip.message import SIP_VERSION, Field, Message, Request, Response

MAX_MESSAGE_BYTES: Final = 65_535
_HEAD_END: Final = b"\r\n\r\n"
_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"


#: RFC 3261 §25.1: outside a quoted-pair (``\\`` then any octet but CR and LF, inside a quoted string) no
#: header line and no start line may carry a control character: NUL, BEL, DEL, a bare CR or LF... HTAB is
#: LWS. In one line (a header's unfolded value, the start line) any CR or LF is bare.
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: The fast check over the whole head's bytes, whose lines are joined by CRLF: every control character but
#: HTAB, CR and LF maps to 0, the rest to 1 (a bare CR or LF is found by counting instead). One translate
#: and two counts (~1 µs for a 700-byte head; the regex over the decoded head took ~1.8) find the rare
#: message that needs the closer look.
_CONTROL_BUT_CRLF: Final = bytes(0 if (b < 0x20 and b not in (0x09, 0x0A, 0x0D)) or b == 0x7F else 1
                                 for b in range(256))
#: A quoted string (with its quoted-pairs) and a control character outside one.
_QUOTED_OR_CONTROL_RE: Final = re.compile(r'"(?:[^"\\]|\\.)*+"|[\x00-\x08\x0a-\x1f\x7f]', re.S)

#: Headers that RFC 3261 §7.3.1 (and the RFCs defining them) allow once only: their grammar is no
#: comma-separated list. A second one makes the message ambiguous (which To, which Content-Length?), so it
#: is refused with 400 naming it, never resolved by picking one. Authorization and the *-Authenticate
#: headers are the §7.3.1 exception (one per realm) and are not listed.
SINGLE_HEADERS: Final = frozenset({
    "call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type",
    "content-disposition", "mime-version", "expires", "min-expires", "date", "timestamp", "priority",
    "retry-after", "reply-to", "subject", "organization", "user-agent", "server", "event",
    "session-expires", "min-se", "rseq", "rack", "refer-to", "referred-by", "replaces",
    "subscription-state", "sip-etag", "sip-if-match",
})

_COPIED: Final = frozenset({"via", "from", "to", "call-id", "cseq"})

_NAME_CACHE: dict[str, str | None] = {}
_NAME_CACHE_MAX: Final = 2048
_NAME_CACHED_MAX_LEN: Final = 64


def _header_key(name: str) -> str | None:
    """Raw header name -> stored key (lower-case long form), None when not a token. Cached: phones use
    a few dozen spellings, so this is one dict lookup per header line."""
    key = _NAME_CACHE.get(name)
    if key is not None:
        return key
    stripped = name.rstrip(" \t")  # HCOLON = *( SP / HTAB ) ":" SWS
    if is_token(stripped):
        lower = stripped.lower()
        key = COMPACT_FORMS.get(lower, lower)
        # Only valid, short names are remembered: a peer cannot fill the cache with junk or long names.
        if len(name) <= _NAME_CACHED_MAX_LEN and len(_NAME_CACHE) < _NAME_CACHE_MAX:
            _NAME_CACHE[name] = key
    return key


def _split_fields(lines: list[str]) -> tuple[list[Field], SipParseError | None]:
    """Header lines -> fields, unfolding continuation lines (§7.3.1). Returns the first error too."""
    fields: list[Field] = []
    append = fields.append
    key_of = _NAME_CACHE.get
    error: SipParseError | None = None
    for line in lines:
        # Fast path: an unfolded line whose name (as written) is already known.
        name, sep, value = line.partition(":")
        key = key_of(name)
        if key is not None and sep:
            append(Field(key, value.strip(), line))
            continue
        if line[:1] in (" ", "\t"):
            if not fields:
                error = error or SipParseError(400, "Continuation line before the first header")
                continue
            last = fields[-1]
            last.value = f"{last.value} {line.strip()}".strip()
            last.raw = f"{last.raw}\r\n{line}"
            continue
        colon = line.find(":")
        if colon <= 0:
            error = error or SipParseError(400, "Header line without a colon")
            continue
        key = _header_key(line[:colon])
        if key is None:
            error = error or SipParseError(400, "Bad header name")
            continue
        fields.append(Field(key, line[colon + 1 :].strip(), line))
    return fields, error


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one SIP message.

    Args:
        data: one UDP datagram, or one message framed by ``StreamFramer``.
        stream: True for stream transports, where Content-Length is mandatory (§18.3).

    Returns:
        the Request or Response. Header values stay text until their typed view is asked for.

    Raises:
        SipParseError: the bytes are not an acceptable SIP message; ``message`` is set when addressable.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(513, "Message Too Large")
    start = 0
    while data.startswith(b"\r\n", start):  # §7.5: ignore CRLFs before the start line
        start += 2
    end = data.find(_HEAD_END, start)
    if end < 0:
        head_bytes, body = data[start:].rstrip(b"\r\n"), b""
        complete = False
    else:
        head_bytes, body = data[start:end], data[end + 4 :]
        complete = True
    if not head_bytes:
        raise SipParseError(400, "Empty message")
    head = head_bytes.decode(_ENCODING, _ERRORS)
    lines = head.split("\r\n")
    first = lines[0]
    fields, error = _split_fields(lines[1:])
    echoed = False
    crlf = len(lines) - 1
    if (b"\x00" in head_bytes.translate(_CONTROL_BUT_CRLF) or head_bytes.count(b"\r") != crlf
            or head_bytes.count(b"\n") != crlf):
        control = _control_error(first, fields)
        # A control character in a header every answer copies (§8.2.6.2) would be echoed back by any
        # answer, whatever else is wrong: such a message is dropped.
        echoed = control is not None and control.header in _COPIED
        error = control or error
    if error is None:
        error = _duplicate_error(fields)

    msg: Request | Response
    if first.startswith("SIP/"):
        msg, start_error = _response_line(first, fields, body)
    else:
        msg, start_error = _request_line(first, fields, body)
    error = start_error or error
    if error is None and not complete:
        error = SipParseError(400, "Header section not terminated by an empty line")
    if error is None:
        error = _apply_content_length(msg, body, stream)
    if error is None and msg.body and not msg.has("content-type"):
        # §20.15: "The Content-Type header field MUST be present if the body is not empty."
        error = SipParseError(400, "Missing Content-Type", header="content-type")
    if error is not None:
        error.message = msg if _addressable(msg) and not echoed else None
        raise error
    return msg


def _control_error(first: str, fields: list[Field]) -> SipParseError | None:
    """The error for a control character outside a quoted-pair, naming the line it is on; None when every
    one is quoted (RFC 4475 §3.1.1.2 has ``"BEL:\\<07> NUL:\\<00> DEL:\\<7f>"`` in a valid To)."""
    # Headers an answer copies first: when one of them is at fault the message is dropped, not answered
    # (even when the start line is at fault too: its 400 would echo the copied header).
    in_header = _header_control_error(fields)
    if in_header is not None and in_header.header in _COPIED:
        return in_header
    if _CONTROL_RE.search(first) is not None:
        return SipParseError(400, "Control character in the start line")
    return in_header


def _header_control_error(fields: list[Field]) -> SipParseError | None:
    """The first header with a control character outside a quoted-pair, copied headers first."""
    for f in sorted(fields, key=lambda f: f.name not in _COPIED):
        text = f.value
        if _CONTROL_RE.search(text) is None:
            continue
        for m in _QUOTED_OR_CONTROL_RE.finditer(text):
            if m.group()[0] != '"':
                name = canonical_name(f.name)
                return SipParseError(400, f"Control character in the {name} header", header=f.name)
    return None


def _duplicate_error(fields: list[Field]) -> SipParseError | None:
    """400 naming the first single-valued header given twice (``SINGLE_HEADERS``)."""
    seen: set[str] = set()
    for f in fields:
        name = f.name
        if name in seen and name in SINGLE_HEADERS:
            if name == "content-length":
                return SipParseError(400, "Multiple Content-Length headers", header=name)
            return SipParseError(400, f"Duplicate {canonical_name(name)} header", header=name)
        seen.add(name)
    return None


def _addressable(msg: Message) -> bool:
    return isinstance(msg, Request) and msg.method != "" and any(f.name == "via" for f in msg.fields)


def _request_line(line: str, fields: list[Field], body: bytes) -> tuple[Request, SipParseError | None]:
    # §7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF: exactly two single spaces.
    parts = line.split(" ")
    method = parts[0] if parts and is_token(parts[0]) else ""
    if len(parts) != 3:
        req = Request(method, parts[1] if len(parts) > 1 else "", fields, body)
        if not method and not line.isprintable():
            return req, SipParseError(400, "Not a SIP message")
        return req, SipParseError(400, "Malformed Request-Line")
    method, uri, version = parts
    req = Request(method if is_token(method) else "", uri, fields, body, version)
    if not is_token(method):
        return req, SipParseError(400, "Malformed Request-Line")
    if not uri or uri[0] == "<" or ":" not in uri:
        return req, SipParseError(400, "Bad Request-URI")
    if version != SIP_VERSION and version.upper() != SIP_VERSION:  # §25: "SIP" is case-insensitive
        if version.upper().startswith("SIP/") and is_digits(version[4:].replace(".", "")):
            return req, SipParseError(505, "Version Not Supported")
        return req, SipParseError(400, "Malformed Request-Line")
    return req, None


def _response_line(line: str, fields: list[Field], body: bytes) -> tuple[Response, SipParseError | None]:
    # §7.2: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    parts = line.split(" ", 2)
    if len(parts) < 2 or len(parts[1]) != 3 or not is_digits(parts[1]) or parts[0].upper() != SIP_VERSION:
        return Response(0, "", fields, body), SipParseError(400, "Malformed Status-Line")
    status = int(parts[1])
    resp = Response(status, parts[2] if len(parts) == 3 else "", fields, body)
    if not 100 <= status <= 699:
        return resp, SipParseError(400, "Status code out of range")
    return resp, None


def _apply_content_length(msg: Message, body: bytes, stream: bool) -> SipParseError | None:
    values = [f.value for f in msg.fields if f.name == "content-length"]
    if not values:
        if stream and body:
            return SipParseError(400, "Missing Content-Length")
        return None  # §18.3: over UDP the body runs to the end of the datagram
    if len(values) > 1:
        return SipParseError(400, "Multiple Content-Length headers", header="content-length")
    length = _content_length(values[0])
    if length is None:
        return SipParseError(400, "Bad Content-Length", header="content-length")
    if length > len(body):
        return SipParseError(400, "Content-Length larger than the body", header="content-length")
    if length < len(body):
        msg.body = body[:length]  # §18.3: octets beyond Content-Length are discarded
    return None


class StreamFramer:
    """Cuts a stream (TCP, later TLS) into SIP messages by their Content-Length (§18.3).

    ``feed(data)`` returns the complete messages as bytes, and the number of RFC 5626 double-CRLF
    keep-alive pings seen (each must be answered with a single CRLF pong). A header section or body larger
    than ``max_bytes`` raises ``SipParseError(513)``; the connection should then be closed.
    """

    __slots__ = ("_buf", "max_bytes")

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self.max_bytes = max_bytes

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """Add bytes; return (complete messages, keep-alive pings).

        Raises:
            SipParseError: the pending message is too large or its Content-Length is unusable.
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pings = 0
        while buf:
            if buf[0] in (13, 10):  # CR, LF
                if buf.startswith(b"\r\n\r\n"):
                    pings += 1
                    del buf[:4]
                    continue
                if buf.startswith(b"\r\n"):
                    if len(buf) < 4 and bytes(buf) in (b"\r\n", b"\r\n\r"):
                        break  # maybe the start of a ping
                    del buf[:2]
                    continue
                if bytes(buf) == b"\r":
                    break
                del buf[:1]
                continue
            end = buf.find(_HEAD_END)
            if end < 0:
                if len(buf) > self.max_bytes:
                    raise SipParseError(513, "Message Too Large")
                break
            length = _stream_content_length(bytes(buf[:end]))
            total = end + 4 + length
            if total > self.max_bytes:
                raise SipParseError(513, "Message Too Large")
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out, pings


def _content_length(text: str) -> int | None:
    """A Content-Length value: 1 to 9 ASCII digits, else None."""
    return int(text) if is_digits(text) and len(text) <= 9 else None


def _stream_content_length(head: bytes) -> int:
    """Content-Length of a framed head, read by the parser's own field splitter (unfolding included,
    §7.3.1): a framer and a parser that disagree would let a peer smuggle a message into the stream.
    With several Content-Length headers the last one frames; the parser then refuses the message."""
    fields, _ = _split_fields(head.decode(_ENCODING, _ERRORS).split("\r\n")[1:])
    length = 0
    for f in fields:
        if f.name == "content-length":
            value = _content_length(f.value)
            if value is None:
                raise SipParseError(400, "Bad Content-Length")
            length = value
    return length
