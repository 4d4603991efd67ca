"""The RTP relay's sockets (the socket half of ``engine.media.relay``) and music on hold out of a relay side.

A call anchored on the engine gets a ``RelaySession``: two sides, "a" and "b", each with an RTP socket on an
even port and an RTCP socket on the next one. A packet that arrives on side a leaves from side b's socket of
the same kind towards b's peer, and the other way round; so each phone sees one address for us, and the
source of what we send is the port it was told to send to (symmetric RTP, RFC 4961, which NATs and
firewalls need). Where each side sends is ``relay.Latch``: the SDP address until that side's first packet,
then the packet's source.

The pairing is not fixed: ``RelaySide.connect`` re-points a side at any other side, of this session or of
another one (a call's leg moved to another call's leg, for transfers), and ``RelaySide.disconnect`` leaves a
side unconnected (held, or waiting to be bridged): what it receives is then counted and dropped. A side
keeps its port through all of this, so a phone moved between bridges is never re-INVITEd for it.

Why raw non-blocking sockets and ``loop.add_reader`` rather than a ``DatagramProtocol``: the B2BUA opens and
closes sessions from inside its (synchronous) event handler, and ``create_datagram_endpoint`` is a
coroutine; and the relay forwards bytes without needing a transport's buffering, so one reader callback per
socket that drains it (``recvfrom`` until EAGAIN, bounded so one flooded port cannot starve the loop) and
``sendto`` straight out of the paired socket is the cheapest Python path. A send that would block drops the
packet: RTP that is late is useless anyway. Nothing raises out of a callback: failures are counted (STYLE
3.5 rules 3 and 5).

The engine's own RTP endpoint (prompts, recording, digits) is ``engine.media.session``; the clock that drives
it and ``RelayMusic`` is ``engine.media.clock``. These three modules are the only socket and event-loop code
under ``engine.media``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from dataclasses import dataclass
from typing import Final

from engine.media.clock import MediaClock
from engine.media.g711 import G711Codec
from engine.media.hold import HoldStream
from engine.media.relay import Latch, PortAllocator, RelayExhausted, SockAddr
from engine.media.rtp import build_header
from engine.media.srtp import SrtpContext

logger = logging.getLogger(__name__)


#: Per-socket receive buffer asked for (the kernel caps it at net.core.rmem_max). Each socket carries one
#: stream of ~50 packets/s; the room is for the loop being busy elsewhere for a moment.
RECV_BUFFER_BYTES: Final = 1 << 20
#: Largest datagram read whole (RTP over UDP stays under the path MTU; more is truncated and still relayed).
MAX_DATAGRAM_BYTES: Final = 4096
#: Datagrams read per callback at most; the reader stays armed, so the rest are read on the next turn.
DRAIN_MAX: Final = 64
# bind() errors that mean "someone else has this port": skip to the next pair.
_PORT_TAKEN: Final = frozenset({errno.EADDRINUSE, errno.EACCES})
_OUT_OF_FDS: Final = frozenset({errno.EMFILE, errno.ENFILE})


@dataclass(slots=True)
class RelayStats:
    """Counters of relayed traffic (packets and bytes sent out), drops and errors."""

    packets: int = 0
    bytes: int = 0
    dropped: int = 0
    errors: int = 0

    def add(self, other: RelayStats) -> None:
        self.packets += other.packets
        self.bytes += other.bytes
        self.dropped += other.dropped
        self.errors += other.errors


class _Endpoint:
    """One relay socket (RTP or RTCP of one side), its latch, and the counters of what it received."""

    __slots__ = ("fd", "latch", "peer", "rtcp", "side", "sock", "srtp", "stats")

    def __init__(self, sock: socket.socket, ipv6: bool, rtcp: bool = False) -> None:
        self.sock = sock
        self.rtcp = rtcp
        #: the side's SRTP (``RelaySide.secure``): decrypt what arrives here, encrypt what leaves towards it
        self.srtp: SrtpContext | None = None
        self.fd = sock.fileno()
        self.latch = Latch(ipv6)
        self.side: RelaySide | None = None  # the side this socket belongs to (set by RelaySide)
        #: the socket of the same kind whose peer gets what this one receives (None: received, dropped)
        self.peer: _Endpoint | None = None
        self.stats = RelayStats()

    def pair(self, other: _Endpoint) -> None:
        """Relay both ways between this socket and ``other``, ending both sockets' previous pairings."""
        self.unpair()
        other.unpair()
        self.peer = other
        other.peer = self

    def unpair(self) -> None:
        peer = self.peer
        if peer is not None and peer.peer is self:
            peer.peer = None
        self.peer = None


class RelaySide:
    """One side of a session: what one phone (or trunk) sends to, and whom we send to.

    Attributes:
        port: the local RTP port (even); RTCP is ``port + 1``.
    """

    __slots__ = ("_rtcp", "_rtp", "port")

    def __init__(self, port: int, rtp: _Endpoint, rtcp: _Endpoint) -> None:
        self.port = port
        self._rtp = rtp
        self._rtcp = rtcp
        rtp.side = rtcp.side = self

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """Send to ``host:port`` (RTCP to ``rtcp_port``, default ``port + 1``) until the peer's first packet
        from elsewhere latches; called again (a re-INVITE's SDP), it resets the latch.

        A destination we cannot send to (port 0, c=0.0.0.0, a host name) leaves the side waiting for the
        peer's first packet.

        Raises:
            ValueError: a port outside 0-65535.
        """
        self._rtp.latch.set_remote(host, port)
        if rtcp_port is None:
            rtcp_port = port + 1 if 0 < port < 65535 else 0
        self._rtcp.latch.set_remote(host, rtcp_port)

    def secure(self, receive_key: bytes, send_key: bytes) -> None:
        """This side's phone speaks SRTP (its key ``receive_key``, ours ``send_key``): from now on its packets
        are decrypted before they are relayed and what leaves towards it is encrypted. The same keys again
        (a re-INVITE that keeps them) change nothing; new ones start new libsrtp sessions.

        Raises:
            ValueError: a key is not 30 bytes.
        """
        current = self._rtp.srtp
        if current is not None and (current.receive_key, current.send_key) == (receive_key, send_key):
            return
        self._rtp.srtp = self._rtcp.srtp = SrtpContext(receive_key, send_key)

    @property
    def srtp(self) -> SrtpContext | None:
        """The side's SRTP, or None (plain RTP)."""
        return self._rtp.srtp

    def connect(self, other: RelaySide) -> None:
        """Relay between this side and ``other`` (of any session): what one receives leaves from the other's
        sockets towards the other's peer. Both sides' previous connections end."""
        if other is self:
            raise ValueError("a relay side cannot be connected to itself")
        self._rtp.pair(other._rtp)
        self._rtcp.pair(other._rtcp)

    def disconnect(self) -> None:
        """Stop relaying to and from this side (its packets are received and dropped); idempotent."""
        self._rtp.unpair()
        self._rtcp.unpair()

    def send_rtp(self, data: bytes) -> bool:
        """Send one RTP packet of the engine's own (music on hold) out of this side's RTP socket to its
        peer, as a relayed packet would leave. False when there is nowhere to send yet or the send failed
        (the packet is lost and counted as dropped)."""
        rtp = self._rtp
        destination = rtp.latch.latched or rtp.latch.signalled
        if destination is None:
            return False
        if rtp.srtp is not None:
            protected = rtp.srtp.encrypt(data, False)
            if protected is None:
                rtp.stats.dropped += 1
                return False
            data = protected
        try:
            rtp.sock.sendto(data, destination)
        except OSError:
            rtp.stats.dropped += 1
            return False
        return True

    @property
    def connected_to(self) -> RelaySide | None:
        """The side this one relays with, or None."""
        peer = self._rtp.peer
        return None if peer is None else peer.side

    @property
    def remote(self) -> SockAddr | None:
        """Where RTP for this side's peer goes now (latched source, else SDP address), or None."""
        return self._rtp.latch.destination

    @property
    def latched(self) -> bool:
        """True once the peer's RTP has arrived (its address is learnt)."""
        return self._rtp.latch.latched is not None

    @property
    def packets_received(self) -> int:
        """RTP and RTCP packets received on this side and relayed to the other."""
        return self._rtp.stats.packets + self._rtcp.stats.packets

    @property
    def bytes_received(self) -> int:
        return self._rtp.stats.bytes + self._rtcp.stats.bytes

    @property
    def dropped(self) -> int:
        """Packets received on this side and not relayed (no destination yet, foreign source, send failed)."""
        return self._rtp.stats.dropped + self._rtcp.stats.dropped


class RelaySession:
    """The relay of one call: side ``a`` and side ``b``, four sockets, until ``close()``.

    Attributes:
        a, b: the two sides.
        last_activity: loop time of the last packet accepted (from a side's latched peer) on any of the four
            sockets, or of opening: for dead-call detection.
        errors: unexpected failures inside the reader callbacks (each logged).
    """

    __slots__ = ("_endpoints", "_loop", "_relay", "a", "b", "closed", "errors", "last_activity")

    def __init__(self, relay: RtpRelay, loop: asyncio.AbstractEventLoop, a: RelaySide, b: RelaySide,
                 endpoints: tuple[_Endpoint, ...]) -> None:
        self._relay = relay
        self._loop = loop
        self.a = a
        self.b = b
        self._endpoints = endpoints
        self.closed = False
        self.errors = 0
        self.last_activity = loop.time()
        for endpoint in endpoints:
            loop.add_reader(endpoint.fd, self._on_readable, endpoint)

    @property
    def packets_a_to_b(self) -> int:
        """Packets (RTP + RTCP) received on side a and sent out of side b."""
        return self.a.packets_received

    @property
    def packets_b_to_a(self) -> int:
        return self.b.packets_received

    @property
    def dropped(self) -> int:
        return self.a.dropped + self.b.dropped

    @property
    def stats(self) -> RelayStats:
        """This session's totals."""
        total = RelayStats(errors=self.errors)
        for endpoint in self._endpoints:
            total.add(endpoint.stats)
        return total

    def close(self) -> None:
        """Stop relaying, close the sockets and give the ports back (idempotent)."""
        if self.closed:
            return
        self.closed = True
        loop_open = not self._loop.is_closed()
        for endpoint in self._endpoints:
            if loop_open:
                self._loop.remove_reader(endpoint.fd)
            endpoint.unpair()  # a side of another session connected to this one drops from now on
            endpoint.sock.close()
        self._relay._session_closed(self)

    def _on_readable(self, endpoint: _Endpoint) -> None:
        """Drain one socket and relay what may pass (the hot path: kept flat on purpose)."""
        stats = endpoint.stats
        try:
            sock = endpoint.sock
            latch = endpoint.latch
            out = endpoint.peer
            srtp_in = endpoint.srtp
            accepted = 0
            for _ in range(DRAIN_MAX):
                try:
                    data, source = sock.recvfrom(MAX_DATAGRAM_BYTES)
                except BlockingIOError:
                    break
                except OSError as exc:
                    stats.errors += 1
                    logger.debug("RTP recv on port %d failed: %s", sock.getsockname()[1], exc)
                    break
                # Latch.accept and Latch.destination, inlined for the common case (a latched peer).
                if source != latch.latched and not latch.accept(source):
                    stats.dropped += 1
                    continue
                accepted += 1
                if out is None:  # held or not bridged: received, not relayed
                    stats.dropped += 1
                    continue
                out_latch = out.latch
                destination = out_latch.latched or out_latch.signalled
                if destination is None:
                    stats.dropped += 1
                    continue
                if srtp_in is not None or out.srtp is not None:  # an SRTP side and a plain one
                    data = _translate(data, endpoint, out)
                    if not data:
                        stats.dropped += 1
                        continue
                try:
                    out.sock.sendto(data, destination)
                except OSError:  # EAGAIN (send buffer full), unreachable: this packet is lost
                    stats.dropped += 1
                    continue
                stats.packets += 1
                stats.bytes += len(data)
            if accepted:  # a stranger's packets do not keep a dead call alive
                self.last_activity = self._loop.time()
        except Exception:
            self.errors += 1
            logger.exception("RTP relay callback failed (fd %d)", endpoint.fd)


def _translate(data: bytes, source: _Endpoint, out: _Endpoint) -> bytes:
    """A packet from ``source``'s phone as ``out``'s phone must get it: decrypted when the source speaks
    SRTP, encrypted when the destination does (b"": it failed authentication or was malformed). Two SRTP
    sides with their own keys decrypt and encrypt again; pass-through keys would need neither."""
    if source.srtp is not None:
        plain = source.srtp.decrypt(data, source.rtcp)
        if plain is None:
            return b""
        data = plain
    if out.srtp is not None:
        return out.srtp.encrypt(data, out.rtcp) or b""
    return data


class RtpRelay:
    """The process's RTP relay: a port range on one local address, and the sessions open on it.

    Opening and closing sessions is synchronous (the B2BUA does it from its event handler); the sockets are
    served by the event loop's reader callbacks.
    """

    def __init__(self, host: str, port_first: int, port_last: int,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Args:
            host: the local address to bind (an IPv4 or IPv6 literal; what the SDP announces may differ,
                e.g. behind a 1:1 NAT, and is the B2BUA's business).
            port_first, port_last: the RTP port range (each session takes two even/odd pairs).
            loop: the event loop; default the running loop when the first session opens.

        Raises:
            ValueError: the port range holds no pair.
        """
        self.host = host
        self.allocator = PortAllocator(port_first, port_last)
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._loop = loop
        self._sessions: set[RelaySession] = set()
        self._closed_stats = RelayStats()

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def stats(self) -> RelayStats:
        """Totals over every session, open or closed."""
        total = RelayStats()
        total.add(self._closed_stats)
        for session in self._sessions:
            total.add(session.stats)
        return total

    def open_session(self) -> RelaySession:
        """Bind a new session's four sockets (RTP and RTCP for sides a and b) and start relaying.

        Pairs another process already holds are skipped (they go to the back of the queue).

        Returns:
            The session; both sides drop packets until ``set_remote`` or the other side's first packet.

        Raises:
            RelayExhausted: no free pair left in the range, none of them bindable, or out of file descriptors.
            OSError: the relay address cannot be bound at all (not a local address).
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        ipv6 = self._family == socket.AF_INET6
        port_a, socks_a = self._bind_pair()
        try:
            port_b, socks_b = self._bind_pair()
        except BaseException:
            for sock in socks_a:
                sock.close()
            self.allocator.release(port_a)
            raise
        socks = (*socks_a, *socks_b)  # RTP, RTCP of a, then of b
        endpoints = tuple(_Endpoint(sock, ipv6, rtcp=i % 2 == 1) for i, sock in enumerate(socks))
        a_rtp, a_rtcp, b_rtp, b_rtcp = endpoints
        session = RelaySession(
            self, loop, RelaySide(port_a, a_rtp, a_rtcp), RelaySide(port_b, b_rtp, b_rtcp), endpoints
        )
        session.a.connect(session.b)
        self._sessions.add(session)
        logger.debug("relay session opened: a=%d b=%d", port_a, port_b)
        return session

    def close_all(self) -> None:
        """Close every open session (shutdown)."""
        for session in list(self._sessions):
            session.close()

    def _session_closed(self, session: RelaySession) -> None:
        self._sessions.discard(session)
        self._closed_stats.add(session.stats)
        for side in (session.a, session.b):
            self.allocator.release(side.port)
        logger.debug("relay session closed: a=%d b=%d", session.a.port, session.b.port)

    def _bind_pair(self) -> tuple[int, tuple[socket.socket, socket.socket]]:
        port, rtp, rtcp = bind_rtp_pair(self.host, self.allocator)
        return port, (rtp, rtcp)


def bind_rtp_pair(host: str, allocator: PortAllocator) -> tuple[int, socket.socket, socket.socket]:
    """An even port from ``allocator`` with its RTP and RTCP sockets bound on ``host`` (non-blocking),
    skipping ports another process holds (they go back to the allocator's queue).

    Raises:
        RelayExhausted: no bindable pair left, or out of file descriptors.
        OSError: ``host`` cannot be bound at all.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(allocator.available):
        port = allocator.allocate()
        bound: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                try:
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                except OSError as exc:
                    if exc.errno in _OUT_OF_FDS:
                        raise RelayExhausted(f"cannot open an RTP socket: {exc.strerror}") from exc
                    raise
                bound.append(sock)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
                sock.bind((host, p))
        except BaseException as exc:
            for sock in bound:
                sock.close()
            allocator.release(port)
            if isinstance(exc, OSError) and exc.errno in _PORT_TAKEN:
                continue
            raise
        return port, bound[0], bound[1]
    raise RelayExhausted(f"no bindable RTP port pair left in {allocator.first}-{allocator.last} on {host}")



class RelayMusic:
    """Music on hold for a bridged leg: a shared ``HoldStream`` sent out of the leg's relay side to its phone,
    one frame per media clock tick, while the leg's bridge peer holds the call (``engine.call.indialog``).

    The phone keeps the address and port it talks to: the packets leave from its relay side's socket (the
    side is disconnected from its peer meanwhile), under an SSRC of our own, so the phone's jitter buffer
    sees a new source start (marker bit) and, on resume, the peer's stream again. The frames are slices of
    the stream's one encoding: a held call costs a header and a ``sendto`` per tick.

    Attributes:
        packets_sent: RTP packets sent.
    """

    __slots__ = ("_clock", "_codec", "_marker", "_seq", "_side", "_ssrc", "_stream", "_tick0", "_ts_base",
                 "packets_sent", "stopped")

    def __init__(self, side: RelaySide, stream: HoldStream, payload_type: int, clock: MediaClock,
                 rng: random.Random | None = None) -> None:
        """Start sending at the clock's next tick.

        Raises:
            G711Error: ``payload_type`` is not 0 (PCMU) or 8 (PCMA).
        """
        rng = rng if rng is not None else random.Random()
        self._side = side
        self._stream = stream
        self._codec = G711Codec(payload_type)
        self._clock = clock
        self._ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts_base = rng.getrandbits(32)
        self._tick0: int | None = None
        self._marker = True
        self.packets_sent = 0
        self.stopped = False
        clock.add(self)

    @property
    def local_port(self) -> int:
        return self._side.port

    def stop(self) -> None:
        """Stop sending (idempotent)."""
        if not self.stopped:
            self.stopped = True
            self._clock.discard(self)

    def _tick(self, tick: int, now: float) -> None:
        if self._tick0 is None:
            self._tick0 = tick
        payload = self._stream.frame(self._codec, tick)
        timestamp = self._ts_base + (tick - self._tick0) * len(payload)
        header = build_header(self._codec.payload_type, self._seq, timestamp, self._ssrc, self._marker)
        if self._side.send_rtp(header + payload):
            self._marker = False
            self._seq = (self._seq + 1) & 0xFFFF
            self.packets_sent += 1
