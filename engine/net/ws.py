"""SIP over WebSocket (RFC 7118): ``WS`` and ``WSS`` listeners beside the other transports.

A browser speaks SIP over a WebSocket with the subprotocol ``sip``; each text or binary message is one SIP
message (§5), so no Content-Length framing is needed. The RFC 6455 upgrade and framing are the sans-IO
``websockets.server.ServerProtocol`` driven from an ``asyncio.Protocol`` (asyncio's loop and uvloop alike):
bytes in, events and bytes out, as our SIP core is. What this module adds:

- the upgrade must offer ``Sec-WebSocket-Protocol: sip`` (§4); one that does not gets 400, and so does any
  other malformed upgrade (the library's answers: 400, 405, 426, 431...); bytes that are not HTTP at all are
  closed without an answer. An upgrade not done within ``WS_HANDSHAKE_TIMEOUT_S`` is closed.
- each complete message goes to ``SipTransport.receive`` as from ``Peer("WS"|"WSS", host, port)``; the
  connection sits in ``SipTransport.streams`` under that peer, so answers, and requests to a phone that
  registered over it (``branch_peer`` returns the REGISTER's source for reliable transports), go down it:
  RFC 5626 flow reuse, the only way to reach a browser, which accepts no connections. When it is gone, bytes
  for it fail at once (``transport.NO_CONNECT_TRANSPORTS``): the INVITE's branch ends with a 503.
- a message over ``MAX_MESSAGE_BYTES`` (one frame or the fragments of one) closes with 1009, a protocol
  violation (unmasked frame, bad opcode, reserved bits) with 1002, both by the library; no extensions are
  negotiated (no permessage-deflate, so no decompression bombs).
- keep-alive: the client's pings are answered by the library; we ping a connection silent for
  ``WS_PING_INTERVAL_S`` and close one that stays silent for another interval (a dead NAT binding or peer).
- a peer that never answers our close is aborted after ``WS_CLOSE_TIMEOUT_S``; one that sends but never
  reads is dropped as a TCP one is (``MAX_TCP_WRITE_BUFFER``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Final, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN, State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from engine.net.transport import (
    MAX_TCP_CONNECTIONS,
    MAX_TCP_WRITE_BUFFER,
    TLS_HANDSHAKE_TIMEOUT_S,
    SipTransport,
)
from engine.sip.parser import MAX_MESSAGE_BYTES
from engine.sip.transaction import Peer

logger = logging.getLogger(__name__)
#: the library's own logger: its debug lines (every frame, and tracebacks of refused upgrades) would flood
#: ``--log-level debug``; this module logs what a refusal or a close was, once, itself
_library_logger = logging.getLogger(f"{__name__}.library")
_library_logger.setLevel(logging.WARNING)

SUBPROTOCOL: Final = Subprotocol("sip")  # RFC 7118 §4
WS_HANDSHAKE_TIMEOUT_S: Final = 10.0  # an accepted connection whose upgrade is not done by then is closed
WS_PING_INTERVAL_S: Final = 30.0
WS_CLOSE_TIMEOUT_S: Final = 5.0


class SipWsProtocol(asyncio.Protocol):
    """One WebSocket connection (``WS``; ``SipWssProtocol`` over TLS): upgrade, then one SIP message per
    WebSocket message both ways."""

    TRANSPORT: str = "WS"
    #: class attributes so that tests can shorten them
    handshake_timeout_s: float = WS_HANDSHAKE_TIMEOUT_S
    ping_interval_s: float = WS_PING_INTERVAL_S
    close_timeout_s: float = WS_CLOSE_TIMEOUT_S

    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.ws = ServerProtocol(subprotocols=[SUBPROTOCOL], max_size=MAX_MESSAGE_BYTES,
                                 logger=_library_logger)
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(self.TRANSPORT, "", 0)
        self.table = owner.streams[self.TRANSPORT]
        self._timer: asyncio.TimerHandle | None = None
        self._last_active = 0.0
        self._pinged = False
        self._fragments: list[bytes] = []  # the frames so far of a fragmented message

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)
        addr = transport.get_extra_info("peername")
        self.peer = Peer(self.TRANSPORT, str(addr[0]), int(addr[1]))
        if len(self.table) >= MAX_TCP_CONNECTIONS:
            logger.warning("too many %s connections; refusing %s:%d", self.TRANSPORT, self.peer.host,
                           self.peer.port)
            tr.abort()
            return
        self.table[(self.peer.host, self.peer.port)] = self
        self._last_active = self.owner.clock.now()
        self._timer = asyncio.get_running_loop().call_later(self.handshake_timeout_s, self._on_timer)

    def data_received(self, data: bytes) -> None:
        self._last_active = self.owner.clock.now()
        self._pinged = False
        ws = self.ws
        try:
            ws.receive_data(data)
            for event in ws.events_received():
                if isinstance(event, Request):
                    self._upgrade(event)
                elif isinstance(event, Frame):
                    self._frame(event)
            self._write()
        except Exception:  # a fault of ours or the library's: this connection ends, the transport serves on
            self.owner.internal_errors += 1
            logger.exception("internal error on %s %s:%d; closing it", self.TRANSPORT, self.peer.host,
                             self.peer.port)
            if self.transport is not None:
                self.transport.abort()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._write()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.table.get((self.peer.host, self.peer.port)) is self:
            del self.table[(self.peer.host, self.peer.port)]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def pause_writing(self) -> None:
        """Our output to this peer is backing up: stop reading its requests until it drains."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- what the transport calls ----------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Send ``data`` as one WebSocket message (text when it is UTF-8, as SIP nearly always is; binary
        otherwise, RFC 7118 §5.1); False when the connection is not open (nothing was queued)."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.state is not OPEN:
            return False
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            self.ws.send_binary(data)
        else:
            self.ws.send_text(data)
        self._write()
        if transport.get_write_buffer_size() > MAX_TCP_WRITE_BUFFER:
            logger.info("closing %s %s:%d: it does not read its answers", self.TRANSPORT, self.peer.host,
                        self.peer.port)
            transport.abort()
        return True

    def close(self) -> None:
        """Close with 1001 (going away) when open, at once otherwise."""
        if self.ws.state is OPEN and self.transport is not None and not self.transport.is_closing():
            self.ws.send_close(1001)
            self._write()
        elif self.transport is not None:
            self.transport.close()

    # -- internals -----------------------------------------------------------------------------------
    def _upgrade(self, request: Request) -> None:
        ws = self.ws
        response = ws.accept(request)
        if response.status_code != 101:
            reason = ws.handshake_exc or response.reason_phrase
            logger.info("refused the %s upgrade from %s:%d: %d %s", self.TRANSPORT, self.peer.host,
                        self.peer.port, response.status_code, reason)
        ws.send_response(response)
        if ws.state is OPEN:
            self._rearm(self.ping_interval_s)  # the upgrade's deadline is met: keep-alive from now on

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
            data = bytes(frame.data)
            if not frame.fin:
                self._fragments.append(data)
                return
            if self._fragments:
                self._fragments.append(data)
                data = b"".join(self._fragments)
                self._fragments = []
            self.owner.receive(data, self.peer)

    def _write(self) -> None:
        """Write what the WebSocket protocol has for the peer; its end-of-stream mark closes the connection
        (after the buffered bytes), and an expected close is bounded by ``close_timeout_s``."""
        transport = self.transport
        if transport is None:
            return
        for chunk in self.ws.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()
        if self.ws.close_expected() and not transport.is_closing():
            self._rearm(self.close_timeout_s)

    def _rearm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        """The one timer: the upgrade's deadline, then keep-alive pings, or the deadline of a close."""
        self._timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        state: State = self.ws.state
        if state is not OPEN:  # the upgrade or the close did not finish in time
            logger.info("closing %s %s:%d: %s not finished in time", self.TRANSPORT, self.peer.host,
                        self.peer.port, "close" if self.ws.close_expected() else "upgrade")
            transport.abort()
            return
        silent = self.owner.clock.now() - self._last_active
        if silent < self.ping_interval_s:
            self._rearm(self.ping_interval_s - silent)
        elif not self._pinged:
            self._pinged = True
            self.ws.send_ping(b"")
            self._write()
            self._rearm(self.ping_interval_s)
        else:
            logger.info("closing %s %s:%d: no answer to a ping", self.TRANSPORT, self.peer.host,
                        self.peer.port)
            transport.abort()


class SipWssProtocol(SipWsProtocol):
    """One WebSocket connection over TLS, after its handshake."""

    TRANSPORT = "WSS"


async def start_ws(owner: SipTransport, host: str, port: int, context: ssl.SSLContext | None = None,
                   handshake_timeout_s: float = TLS_HANDSHAKE_TIMEOUT_S) -> tuple[str, int]:
    """Listen for SIP over WebSocket on ``host:port`` (0 picks a free port): ``WS``, or ``WSS`` with the TLS
    server ``context``. The server is closed by ``owner.stop()``. Returns the bound address.

    Raises:
        OSError: the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    if context is None:
        server = await loop.create_server(lambda: SipWsProtocol(owner), host, port, reuse_address=True,
                                          backlog=1024)
    else:
        server = await loop.create_server(lambda: SipWssProtocol(owner), host, port, ssl=context,
                                          ssl_handshake_timeout=handshake_timeout_s, reuse_address=True,
                                          backlog=1024)
    owner.add_server(server)
    bound_port = int(server.sockets[0].getsockname()[1])
    logger.info("SIP listening on %s %s:%d", "ws" if context is None else "wss", host, bound_port)
    return host, bound_port
