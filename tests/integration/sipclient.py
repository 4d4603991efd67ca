"""A small stdlib SIP user agent for the integration tests: build requests, send them over UDP or TCP, read
the responses, answer digest challenges (MD5 and SHA-256, qop=auth) with hashlib.

It is deliberately independent of ``engine/``: a bug in the engine's parser or digest code must not be
mirrored by the client that checks it. UDP requests are retransmitted on a short timer (RFC 3261 Timer E
shape, capped) so a test does not depend on a single datagram surviving.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Final

COMPACT_FORMS: Final = {
    "i": "call-id",
    "m": "contact",
    "v": "via",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
}
HASHES: Final = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


class SipClientError(AssertionError):
    """The server did not answer as a SIP server must (no answer, garbage, a broken response)."""


@dataclass
class SipResponse:
    """One parsed SIP response, headers by lowercase long name, in order."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self.headers if k == key]

    def contacts(self) -> list[str]:
        """Every Contact value, comma-separated lists split (outside quotes and <>)."""
        out: list[str] = []
        for value in self.get_all("contact"):
            out.extend(split_header_list(value))
        return out

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")

    def __str__(self) -> str:
        return self.text


def split_header_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes or angle brackets."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and ch == ",":
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def split_message(buf: bytes) -> tuple[bytes, bytes] | None:
    """Frame one SIP message off the front of a stream buffer: (message, rest) or None if incomplete.

    Leading CRLFs (keep-alives, RFC 5626 §3.5.1) are skipped. Raises SipClientError on a header block
    without Content-Length (mandatory on stream transports, RFC 3261 §20.14).
    """
    buf = buf.lstrip(b"\r\n")
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("utf-8", "replace")
    m = re.search(r"^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head, re.IGNORECASE | re.MULTILINE)
    if m is None:
        raise SipClientError(f"stream message without Content-Length:\n{head}")
    total = end + 4 + int(m.group(1))
    if len(buf) < total:
        return None
    return buf[:total], buf[total:]


def parse_response(data: bytes) -> SipResponse:
    """Parse a SIP response (headers unfolded, compact forms expanded). Raises SipClientError."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipClientError(f"response without an empty line after its headers: {data[:200]!r}")
    lines = head.decode("utf-8", "replace").split("\r\n")
    # Strict on framing (RFC 3261 §7.3.1 / §20.14): a stray CR or LF inside a line, or a Content-Length that
    # disagrees with the body, is a broken response; peers such as SIPp then drop the message.
    for line in lines:
        if "\r" in line or "\n" in line:
            raise SipClientError(f"bare CR/LF inside a response line {line!r} in:\n{data!r}")
    m = re.fullmatch(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
    if m is None:
        raise SipClientError(f"not a SIP response status line: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipClientError(f"header line without a colon: {line!r}")
        key = name.strip().lower()
        headers.append((COMPACT_FORMS.get(key, key), value.strip()))
    length = next((v for k, v in headers if k == "content-length"), None)
    if length is not None and (not length.isdigit() or int(length) != len(body)):
        raise SipClientError(f"Content-Length {length!r} but {len(body)} body bytes in:\n{data!r}")
    return SipResponse(int(m.group(1)), m.group(2), headers, body, data)


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """``Digest realm="x", nonce="y", ...`` -> ("Digest", {"realm": "x", ...}) (keys lowercased)."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest):
        params[m.group(1).lower()] = m.group(2) if m.group(2) is not None else m.group(3)
    return scheme, params


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None = None,
    cnonce: str | None = None,
    qop: str | None = None,
) -> str:
    """The request-digest of RFC 2617 / RFC 7616 §3.4.1 for algorithm MD5 or SHA-256."""
    h = HASHES[algorithm]

    def hx(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1 = hx(f"{username}:{realm}:{password}")
    ha2 = hx(f"{method}:{uri}")
    if qop:
        return hx(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return hx(f"{ha1}:{nonce}:{ha2}")


def authorization(
    challenge: dict[str, str],
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization header value answering one parsed Digest challenge."""
    algorithm = challenge.get("algorithm", "MD5").upper()
    if algorithm not in HASHES:
        raise SipClientError(f"challenge with an algorithm this client does not know: {algorithm}")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    cnonce = cnonce or secrets.token_hex(8)
    ncs = f"{nc:08x}"
    resp = digest_response(
        algorithm=algorithm,
        username=username,
        realm=challenge["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=challenge["nonce"],
        nc=ncs,
        cnonce=cnonce,
        qop=qop,
    )
    parts = [
        f'username="{username}"',
        f'realm="{challenge["realm"]}"',
        f'nonce="{challenge["nonce"]}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={ncs}", f'cnonce="{cnonce}"']
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


def pick_challenge(resp: SipResponse, algorithm: str = "MD5") -> dict[str, str]:
    """The Digest challenge of ``resp`` (401 or 407) with the wanted algorithm. Raises SipClientError."""
    name = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
    offered = []
    for value in resp.get_all(name):
        scheme, params = parse_challenge(value)
        if scheme.lower() != "digest":
            continue
        offered.append(params.get("algorithm", "MD5").upper())
        if params.get("algorithm", "MD5").upper() == algorithm.upper():
            if "realm" not in params or "nonce" not in params:
                raise SipClientError(f"challenge without realm or nonce: {value}")
            return params
    raise SipClientError(f"no {algorithm} digest challenge in {resp.status} (offered {offered}):\n{resp}")


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class Transport:
    """A client socket: UDP (one datagram per message), TCP or TLS (Content-Length framing), or WS/WSS (one
    WebSocket message per SIP message, subprotocol sip: the ``websockets`` library's client, as a browser)."""

    server: tuple[str, int]
    kind: str = "UDP"
    bind_host: str = "127.0.0.1"
    sock: socket.socket = field(init=False)
    ws: Any = field(init=False, default=None)  # WS/WSS: the websockets ClientConnection
    _buf: bytes = field(default=b"", init=False)

    def __post_init__(self) -> None:
        if self.kind == "UDP":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((self.bind_host, 0))
        elif self.kind in ("TCP", "TLS"):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind((self.bind_host, 0))
            self.sock.settimeout(5.0)
            self.sock.connect(self.server)
            if self.kind == "TLS":
                # The engine's certificate is self-signed in tests: encryption checked, not its identity.
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                self.sock = context.wrap_socket(self.sock)
        elif self.kind in ("WS", "WSS"):
            from websockets.sync.client import connect

            context = None
            if self.kind == "WSS":
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            scheme = self.kind.lower()
            url = f"{scheme}://{self.server[0]}:{self.server[1]}"
            # Entered as its context manager (websockets 17 warns on a bare connect); closed by close().
            self.ws = connect(url, subprotocols=["sip"], ssl=context, open_timeout=5,
                              ping_interval=None).__enter__()
            self.sock = self.ws.socket
        else:
            raise ValueError(f"unknown transport {self.kind}")

    @property
    def local(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def send(self, data: bytes) -> None:
        if self.kind in ("WS", "WSS"):
            self.ws.send(data.decode())
        elif self.kind == "UDP":
            self.sock.sendto(data, self.server)
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float) -> bytes | None:
        """The next whole message, or None when nothing arrives within ``timeout`` seconds."""
        if self.kind in ("WS", "WSS"):
            try:
                message = self.ws.recv(timeout)
            except TimeoutError:
                return None
            return message.encode() if isinstance(message, str) else message
        deadline = time.monotonic() + timeout
        while True:
            if self.kind != "UDP":
                framed = split_message(self._buf)
                if framed is not None:
                    msg, self._buf = framed
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                if self.kind == "UDP":
                    data, _ = self.sock.recvfrom(65535)
                    return data
                chunk = self.sock.recv(65535)
            except (TimeoutError, BlockingIOError):
                return None
            if not chunk:
                raise SipClientError(
                    f"server closed the {self.kind} connection (buffered: {self._buf[:200]!r})"
                )
            self._buf += chunk

    def close(self) -> None:
        if self.kind in ("WS", "WSS"):
            self.ws.close()
        else:
            self.sock.close()


class SipClient:
    """One SIP user agent on one socket. Use as a context manager."""

    def __init__(
        self,
        server: tuple[str, int],
        *,
        transport: str = "UDP",
        bind_host: str = "127.0.0.1",
        domain: str | None = None,
    ) -> None:
        self.server = server
        self.transport = Transport(server, transport, bind_host)
        self.domain = domain or f"{server[0]}:{server[1]}"
        self.call_id = secrets.token_hex(12) + "@test"
        self.tag = secrets.token_hex(5)
        self.cseq = 0
        self.sent: list[bytes] = []
        self.ws_host = secrets.token_hex(6) + ".invalid"  # WS/WSS: the invented host of Via and Contact

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    @property
    def local(self) -> tuple[str, int]:
        return self.transport.local

    def contact_uri(self, user: str) -> str:
        if self.transport.kind in ("WS", "WSS"):  # RFC 7118 §5.2: a browser has no address of its own
            return f"sip:{user}@{self.ws_host};transport={self.transport.kind.lower()}"
        host, port = self.local
        suffix = "" if self.transport.kind == "UDP" else f";transport={self.transport.kind.lower()}"
        return f"sip:{user}@{host}:{port}{suffix}"

    def build(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]],
        *,
        body: bytes = b"",
        from_user: str = "tester",
        to_user: str | None = None,
        cseq: int | None = None,
        call_id: str | None = None,
        branch: str | None = None,
    ) -> bytes:
        """A request with Via/From/To/Call-ID/CSeq/Max-Forwards/Content-Length filled in."""
        host, port = self.local
        sent_by = self.ws_host if self.transport.kind in ("WS", "WSS") else f"{host}:{port}"
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to_user = from_user if to_user is None else to_user
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport.kind} {sent_by};branch={branch or new_branch()};rport",
            "Max-Forwards: 70",
            f"From: <sip:{from_user}@{self.domain}>;tag={self.tag}",
            f"To: <sip:{to_user}@{self.domain}>",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {cseq} {method}",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send_raw(self, data: bytes) -> None:
        self.sent.append(data)
        self.transport.send(data)

    def recv(self, timeout: float = 2.0) -> SipResponse | None:
        data = self.transport.recv(timeout)
        return None if data is None else parse_response(data)

    def transact(self, data: bytes, *, timeout: float = 5.0) -> SipResponse:
        """Send one request and return its final response (1xx skipped; UDP retransmitted from 0.5 s).

        Raises SipClientError when no final response arrives within ``timeout`` seconds.
        """
        self.send_raw(data)
        deadline = time.monotonic() + timeout
        interval, next_retx = 0.5, time.monotonic() + 0.5
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise SipClientError(
                    f"no final response within {timeout} s to:\n{data.decode('utf-8', 'replace')}"
                )
            wait = min(deadline, next_retx) - now if self.transport.kind == "UDP" else deadline - now
            resp = self.recv(wait)
            if resp is None:
                if self.transport.kind == "UDP" and time.monotonic() >= next_retx:
                    self.transport.send(data)
                    interval = min(interval * 2, 4.0)
                    next_retx = time.monotonic() + interval
                continue
            if resp.status >= 200 and self._matches(resp, data):
                return resp

    @staticmethod
    def _matches(resp: SipResponse, request: bytes) -> bool:
        """Match a response to the request by the Via branch (RFC 3261 §17.1.3)."""
        m = re.search(rb"branch=([^;\s,]+)", request)
        via = resp.get("via") or ""
        return m is None or m.group(1).decode() in via

    def options(self, *, timeout: float = 5.0) -> SipResponse:
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        return self.transact(self.build("OPTIONS", uri, [("Accept", "application/sdp")]), timeout=timeout)

    def register(
        self,
        user: str,
        password: str | None,
        *,
        expires: int | None = 3600,
        contact: str | None = "",
        algorithm: str = "MD5",
        extra: list[tuple[str, str]] | None = None,
        timeout: float = 5.0,
    ) -> SipResponse:
        """REGISTER ``user`` (answering one digest challenge when ``password`` is given); the final response.

        ``contact=""`` uses this socket's address, ``None`` sends no Contact (a query of the bindings), any
        other string is sent as the Contact value (``*`` to remove all).
        """
        uri = f"sip:{self.domain}"
        headers: list[tuple[str, str]] = []
        if contact == "":
            headers.append(("Contact", f"<{self.contact_uri(user)}>"))
        elif contact is not None:
            headers.append(("Contact", contact))
        if expires is not None:
            headers.append(("Expires", str(expires)))
        headers += extra or []
        headers.append(("User-Agent", "pbx-engine-tests"))
        resp = self.transact(self.build("REGISTER", uri, headers, from_user=user), timeout=timeout)
        if resp.status != 401 or password is None:
            return resp
        challenge = pick_challenge(resp, algorithm)
        auth = authorization(challenge, username=user, password=password, method="REGISTER", uri=uri)
        return self.transact(
            self.build("REGISTER", uri, [*headers, ("Authorization", auth)], from_user=user), timeout=timeout
        )
