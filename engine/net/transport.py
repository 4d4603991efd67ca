"""SIP transports: UDP and TCP on the same port, TLS on its own, as thin asyncio Protocols over the sans-IO
endpoint.

``SipTransport`` owns the sockets and the single re-armed timer (the aioquic adapter shape). Every
received datagram or framed TCP message goes to ``SipEndpoint.receive_datagram``; then the endpoint's
events are handed to the transaction user, its datagrams are sent (UDP per Via/rport, TCP back over the
connection the peer uses: connection reuse), and the timer is re-armed. Any exception while handling one
message is logged with its source and counted; the transport keeps serving (STYLE 3.5 rule 3).

Bytes that cannot be sent (a refused or timed-out TCP connect, a connection already closing, too many
connects in flight) go back to ``SipEndpoint.transport_error``: the client transaction that sent them ends
at once (RFC 3261 §17.1.4) and its TU hears of it as a 503, instead of 32 s later from Timer B or F.

Other sans-IO objects with deadlines of their own (MWI subscription expiry) are ``watch``ed: the transport
arms one timer for each as it does for the endpoint, re-armed after every message, timer and pump.

SIP over TLS (RFC 3261 §18, ``transport=tls``; 5061 by default) is a stream like TCP, on a listener of its
own (``start_tls``): the loop's TLS layer (asyncio's or uvloop's ``ssl=``) does the handshake, and only then
does ``SipTlsProtocol`` (the TCP protocol with transport ``TLS``) see the connection. Its messages carry
``Peer("TLS", ...)``, so everything that answers or calls a TLS phone goes back over that connection, as
for TCP (RFC 5626 flow reuse); CRLF keep-alives are answered alike. A handshake that fails (garbage, an
old protocol version) or does not finish within ``TLS_HANDSHAKE_TIMEOUT_S`` is closed by the TLS layer
before any SIP code runs, so a peer that never completes one holds a socket for that long at most.

SIP over WebSocket (RFC 7118, ``WS`` and ``WSS``) is ``engine.net.ws``: its connections sit in ``streams``
beside TCP's and TLS's and are reached the same way; a browser accepts no connections, so bytes for a
WebSocket peer whose connection is gone fail at once (``NO_CONNECT_TRANSPORTS``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Final, Protocol, cast

from engine.clock import Clock
from engine.net.traffic import count_message
from engine.sip.endpoint import SipEndpoint
from engine.sip.errors import SipParseError
from engine.sip.events import Event
from engine.sip.parser import MAX_MESSAGE_BYTES, StreamFramer, parse_message
from engine.sip.transaction import Peer

logger = logging.getLogger(__name__)

UDP_BUFFER_BYTES: Final = 8 * 1024 * 1024
MAX_TCP_CONNECTIONS: Final = 10_000  # per stream transport; beyond it a new connection is aborted
MAX_TCP_PER_SOURCE: Final = 200  # connections from one address: one host cannot take the whole table
TCP_IDLE_TIMEOUT_S: Final = 3600.0
CONNECT_TIMEOUT_S: Final = 5.0
MAX_TCP_WRITE_BUFFER: Final = 1 << 20  # bytes queued for one peer before the connection is dropped
MAX_PENDING_CONNECTS: Final = 256  # outbound TCP connects in flight; beyond this, answers are dropped
TLS_HANDSHAKE_TIMEOUT_S: Final = 10.0  # an accepted TLS connection that has not finished its handshake
TLS_DEFAULT_PORT: Final = 5061  # RFC 3261 §19.1.2: a TLS sent-by without a port
STREAM_TRANSPORTS: Final = ("TCP", "TLS", "WS", "WSS")
NO_CONNECT_TRANSPORTS: Final = frozenset({"WS", "WSS"})  # we never open these: the peer's connection only

EventHandler = Callable[[Event, float], None]


class TimerSource(Protocol):
    """A sans-IO object beside the endpoint with deadlines of its own (monotonic, the clock's ``now``)."""

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class StreamConnection(Protocol):
    """One open stream connection to a peer, as the transport's tables hold it (TCP, TLS, WS, WSS)."""

    def send(self, data: bytes) -> bool: ...

    def close(self) -> None: ...


class _WatchedTimer:
    """The one armed timer of a watched ``TimerSource``."""

    __slots__ = ("at", "handle", "source")

    def __init__(self, source: TimerSource) -> None:
        self.source = source
        self.handle: asyncio.TimerHandle | None = None
        self.at: float | None = None


class SipTransport:
    """The SIP listening sockets of one engine process and the pump between them and the endpoint."""

    def __init__(self, endpoint: SipEndpoint, handler: EventHandler, clock: Clock, *,
                 max_connections: int = MAX_TCP_CONNECTIONS,
                 max_per_source: int = MAX_TCP_PER_SOURCE) -> None:
        self.endpoint = endpoint
        #: caps on accepted stream connections (issue 18 part 3): per transport, and per source address
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        #: open stream connections by source address (all stream transports), for ``max_per_source``
        self.per_source: dict[str, int] = {}
        self.refused_connections = 0
        self.handler = handler
        self.clock = clock
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.Server | None = None
        self.tls_server: asyncio.Server | None = None
        #: the open stream connections by the peer's (host, port), one table per transport (TCP, TLS, WS, WSS)
        self.streams: dict[str, dict[tuple[str, int], StreamConnection]] = {t: {} for t in STREAM_TRANSPORTS}
        #: further listeners closed by ``stop`` (``add_server``: engine.net.ws's WebSocket servers)
        self.extra_servers: list[asyncio.Server] = []
        self.connections = self.streams["TCP"]
        #: the context of the TLS connections we open (a response whose connection is gone); set by start_tls
        self.tls_client: ssl.SSLContext | None = None
        self.internal_errors = 0
        #: messages received and sent, by method or response class (engine.net.traffic; read by /metrics)
        self.received: dict[bytes, int] = {}
        self.sent: dict[bytes, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._watched: list[_WatchedTimer] = []
        self._pending: list[tuple[bytes, Peer]] = []  # output of received messages, sent by _flush_soon
        self._flush_scheduled = False

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind UDP and TCP on ``host:port`` (port 0 picks one free for both). Returns the bound address.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UDP_BUFFER_BYTES)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        bound_port = sock.getsockname()[1]
        self.udp, _ = await loop.create_datagram_endpoint(lambda: SipUdpProtocol(self), sock=sock)
        try:
            self.tcp_server = await loop.create_server(
                lambda: SipTcpProtocol(self), host, bound_port, reuse_address=True, backlog=1024
            )
        except OSError:
            # The port is one for both: without TCP nothing listens, so the UDP socket must not linger.
            self.udp.close()
            self.udp = None
            raise
        logger.info("SIP listening on udp+tcp %s:%d", host, bound_port)
        return host, bound_port

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext,
                        client: ssl.SSLContext | None = None,
                        handshake_timeout_s: float = TLS_HANDSHAKE_TIMEOUT_S) -> tuple[str, int]:
        """Listen for SIP over TLS on ``host:port`` (0 picks a free port). Returns the bound address.

        Args:
            context: the server context (``engine.net.certificate.server_context``).
            client: the context of connections we open towards TLS peers (None: none are opened).
            handshake_timeout_s: how long an accepted connection may take to finish its handshake.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.tls_client = client
        self.tls_server = server = await loop.create_server(
            lambda: SipTlsProtocol(self), host, port, ssl=context, ssl_handshake_timeout=handshake_timeout_s,
            reuse_address=True, backlog=1024,
        )
        bound_port = int(server.sockets[0].getsockname()[1])
        logger.info("SIP listening on tls %s:%d", host, bound_port)
        return host, bound_port

    def add_server(self, server: asyncio.Server) -> None:
        """Serve one more listener of this loop (engine.net.ws's): ``stop`` closes it."""
        self._loop = asyncio.get_running_loop()
        self.extra_servers.append(server)

    async def stop(self) -> None:
        """Stop accepting, close every connection and the UDP socket (after sending what is answered)."""
        self._flush()
        self._flush_scheduled = False  # a flush already scheduled does nothing (and arms nothing)
        if self._timer is not None:
            self._timer.cancel()
        for watched in self._watched:
            if watched.handle is not None:
                watched.handle.cancel()
        servers = [s for s in (self.tcp_server, self.tls_server) if s is not None] + self.extra_servers
        for server in servers:
            server.close()
        for table in self.streams.values():
            for conn in list(table.values()):
                conn.close()
        if self.udp is not None:
            self.udp.close()
        for task in list(self._connecting):
            task.cancel()
        for server in servers:
            await server.wait_closed()

    def watch(self, source: TimerSource) -> None:
        """Keep a timer armed at ``source.get_timer()`` from now on; when it fires, ``source.handle_timer``
        runs and what it sent goes out (the endpoint's events and datagrams, as after a message)."""
        self._watched.append(_WatchedTimer(source))
        self._arm()

    # -- the pump ----------------------------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer) -> None:
        """Feed one message from ``peer`` and run everything it causes. What that sends goes out, and the
        timer is re-armed, once the loop has handed over the messages it has already read (``_flush_soon``).
        """
        now = self.clock.now()
        endpoint = self.endpoint
        count_message(self.received, data)
        try:
            endpoint.receive_datagram(data, peer, now)
            self._drain(now)
        except Exception:
            self.internal_errors += 1
            logger.exception("internal error handling a message from %s:%d: %r", peer.host, peer.port,
                             data[:100])
            endpoint.datagrams_to_send()  # drop half-built output of the failed message
        else:
            out = endpoint.datagrams_to_send()
            if out:
                self._pending += out
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Send the pending output after the loop's current round of I/O callbacks, in one burst.

        uvloop (libuv) reads up to 32 datagrams per readable socket before it runs the ready callbacks; a
        flush per message woke the peer once per response (on loopback each wake-up costs the sender more
        than the send itself), one burst per round wakes it once. Under light load a round is one message
        and nothing waits longer than it did; the loop runs ``call_soon`` callbacks before it polls again.
        """
        if self._flush_scheduled:
            return
        if self._loop is None:
            self._flush()
            return
        self._flush_scheduled = True
        self._loop.call_soon(self._flush_and_arm)

    def _flush_and_arm(self) -> None:
        if not self._flush_scheduled:
            return  # stopped meanwhile
        self._flush_scheduled = False
        self._flush()
        self._arm()

    def pump(self) -> None:
        """Deliver pending events and send pending output (after the application acted on its own)."""
        self._drain(self.clock.now())
        self._flush()
        self._arm()

    def _drain(self, now: float) -> None:
        endpoint, handler = self.endpoint, self.handler
        event = endpoint.next_event()
        while event is not None:
            handler(event, now)
            event = endpoint.next_event()

    def _flush(self) -> None:
        out = self.endpoint.datagrams_to_send()
        pending = self._pending
        if pending:  # received messages' output comes first: it was queued first
            self._pending = []
            pending += out
            out = pending
        if not out:
            return
        udp = self.udp
        sent = self.sent
        streams = self.streams
        for data, peer in out:
            count_message(sent, data)
            if peer.transport == "UDP":
                if udp is not None:
                    udp.sendto(data, (peer.host, peer.port))
            else:
                conn = streams.get(peer.transport, self.connections).get((peer.host, peer.port))
                if conn is None or not conn.send(data):
                    self._send_on_new_connection(data, peer)  # none, or closing: §18.1.1 opens a new one

    def _send_on_new_connection(self, data: bytes, peer: Peer) -> None:
        """Open a connection for ``data``. A request goes to ``peer``. A response whose connection has closed
        goes, per RFC 3261 §18.2.2, to the top Via's ``received`` address (else its host) and sent-by port
        (default 5060, 5061 for TLS), where the client listens."""
        tls = peer.transport == "TLS"
        full = len(self._connecting) >= MAX_PENDING_CONNECTS
        cannot = (tls and self.tls_client is None) or peer.transport in NO_CONNECT_TRANSPORTS
        if self._loop is None or full or cannot:
            logger.info("no %s connection to %s:%d; dropped %d bytes", peer.transport, peer.host, peer.port,
                        len(data))
            if self._loop is not None:
                # Not from inside this flush: the TU may send again at once, to the same full table.
                self._loop.call_soon(self._send_failed, data, peer)
            return
        host, port = peer.host, peer.port
        if data.startswith(b"SIP/2.0 "):
            try:
                via = parse_message(data, stream=True).top_via
            except SipParseError:
                logger.info("unroutable response to %s:%d dropped", peer.host, peer.port)
                return
            host = via.params.get("received") or via.host
            port = via.port or (TLS_DEFAULT_PORT if tls else 5060)
        conn = self.streams.get(peer.transport, self.connections).get((host, port))
        if conn is not None and conn.send(data):
            return
        task = self._loop.create_task(self._connect_and_send(host, port, data, peer))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self, host: str, port: int, data: bytes, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        address = host.strip("[]")
        try:
            # asyncio.timeout, not wait_for, whose Python 3.11 version can drop the transport's stop-time
            # cancel when the connection completes in the same loop pass.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                proto: SipTcpProtocol
                if peer.transport == "TLS":
                    _, proto = await loop.create_connection(
                        lambda: SipTlsProtocol(self), address, port, ssl=self.tls_client,
                        server_hostname=address, ssl_handshake_timeout=CONNECT_TIMEOUT_S,
                    )
                else:
                    _, proto = await loop.create_connection(lambda: SipTcpProtocol(self), address, port)
        except (TimeoutError, OSError) as exc:
            what = "deliver a response" if data.startswith(b"SIP/2.0 ") else "send a request"
            logger.info("cannot connect to %s:%d to %s: %s", host, port, what, exc or "timed out")
            self._send_failed(data, peer)
            return
        if not proto.send(data):  # refused at once (too many connections)
            self._send_failed(data, peer)

    def _send_failed(self, data: bytes, peer: Peer) -> None:
        """``data`` for ``peer`` could not be sent: the endpoint ends its transaction (§17.1.4), the TU
        hears of it now, and whatever the TU does next goes out."""
        now = self.clock.now()
        try:
            self.endpoint.transport_error(data, peer, now)
            self._drain(now)
        except Exception:
            self.internal_errors += 1
            logger.exception("internal error handling a transport error towards %s:%d", peer.host, peer.port)
        self._flush()
        self._arm()

    def _arm(self) -> None:
        loop = self._loop
        if loop is None:
            return
        at = self.endpoint.get_timer()
        # A later deadline can wait for the armed one: it re-arms when it fires (fewer TimerHandles).
        if at is not None and (self._timer_at is None or at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = loop.call_at(at, self._on_timer)
        for watched in self._watched:
            at = watched.source.get_timer()
            if at is not None and (watched.at is None or at < watched.at):
                if watched.handle is not None:
                    watched.handle.cancel()
                watched.at = at
                watched.handle = loop.call_at(at, self._on_watched_timer, watched)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.clock.now()
        try:
            self.endpoint.handle_timer(now)
            self._drain(now)
        except Exception:
            self.internal_errors += 1
            logger.exception("internal error in a SIP timer")
        self._flush()
        self._arm()

    def _on_watched_timer(self, watched: _WatchedTimer) -> None:
        watched.handle = None
        watched.at = None
        now = self.clock.now()
        try:
            watched.source.handle_timer(now)
            self._drain(now)
        except Exception:
            self.internal_errors += 1
            logger.exception("internal error in the timer of %s", type(watched.source).__name__)
        self._flush()
        self._arm()


class SipUdpProtocol(asyncio.DatagramProtocol):
    """UDP: one datagram is one message (§18.3)."""

    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.owner.receive(data, Peer("UDP", str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        logger.debug("udp error: %s", exc)


class SipTcpProtocol(asyncio.Protocol):
    """One TCP connection: a ``StreamFramer`` cuts the stream into messages; CRLF pings get a pong."""

    TRANSPORT: str = "TCP"

    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.framer = StreamFramer(MAX_MESSAGE_BYTES)
        self.transport: asyncio.Transport | None = None
        self.peer = Peer(self.TRANSPORT, "", 0)
        self.table = owner.streams[self.TRANSPORT]
        self._idle: asyncio.TimerHandle | None = None
        self._last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)
        addr = transport.get_extra_info("peername")
        self.peer = Peer(self.TRANSPORT, str(addr[0]), int(addr[1]))
        owner = self.owner
        host = self.peer.host
        if len(self.table) >= owner.max_connections or owner.per_source.get(host, 0) >= owner.max_per_source:
            owner.refused_connections += 1
            if owner.refused_connections <= 100 or owner.refused_connections % 1000 == 0:
                logger.warning("too many %s connections (%d open, %d from %s); refusing %s:%d (%d refused)",
                               self.TRANSPORT, len(self.table), owner.per_source.get(host, 0), host, host,
                               self.peer.port, owner.refused_connections)
            tr.abort()
            return
        self.table[(host, self.peer.port)] = self
        owner.per_source[host] = owner.per_source.get(host, 0) + 1
        self._touch()

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            messages, pings = self.framer.feed(data)
        except SipParseError as exc:
            logger.info("closing %s %s:%d: %s %s", self.TRANSPORT, self.peer.host, self.peer.port, exc.status,
                        exc.reason)
            self.close()
            return
        if pings and self.transport is not None:
            self.transport.write(b"\r\n" * pings)  # RFC 5626 §4.4.1: pong
        for message in messages:
            self.owner.receive(message, self.peer)

    def send(self, data: bytes) -> bool:
        """Queue ``data`` on this connection; False when it is closed or closing (nothing was queued)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(data)
        self._last_active = self.owner.clock.now()  # our BYE on a long quiet call keeps it open too
        if transport.get_write_buffer_size() > MAX_TCP_WRITE_BUFFER:
            # A peer that sends but never reads must not make us queue answers without end.
            logger.info("closing %s %s:%d: it does not read its answers", self.TRANSPORT, self.peer.host,
                        self.peer.port)
            transport.abort()
        return True

    def pause_writing(self) -> None:
        """Our output to this peer is backing up: stop reading its requests until it drains."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.table.get((self.peer.host, self.peer.port)) is self:
            del self.table[(self.peer.host, self.peer.port)]
            per_source = self.owner.per_source
            left = per_source.get(self.peer.host, 1) - 1
            if left > 0:
                per_source[self.peer.host] = left
            else:
                per_source.pop(self.peer.host, None)
        if self._idle is not None:
            self._idle.cancel()

    def _touch(self) -> None:
        """Note activity. One idle timer per connection, re-armed lazily when it fires (not per message)."""
        self._last_active = self.owner.clock.now()
        if self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(TCP_IDLE_TIMEOUT_S, self._idle_check)

    def _idle_check(self) -> None:
        left = self._last_active + TCP_IDLE_TIMEOUT_S - self.owner.clock.now()
        if left > 0:
            self._idle = asyncio.get_running_loop().call_later(left, self._idle_check)
        else:
            self._idle = None
            self.close()


class SipTlsProtocol(SipTcpProtocol):
    """One TLS connection, after its handshake: framed, answered and reused as a TCP one, as ``TLS``."""

    TRANSPORT = "TLS"
