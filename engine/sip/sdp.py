"""SDP bodies (RFC 4566) and the offer/answer rewriting a media-anchoring B2BUA does (RFC 3264).

The B2BUA sits in the media path by default: each leg sees an SDP whose connection address and ports are
the engine's RTP relay, never the other phone's. That needs three things, and this module is all three:

* ``parse_sdp`` / ``SessionDescription.serialize``: a faithful model of the body. Lines we do not interpret
  (``b=``, ``t=``, unknown types, every attribute) are kept in order, so an SDP that passes through
  unchanged keeps every line. Serialising writes lines in the RFC 4566 §5 order, which is the order a
  conforming body already has; CRLF line ends always.
* ``filter_codecs`` / ``has_usable_audio``: the codec policy (G.711 and RFC 4733 telephone-events by
  default). A stream we will not carry is *rejected* with port 0, never deleted: RFC 3264 §6 needs the answer
  to have as many m= lines as the offer, in the same order.
* ``SdpRewriter``: one per leg, towards one peer. It puts our address and relay ports in, removes ICE (we are
  the media endpoint now, and candidates for the far phone would only mislead this one) and keeps our own
  origin line, whose version moves only when what we send changes (RFC 3264 §8).

Tolerances (each explicit, switchable off with ``strict=True``): LF-only line ends and blank lines (several
SIP stacks end the body with an extra CRLF or build it with ``\\n``), and an m= line without formats when its
port is 0 (a rejected stream from older stacks). Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

#: RFC 3551 §6 static payload types (rtpmap value form). An a=rtpmap for the same number overrides.
STATIC_PAYLOAD_TYPES: Final[dict[str, str]] = {
    "0": "PCMU/8000",
    "3": "GSM/8000",
    "4": "G723/8000",
    "5": "DVI4/8000",
    "6": "DVI4/16000",
    "7": "LPC/8000",
    "8": "PCMA/8000",
    "9": "G722/8000",
    "10": "L16/44100/2",
    "11": "L16/44100",
    "12": "QCELP/8000",
    "13": "CN/8000",
    "14": "MPA/90000",
    "15": "G728/8000",
    "16": "DVI4/11025",
    "17": "DVI4/22050",
    "18": "G729/8000",
}

#: What the engine carries unless configured otherwise: G.711 both laws and RFC 4733 DTMF.
DEFAULT_CODECS: Final[tuple[str, ...]] = ("PCMU", "PCMA", "telephone-event")
TELEPHONE_EVENT: Final = "telephone-event"
DIRECTIONS: Final = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
#: Our origin's username (RFC 4566 §5.2; "-" would also do, a name helps reading traces).
ORIGIN_USERNAME: Final = "pbx-engine"

# Attributes whose value starts with a payload type: they go when their payload type is filtered out.
_PT_KEYED_ATTRIBUTES: Final = frozenset({"rtpmap", "fmtp", "rtcp-fb"})
# RFC 8839 attributes (and RFC 5245's, same names). "ice-" covers ufrag, pwd, options, lite, mismatch, pacing.
_ICE_ATTRIBUTES: Final = frozenset({"candidate", "remote-candidates", "end-of-candidates"})
# RFC 4566 §5: session-level lines that come before c=, and media-level ones.
_SESSION_BEFORE_C: Final = frozenset("iuep")
_MEDIA_BEFORE_C: Final = frozenset("i")
_LINE_TYPE_RE: Final = re.compile(r"[A-Za-z]")
_NO_SPACE_RE: Final = re.compile(r"\S+")


class SdpError(ValueError):
    """A body that is not SDP we can work with; ``reason`` is a short human phrase (for a 488 or a log).

    Attributes:
        reason: what is wrong, e.g. "m= port is not a number".
        line: the 1-based line number at fault, when there is one.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"{reason} (line {line})")
        self.reason = reason
        self.line = line


@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line (RFC 4566 §5.2): who made the session and which version of it this is."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str
    addrtype: str
    address: str

    def serialize(self) -> str:
        fields = (self.username, self.sess_id, self.sess_version, self.nettype, self.addrtype, self.address)
        return " ".join(map(str, fields))


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m= section (RFC 4566 §5.14) and the lines under it.

    Lists are owned by the value: treat them as immutable and build changed copies with
    ``dataclasses.replace`` (as ``filter_codecs`` and ``SdpRewriter`` do).

    Attributes:
        media: "audio", "video", "image", ...
        port: the transport port; 0 marks a rejected or disabled stream (RFC 3264 §6).
        proto: "RTP/AVP", "RTP/SAVP", "udptl", ...
        formats: the payload types (RTP) or format names, in the sender's order of preference.
        connection: the media-level c= address (without /ttl), or None to use the session's.
        attributes: the a= lines as (name, value); value None for a property attribute (a=sendrecv).
        port_count: the "/2" of "m=audio 49170/2 ...", when present.
        lines: every other line of the section (i=, b=, k=, unknown types) as (type, value), in order.
        connection_line: the c= value as received; reused verbatim while ``connection`` is unchanged.
    """

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)
    connection_line: str | None = None

    def rtpmap(self) -> dict[str, str]:
        """Payload type -> "encoding/clock[/channels]" from the a=rtpmap lines (static types not included)."""
        out: dict[str, str] = {}
        for name, value in self.attributes:
            if name == "rtpmap" and value:
                parts = value.split(None, 1)
                if len(parts) == 2:
                    out[parts[0]] = parts[1].strip()
        return out

    def encoding_names(self) -> dict[str, str]:
        """Payload type -> encoding name ("PCMU", "telephone-event") for each listed format we can name:
        from a=rtpmap, else from the RFC 3551 static table."""
        rtpmap = self.rtpmap()
        out: dict[str, str] = {}
        for pt in self.formats:
            encoding = rtpmap.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if encoding:
                out[pt] = encoding.split("/", 1)[0]
        return out

    @property
    def direction(self) -> str:
        """This section's direction attribute, "sendrecv" when it has none (RFC 3264 §5.1).

        A session-level direction applies when the section has none: see ``effective_direction``.
        """
        return _direction(self.attributes) or "sendrecv"

    def effective_direction(self, session: SessionDescription) -> str:
        """The direction in force: this section's, else the session-level one, else "sendrecv"."""
        return _direction(self.attributes) or _direction(session.attributes) or "sendrecv"

    def connection_address(self, session: SessionDescription) -> str | None:
        """Where this stream's media goes: the media-level c= address, else the session-level one."""
        return self.connection if self.connection is not None else session.connection

    def serialize_lines(self) -> list[str]:
        """The section's lines (without line ends), in RFC 4566 §5 order."""
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [f"m={' '.join([self.media, port, self.proto, *self.formats])}"]
        out.extend(f"{kind}={value}" for kind, value in self.lines if kind in _MEDIA_BEFORE_C)
        if self.connection is not None:
            out.append(f"c={_connection_value(self.connection, self.connection_line)}")
        out.extend(f"{kind}={value}" for kind, value in self.lines if kind not in _MEDIA_BEFORE_C)
        out.extend(_attribute_line(name, value) for name, value in self.attributes)
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body (RFC 4566): origin, session-level connection and attributes, media sections.

    Attributes:
        origin: the o= line.
        session_name: the s= value (kept as sent, even empty).
        connection: the session-level c= address (without /ttl), or None.
        media: the m= sections, in order (their order is what pairs offer and answer, RFC 3264 §6).
        attributes: session-level a= lines as (name, value).
        lines: every other session-level line (i=, u=, e=, p=, b=, t=, r=, z=, k=, unknown), in order.
        connection_line: the c= value as received; reused verbatim while ``connection`` is unchanged.
    """

    origin: Origin
    session_name: str = "-"
    connection: str | None = None
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=lambda: [("t", "0 0")])  # built by hand: t=0 0
    connection_line: str | None = None

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, or None when there is none."""
        return _direction(self.attributes)

    def serialize(self) -> bytes:
        """The body: lines in RFC 4566 §5 order, each ending in CRLF (UTF-8, invalid bytes as received)."""
        out = ["v=0", f"o={self.origin.serialize()}", f"s={self.session_name}"]
        out.extend(f"{kind}={value}" for kind, value in self.lines if kind in _SESSION_BEFORE_C)
        if self.connection is not None:
            out.append(f"c={_connection_value(self.connection, self.connection_line)}")
        out.extend(f"{kind}={value}" for kind, value in self.lines if kind not in _SESSION_BEFORE_C)
        out.extend(_attribute_line(name, value) for name, value in self.attributes)
        for media in self.media:
            out.extend(media.serialize_lines())
        out.append("")
        return "\r\n".join(out).encode("utf-8", "surrogateescape")


def parse_sdp(body: bytes, *, strict: bool = False) -> SessionDescription:
    """Parse an SDP body.

    Args:
        body: the message body (Content-Type application/sdp).
        strict: refuse LF-only line ends, blank lines, and format-less m= lines of rejected streams.

    Returns:
        The session description; unknown line types and all attributes are kept.

    Raises:
        SdpError: not SDP (no v=0 first, no o= or s=, a line not ``<type>=<value>``), or a malformed o=, c=
            or m= line (port not a number, missing proto or formats).
    """
    text = body.decode("utf-8", "surrogateescape")
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()  # the line end of the last line
    origin: Origin | None = None
    session_name: str | None = None
    connection: tuple[str, str] | None = None
    session_attrs: list[tuple[str, str | None]] = []
    session_lines: list[tuple[str, str]] = []
    media: list[MediaDescription] = []
    current: _MediaBuilder | None = None
    seen_version = False
    for number, raw in enumerate(raw_lines, 1):
        if raw.endswith("\r"):
            line = raw[:-1]
        else:
            if strict:
                raise SdpError("line does not end in CRLF", number)
            line = raw
        if not line:
            if strict:
                raise SdpError("blank line", number)
            continue
        if len(line) < 2 or line[1] != "=" or _LINE_TYPE_RE.fullmatch(line[0]) is None:
            raise SdpError("not a <type>=<value> line", number)
        kind, value = line[0], line[2:]
        if not seen_version:
            if kind != "v" or value.strip() != "0":
                raise SdpError("SDP must start with v=0", number)
            seen_version = True
            continue
        if kind == "m":
            if current is not None:
                media.append(current.build(strict))
            current = _MediaBuilder.parse(value, number)
            continue
        if current is not None:
            if kind == "c":
                if current.connection is not None:
                    raise SdpError("more than one c= line in a media section", number)
                current.connection = (_parse_connection(value, number), value)
            elif kind == "a":
                current.attributes.append(_parse_attribute(value))
            else:
                current.lines.append((kind, value))
            continue
        if kind == "v":
            raise SdpError("more than one v= line", number)
        if kind == "o":
            if origin is not None:
                raise SdpError("more than one o= line", number)
            origin = _parse_origin(value, number)
        elif kind == "s":
            if session_name is not None:
                raise SdpError("more than one s= line", number)
            session_name = value
        elif kind == "c":
            if connection is not None:
                raise SdpError("more than one session-level c= line", number)
            connection = (_parse_connection(value, number), value)
        elif kind == "a":
            session_attrs.append(_parse_attribute(value))
        else:
            session_lines.append((kind, value))
    if not seen_version:
        raise SdpError("empty SDP body")
    if current is not None:
        media.append(current.build(strict))
    if origin is None:
        raise SdpError("no o= line")
    if session_name is None:
        raise SdpError("no s= line")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=None if connection is None else connection[0],
        media=media,
        attributes=session_attrs,
        lines=session_lines,
        connection_line=None if connection is None else connection[1],
    )


def filter_codecs(
    sdp: SessionDescription, allowed: Sequence[str] = DEFAULT_CODECS
) -> SessionDescription:
    """A copy keeping only the codecs we carry, rejecting the streams we do not (RFC 3264 §6).

    Audio sections keep the payload types whose encoding name (RFC 3551 static type, or a=rtpmap, compared
    case-insensitively) is in ``allowed``, in the sender's order, with their a=rtpmap / a=fmtp / a=rtcp-fb
    lines. A section left without an audio codec (telephone-event alone carries no voice), and every
    non-audio section, gets port 0 and keeps its formats (an m= line needs at least one).

    Args:
        sdp: the received offer or answer.
        allowed: encoding names to keep.

    Returns:
        The filtered copy; ``sdp`` itself is not changed.

    Raises:
        Nothing: every input gives a description (possibly with every stream rejected).
    """
    wanted = {name.lower() for name in allowed}
    media: list[MediaDescription] = []
    for section in sdp.media:
        if section.port == 0:
            media.append(section)
            continue
        if section.media != "audio":
            media.append(replace(section, port=0))
            continue
        names = section.encoding_names()
        keep = [pt for pt in section.formats if names.get(pt, "").lower() in wanted]
        if not any(names[pt].lower() != TELEPHONE_EVENT for pt in keep):
            media.append(replace(section, port=0))
            continue
        kept = set(keep)
        attributes = [
            (name, value)
            for name, value in section.attributes
            if name not in _PT_KEYED_ATTRIBUTES or _first_word(value) in kept or _first_word(value) == "*"
        ]
        media.append(replace(section, formats=keep, attributes=attributes))
    return replace(sdp, media=media)


def has_usable_audio(sdp: SessionDescription, allowed: Sequence[str] = DEFAULT_CODECS) -> bool:
    """True when an audio stream is accepted (port != 0) with at least one allowed voice codec.

    Raises:
        Nothing.
    """
    wanted = {name.lower() for name in allowed} - {TELEPHONE_EVENT}
    for section in sdp.media:
        if section.media == "audio" and section.port != 0:
            names = section.encoding_names()
            if any(names.get(pt, "").lower() in wanted for pt in section.formats):
                return True
    return False


class SdpRewriter:
    """The SDP one leg sends to its peer: our origin, our relay address and ports (RFC 3264 §8).

    One per leg, for that leg's whole dialog: every SDP we send to the peer carries the same origin username
    and session id, and a version that grows by one exactly when the body differs from the previous one we
    sent (§8: "the version MUST be incremented ... if the SDP is changed"; an unchanged re-send, e.g. in a
    session refresh, keeps it). ``rewrite`` anchors media on the relay; ``passthrough`` (media release)
    keeps the other peer's addresses. Both share the version sequence, since the peer sees one session.
    """

    def __init__(self, session_id: int, username: str = ORIGIN_USERNAME) -> None:
        """Args:
            session_id: our o= sess-id for this leg (RFC 4566 §5.2 suggests an NTP timestamp; any number
                unique enough per leg does).
            username: our o= username.

        Raises:
            ValueError: a negative session id, or a username with whitespace.
        """
        if session_id < 0:
            raise ValueError("SDP session id must not be negative")
        if _NO_SPACE_RE.fullmatch(username) is None:
            raise ValueError("SDP origin username must be one non-blank word")
        self.session_id = session_id
        self.username = username
        self._version = 1
        self._last: bytes | None = None
        self._host: str | None = None
        #: applied to every anchored audio stream we send this leg (``rewrite``): ``engine.sip.sdes`` makes it
        #: RTP/SAVP with our key for an SRTP leg, or plain RTP/AVP for the leg bridged with one
        self.media_filter: Callable[[MediaDescription], MediaDescription] | None = None

    @property
    def version(self) -> int:
        """The o= version of the last SDP produced (1 before any)."""
        return self._version

    def rewrite(self, sdp: SessionDescription, host: str, ports: Sequence[int]) -> bytes:
        """The body to send: ``sdp`` with our origin, ``host`` as every c= address and the relay ports.

        Each accepted stream (port != 0) of ``sdp.media[i]`` gets ``ports[i]``; rejected streams stay at 0,
        and a 0 in ``ports`` rejects that stream (e.g. a second audio stream the relay does not carry).
        An a=rtcp line becomes ``port+1`` on ``host`` (the relay's RTCP socket). ICE attributes go, at session
        and media level: the peer must send to us, not try paths to the phone behind us.

        Args:
            sdp: the description to forward (usually ``filter_codecs`` of the other leg's SDP).
            host: the relay's address as the peer must reach it (IPv4 or IPv6 literal, or a host name).
            ports: the relay's RTP port for each media section, by index.

        Returns:
            The SDP body.

        Raises:
            ValueError: ``host`` is empty or contains whitespace, a port is out of 0-65534, or ``ports`` has
                no entry for an accepted stream (our own misuse, not the peer's).
        """
        _check_host(host)
        addrtype = _addrtype(host)
        media: list[MediaDescription] = []
        for index, section in enumerate(sdp.media):
            attributes = [(n, v) for n, v in section.attributes if not _is_ice(n)]
            if section.port == 0:
                media.append(replace(section, attributes=attributes))
                continue
            if index >= len(ports):
                raise ValueError(f"no relay port given for media section {index}")
            port = ports[index]
            if port == 0:  # the caller does not carry this stream: reject it (RFC 3264 §6)
                media.append(replace(section, port=0, attributes=attributes))
                continue
            if not 0 < port < 65535:
                raise ValueError(f"relay port {port} out of range")
            attributes = [
                (n, f"{port + 1} IN {addrtype} {host}") if n == "rtcp" else (n, v) for n, v in attributes
            ]
            anchored = replace(
                section,
                port=port,
                connection=None if section.connection is None else host,
                attributes=attributes,
            )
            if self.media_filter is not None and section.media == "audio":
                anchored = self.media_filter(anchored)
            media.append(anchored)
        session = replace(
            sdp,
            connection=host,
            media=media,
            attributes=[(n, v) for n, v in sdp.attributes if not _is_ice(n)],
        )
        return self._emit(session, host)

    def passthrough(self, sdp: SessionDescription, host: str | None = None) -> bytes:
        """The body to send when media flows directly between the phones: ``sdp`` as it is (its c=, m=, ICE)
        under our origin.

        Args:
            sdp: the other leg's description.
            host: the o= address; defaults to the last ``host`` given, else ``sdp``'s own origin address.

        Returns:
            The SDP body.

        Raises:
            ValueError: ``host`` is empty or contains whitespace.
        """
        if host is not None:
            _check_host(host)
        else:
            host = self._host or sdp.origin.address
        return self._emit(sdp, host)

    def _emit(self, sdp: SessionDescription, host: str) -> bytes:
        self._host = host
        origin = Origin(self.username, str(self.session_id), self._version, "IN", _addrtype(host), host)
        body = replace(sdp, origin=origin).serialize()
        if self._last is not None and body != self._last:
            self._version += 1
            body = replace(sdp, origin=replace(origin, sess_version=self._version)).serialize()
        self._last = body
        return body


class _MediaBuilder:
    """An m= section while its lines are being read."""

    __slots__ = ("attributes", "connection", "formats", "line", "lines", "media", "port", "port_count",
                 "proto")

    def __init__(self, media: str, port: int, port_count: int | None, proto: str, formats: list[str],
                 line: int) -> None:
        self.media = media
        self.port = port
        self.port_count = port_count
        self.proto = proto
        self.formats = formats
        self.line = line
        self.connection: tuple[str, str] | None = None
        self.attributes: list[tuple[str, str | None]] = []
        self.lines: list[tuple[str, str]] = []

    @classmethod
    def parse(cls, value: str, number: int) -> _MediaBuilder:
        parts = value.split()
        if len(parts) < 3:
            raise SdpError("m= line needs media, port and proto", number)
        media, port_text, proto, *formats = parts
        port_text, slash, count_text = port_text.partition("/")
        if not _is_port(port_text):
            raise SdpError("m= port is not a number from 0 to 65535", number)
        port_count = None
        if slash:
            if not count_text.isascii() or not count_text.isdigit() or int(count_text) == 0:
                raise SdpError("m= port count is not a positive number", number)
            port_count = int(count_text)
        return cls(media, int(port_text), port_count, proto, formats, number)

    def build(self, strict: bool) -> MediaDescription:
        if not self.formats and (strict or self.port != 0):
            raise SdpError("m= line has no formats", self.line)
        return MediaDescription(
            media=self.media,
            port=self.port,
            proto=self.proto,
            formats=self.formats,
            connection=None if self.connection is None else self.connection[0],
            attributes=self.attributes,
            port_count=self.port_count,
            lines=self.lines,
            connection_line=None if self.connection is None else self.connection[1],
        )


def _parse_origin(value: str, number: int) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError("o= line needs six fields", number)
    username, sess_id, version, nettype, addrtype, address = parts
    if not version.isascii() or not version.isdigit():
        raise SdpError("o= session version is not a number", number)
    return Origin(username, sess_id, int(version), nettype, addrtype, address)


def _parse_connection(value: str, number: int) -> str:
    """The address of a c= value, without the multicast /ttl[/count] suffix."""
    parts = value.split()
    if len(parts) != 3:
        raise SdpError("c= line needs nettype, addrtype and address", number)
    nettype, addrtype, address = parts
    if nettype != "IN" or addrtype not in ("IP4", "IP6"):
        raise SdpError("c= line is not IN IP4 or IN IP6", number)
    address = address.split("/", 1)[0]
    if not address:
        raise SdpError("c= address is empty", number)
    return address


def _parse_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    return (name, rest) if colon else (name, None)


def _attribute_line(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _connection_value(address: str, received: str | None) -> str:
    """The c= value for ``address``: the received text while it still names the same address (keeps a
    multicast /ttl and the sender's spelling), else ``IN IP4|IP6 address``."""
    if received is not None:
        parts = received.split()
        if len(parts) == 3 and parts[2].split("/", 1)[0] == address:
            return received
    return f"IN {_addrtype(address)} {address}"


def _direction(attributes: list[tuple[str, str | None]]) -> str | None:
    found = None
    for name, value in attributes:
        if value is None and name in DIRECTIONS:
            found = name
    return found


def _first_word(value: str | None) -> str:
    if not value:
        return ""
    return value.split(None, 1)[0]


def _is_ice(name: str) -> bool:
    return name in _ICE_ATTRIBUTES or name.startswith("ice-")


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


def _addrtype(host: str) -> str:
    return "IP6" if ":" in host else "IP4"


def _check_host(host: str) -> None:
    if _NO_SPACE_RE.fullmatch(host) is None:
        raise ValueError(f"SDP host {host!r} must be one non-blank word")


_ANSWER_DIRECTION: Final = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                            "inactive": "inactive"}


@dataclass(frozen=True, slots=True)
class AudioAnswer:
    """What the engine answers an offer with when it terminates the media itself (prompts, voicemail).

    ``sdp`` is the answer to rewrite with our address and port (one voice codec and telephone-event in
    the first usable audio stream, every other stream rejected); ``payload_type``/``event_payload_type``
    are what to send; ``host``/``port`` where the offerer wants RTP.
    """

    sdp: SessionDescription
    payload_type: int
    event_payload_type: int | None
    host: str | None
    port: int


def answer_audio(offer: SessionDescription, codecs: Sequence[str] = ("PCMU", "PCMA")) -> AudioAnswer | None:
    """Answer ``offer`` for the engine's own endpoint (RFC 3264 §6.1): the first audio stream with a codec
    of ``codecs`` (the offerer's preference order) gets that one codec plus telephone-event if offered; None
    when no stream qualifies.

    Raises:
        Nothing.
    """
    wanted = {name.lower() for name in codecs}
    media: list[MediaDescription] = []
    chosen: tuple[int, int | None, str | None, int] | None = None
    for section in offer.media:
        if chosen is not None or section.media != "audio" or section.port == 0:
            media.append(replace(section, port=0))
            continue
        names = section.encoding_names()
        voice = next((pt for pt in section.formats if names.get(pt, "").lower() in wanted), None)
        if voice is None or not voice.isdigit():
            media.append(replace(section, port=0))
            continue
        event = next((pt for pt in section.formats if names.get(pt, "").lower() == TELEPHONE_EVENT), None)
        keep = [voice] if event is None else [voice, event]
        attributes = [(name, value) for name, value in section.attributes
                      if name not in _PT_KEYED_ATTRIBUTES or _first_word(value) in keep]
        # RFC 3264 §6.1: a sendonly offer gets recvonly, recvonly gets sendonly, inactive stays inactive.
        direction = _ANSWER_DIRECTION[section.effective_direction(offer)]
        attributes = [(n, v) for n, v in attributes if n not in DIRECTIONS] + [(direction, None)]
        media.append(replace(section, formats=keep, attributes=attributes))
        chosen = (int(voice), int(event) if event is not None and event.isdigit() else None,
                  section.connection_address(offer), section.port)
    if chosen is None:
        return None
    return AudioAnswer(replace(offer, media=media, attributes=[(n, v) for n, v in offer.attributes
                                                               if n not in DIRECTIONS]), *chosen)
