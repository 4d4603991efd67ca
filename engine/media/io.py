"""The media shell (the only socket and event-loop code under ``engine.media``): the RTP relay's sockets,
and the engine's own RTP endpoint (``MediaSession``, ``MediaClock``: see the section further down).

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
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections import deque
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

from engine.files import write_atomic
from engine.media.dtmf import DEFAULT_PAYLOAD_TYPE as DEFAULT_EVENT_PT
from engine.media.dtmf import DtmfReceiver
from engine.media.g711 import PT_PCMU, G711Codec
from engine.media.hold import AudioSink, FrameSource, HoldStream
from engine.media.jitter import JitterBuffer
from engine.media.playout import AudioTerminal, Playout
from engine.media.prompts import DEFAULT_LANGUAGE, AudioFileCache, PromptLibrary
from engine.media.relay import Latch, MediaError, PortAllocator, RelayExhausted, SockAddr
from engine.media.rtp import RtpPacket, RtpParseError, build_header
from engine.media.silence import SilenceDetector
from engine.media.tone import silence as tone_silence
from engine.media.tone import tone as tone_samples
from engine.media.wav import encode_wav
from engine.script import (
    BEEP,
    DTMF_KEYS,
    Collect,
    Collected,
    File,
    Play,
    Played,
    PromptItem,
    Record,
    Recorded,
    Sound,
    Tone,
)

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

    __slots__ = ("fd", "latch", "peer", "side", "sock", "stats")

    def __init__(self, sock: socket.socket, ipv6: bool) -> None:
        self.sock = sock
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
        endpoints = tuple(_Endpoint(sock, ipv6) for sock in (*socks_a, *socks_b))
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
        """An allocated even port with its RTP and RTCP sockets bound, skipping ports others hold."""
        for _ in range(self.allocator.available):
            port = self.allocator.allocate()
            rtp: socket.socket | None = None
            try:
                rtp = self._bind(port)
                rtcp = self._bind(port + 1)
            except BaseException as exc:
                if rtp is not None:
                    rtp.close()
                self.allocator.release(port)
                if isinstance(exc, OSError) and exc.errno in _PORT_TAKEN:
                    continue
                raise
            return port, (rtp, rtcp)
        raise RelayExhausted(
            f"no bindable RTP port pair left in {self.allocator.first}-{self.allocator.last} on {self.host}"
        )

    def _bind(self, port: int) -> socket.socket:
        try:
            sock = socket.socket(self._family, socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno in _OUT_OF_FDS:
                raise RelayExhausted(f"cannot open an RTP socket: {exc.strerror}") from exc
            raise
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)
            sock.bind((self.host, port))
        except BaseException:
            sock.close()
            raise
        return sock


# == The engine as an RTP endpoint ======================================================================
#
# A ``MediaSession`` is the engine's own end of a call (auto attendant, voicemail): it sends prompts as
# G.711 RTP, receives the caller's RTP to record it and RFC 4733 events for digits, and executes the actions
# of ``engine.script`` (Play, Collect, Record). Sending is driven by one ``MediaClock`` per loop that
# ticks every 20 ms at absolute deadlines (start + n * 20 ms) and makes every session send one frame (the
# pjmedia master-clock model: one timer wake-up for all sessions, not one per session).
#
# Between prompts, and while collecting or recording, a session sends silence frames rather than nothing:
# the stream stays continuous from negotiation to hang-up. Reasons: NAT bindings and firewall pinholes on
# the phone's side are kept open by our packets (UDP bindings can time out in 30 s, and a long Record with
# nothing sent would outlive them); phones and SBCs with an RTP inactivity timer hang up on silence that is
# no packets; a phone's symmetric-RTP/latching logic and its jitter buffer behave best with one steady
# stream (no marker-bit talkspurts to re-synchronise on). The cost is the same 50 packets/s a prompt costs
# (bench/media.py measures it), which the engine must afford anyway while it plays.

#: Ticks the clock may fall behind (a stalled loop) before it skips ahead instead of bursting frames out.
MAX_LATE_TICKS: Final = 5
#: Digits buffered per call at most (older ones are dropped first).
DIGIT_BUFFER_MAX: Final = 64
SAMPLE_RATE_HZ: Final = 8000


class ClockedSender(Protocol):
    """What the media clock drives: a ``MediaSession`` or a ``RelayMusic``, sending one frame a tick."""

    @property
    def local_port(self) -> int: ...

    def _tick(self, tick: int, now: float) -> None: ...


class MediaClock:
    """The media clock of one event loop: every ``ptime_ms`` at absolute deadlines, each registered session
    sends one frame. Late by up to ``MAX_LATE_TICKS`` ticks, the missed ticks run at once (the phone's
    jitter buffer absorbs the burst); later still, it skips ahead (timestamps jump, as RTP wants for a gap).

    Attributes:
        late_skips: how many times the clock skipped ahead.
        errors: sessions whose tick raised (each logged; the clock keeps running).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ptime_ms: int = 20) -> None:
        """Raises:
        ValueError: ``ptime_ms`` not in 10-100 or not a multiple of 10 ms.
        """
        if not 10 <= ptime_ms <= 100 or ptime_ms % 10:
            raise ValueError(f"ptime_ms {ptime_ms} must be a multiple of 10 in 10-100")
        self.loop = loop
        self.ptime_ms = ptime_ms
        self.ptime_s = ptime_ms / 1000.0
        self._sessions: dict[ClockedSender, None] = {}  # insertion-ordered set
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._next = 0
        self.late_skips = 0
        self.errors = 0

    @property
    def tick(self) -> int:
        """The index of the next tick (ticks since the clock started)."""
        return self._next

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def add(self, session: ClockedSender) -> None:
        self._sessions[session] = None
        if self._handle is None:
            self._start = self.loop.time()
            self._next = 0
            self._handle = self.loop.call_at(self._start, self._on_tick)

    def discard(self, session: ClockedSender) -> None:
        self._sessions.pop(session, None)
        if not self._sessions and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_tick(self) -> None:
        now = self.loop.time()
        tick = self._next
        behind = int((now - self._start) / self.ptime_s) - tick
        if behind > MAX_LATE_TICKS:
            tick += behind
            self.late_skips += 1
        for session in list(self._sessions):
            try:
                session._tick(tick, now)
            except Exception:
                self.errors += 1
                logger.exception("media session tick failed (port %d)", session.local_port)
        self._next = tick + 1
        if self._sessions:
            self._handle = self.loop.call_at(self._start + self._next * self.ptime_s, self._on_tick)
        else:
            self._handle = None


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


class _Player:
    """A Play in progress: the whole prompt pre-encoded, sliced one frame per tick."""

    __slots__ = ("barge_in", "done", "encoded", "position")

    def __init__(self, encoded: bytes, barge_in: bool, done: asyncio.Future[bool]) -> None:
        self.encoded = encoded
        self.position = 0
        self.barge_in = barge_in
        self.done = done  # result: interrupted


class _Recording:
    """A Record in progress: decoded frames, the voice detector, and its stop conditions."""

    __slots__ = (
        "buffer",
        "deadline",
        "detector",
        "done",
        "frame_samples",
        "frames",
        "last_voice_at",
        "silence_s",
        "ssrc",
        "stop_keys",
        "total",
        "voiced_end",
    )

    def __init__(
        self, now: float, record: Record, frame_samples: int, done: asyncio.Future[tuple[str, str]]
    ) -> None:
        self.buffer = JitterBuffer()
        self.detector = SilenceDetector()
        self.frames: list[npt.NDArray[np.int16]] = []
        self.frame_samples = frame_samples
        self.total = 0
        self.voiced_end = 0  # samples up to the end of the last voiced frame
        self.deadline = now + record.max_s
        self.silence_s = record.silence_s
        self.last_voice_at = now
        self.stop_keys = record.stop_keys
        self.ssrc: int | None = None
        self.done = done  # result: (ended, key)

    def feed(self, samples: npt.NDArray[np.int16] | None, now: float) -> None:
        if samples is None:  # a lost packet: silence of the usual length
            samples = np.zeros(self.frame_samples, dtype=np.int16)
        elif samples.size:
            self.frame_samples = samples.size
        self.frames.append(samples)
        self.total += samples.size
        if self.detector.feed(samples):
            self.voiced_end = self.total
            self.last_voice_at = now


def _finish(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


class MediaSession:
    """The engine's own RTP endpoint for one call; see the section comment above and the script module.

    Created on a bound even/odd socket pair (``open()`` takes one from a ``PortAllocator``), so its port can
    go into the SDP answer; ``negotiate()`` then gives it the remote address and codec and starts the stream.

    Attributes:
        language: the prompt language of this call ("en", "de"), settable at any time.
        local_port: the RTP port (RTCP is the next one).
        packets_sent, packets_received: RTP packets out and in (in: accepted from the latched peer).
        dropped: packets from a stranger (not the latched peer), malformed packets, failed sends.
        errors: unexpected failures inside callbacks (each logged).
    """

    def __init__(
        self,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket | None,
        *,
        loop: asyncio.AbstractEventLoop,
        clock: MediaClock | None = None,
        prompts: PromptLibrary | None = None,
        files: AudioFileCache | None = None,
        rng: random.Random | None = None,
        language: str = DEFAULT_LANGUAGE,
        allocator: PortAllocator | None = None,
    ) -> None:
        """Args:
        rtp_sock, rtcp_sock: bound non-blocking UDP sockets (RTCP is read and discarded).
        loop: the event loop (its ``time()`` is the session's clock).
        clock: the shared media clock of ``loop`` (default: a private one).
        prompts, files: where ``Sound`` and ``File`` items come from (default: the bundled prompts and
            a private cache).
        rng: randomness for the SSRC and initial sequence number and timestamp (RFC 3550 §5.1).
        allocator: where ``close()`` gives the port back, if it came from one.
        """
        self._loop = loop
        self._clock = clock if clock is not None else MediaClock(loop)
        self._prompts = prompts if prompts is not None else PromptLibrary()
        self._files = files if files is not None else AudioFileCache()
        self._rtp = rtp_sock
        self._rtcp = rtcp_sock
        self._allocator = allocator
        self.local_port: int = rtp_sock.getsockname()[1]
        self.language = language
        rng = rng if rng is not None else random.Random()
        self._ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts_base = rng.getrandbits(32)
        self._tick0: int | None = None
        self._marker = True
        self._latch = Latch(rtp_sock.family == socket.AF_INET6)
        self._codec = G711Codec(PT_PCMU)
        self._event_pt: int | None = DEFAULT_EVENT_PT
        self._frame_samples = SAMPLE_RATE_HZ * self._clock.ptime_ms // 1000
        self._silence = bytes([self._codec.silence]) * self._frame_samples
        self._dtmf = DtmfReceiver()
        self._digits: deque[str] = deque(maxlen=DIGIT_BUFFER_MAX)
        self._digit_waiter: asyncio.Future[bool] | None = None
        self._player: _Player | None = None
        self._recording: _Recording | None = None
        self._terminal: tuple[AudioTerminal, Playout, asyncio.Future[None]] | None = None
        #: sent whenever no prompt plays: queue hold music (a slice per tick, no encode) or a conference mix
        self.hold: FrameSource | None = None
        #: gets the caller's audio payloads (a conference participant); None: only a recording reads them
        self.sink: AudioSink | None = None
        self._busy = False
        self._sending = False
        self.hung_up = False
        self.closed = False
        self.packets_sent = 0
        self.packets_received = 0
        self.dropped = 0
        self.errors = 0
        loop.add_reader(rtp_sock.fileno(), self._on_rtp)
        if rtcp_sock is not None:
            loop.add_reader(rtcp_sock.fileno(), self._on_rtcp)

    @classmethod
    def open(
        cls,
        host: str,
        allocator: PortAllocator,
        *,
        loop: asyncio.AbstractEventLoop,
        clock: MediaClock | None = None,
        prompts: PromptLibrary | None = None,
        files: AudioFileCache | None = None,
        rng: random.Random | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> MediaSession:
        """Bind an RTP/RTCP pair from ``allocator`` on ``host`` and make a session of it (synchronous, like
        ``RtpRelay.open_session``); ``close()`` gives the port back.

        Raises:
            RelayExhausted: no free bindable pair.
            OSError: ``host`` is not a local address.
        """
        _port, rtp, rtcp = bind_rtp_pair(host, allocator)
        return cls(
            rtp,
            rtcp,
            loop=loop,
            clock=clock,
            prompts=prompts,
            files=files,
            rng=rng,
            language=language,
            allocator=allocator,
        )

    # -- control by the call controller ----------------------------------------------------------------

    def negotiate(
        self,
        host: str,
        port: int,
        payload_type: int = PT_PCMU,
        event_payload_type: int | None = DEFAULT_EVENT_PT,
        ptime_ms: int = 20,
    ) -> None:
        """Apply the SDP negotiation's result and start sending (silence until something plays).

        Args:
            host, port: the remote RTP address from the SDP (latching may replace it, see ``Latch``).
            payload_type: 0 (PCMU) or 8 (PCMA).
            event_payload_type: the telephone-event payload type, or None when none was negotiated.
            ptime_ms: must equal the media clock's (20).

        Raises:
            G711Error: ``payload_type`` is not 0 or 8.
            ValueError: a ``ptime_ms`` other than the clock's, a port outside 0-65535.
        """
        if ptime_ms != self._clock.ptime_ms:
            raise ValueError(f"ptime_ms {ptime_ms}: the media clock runs at {self._clock.ptime_ms} ms")
        codec = G711Codec(payload_type)
        self._latch.set_remote(host, port)
        self._codec = codec
        self._silence = bytes([codec.silence]) * self._frame_samples
        self._event_pt = event_payload_type
        if not self._sending and not self.hung_up and not self.closed:
            self._sending = True
            self._clock.add(self)

    def set_remote(self, host: str, port: int) -> None:
        """A new remote address (re-INVITE): sent to until the peer's next packet latches again.

        Raises:
            ValueError: a port outside 0-65535.
        """
        self._latch.set_remote(host, port)

    @property
    def remote(self) -> SockAddr | None:
        """Where RTP goes now: the latched source, else the SDP address, else None."""
        return self._latch.destination

    @property
    def codec(self) -> G711Codec:
        """The negotiated audio codec (PCMU until ``negotiate``)."""
        return self._codec

    @property
    def digits(self) -> str:
        """The digits buffered (type-ahead), oldest first."""
        return "".join(self._digits)

    def push_digit(self, key: str) -> bool:
        """A digit from SIP INFO (``application/dtmf-relay`` or ``application/dtmf``).

        Returns:
            False when ``key`` is not one of ``0-9 * #`` (ignored), else True.
        """
        return self._on_key(key)

    def hangup(self) -> None:
        """The caller hung up: stop sending; a running Record finishes writing its file and returns
        ``ended="hangup"``; a running Play or Collect returns at once with what there is."""
        if self.hung_up:
            return
        self.hung_up = True
        self._stop_sending()
        if self._player is not None:
            _finish(self._player.done, False)
        if self._recording is not None:
            _finish(self._recording.done, ("hangup", ""))
        if self._digit_waiter is not None:
            _finish(self._digit_waiter, False)
        if self._terminal is not None:
            terminal, _playout, done = self._terminal
            terminal.hangup()
            _finish(done, None)

    def interrupt(self) -> None:
        """End a running Play or Collect now, as if it had run out (the flow moves on: a queue caller
        leaves the queue while it listens for the exit key). A Record is not interrupted.

        Raises:
            Nothing.
        """
        if self._player is not None:
            _finish(self._player.done, False)
        if self._digit_waiter is not None:
            _finish(self._digit_waiter, False)

    def close(self) -> None:
        """Hang up (if not yet), close the sockets and give the port back (idempotent)."""
        if self.closed:
            return
        self.hangup()
        self.closed = True
        loop_open = not self._loop.is_closed()
        for sock in (self._rtp, self._rtcp):
            if sock is None:
                continue
            if loop_open:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        if self._allocator is not None:
            self._allocator.release(self.local_port)

    # -- actions -------------------------------------------------------------------------------------

    async def run(self, action: Play | Collect | Record) -> Played | Collected | Recorded:
        """Execute one action of the media script (one at a time per session).

        Returns:
            ``Played``, ``Collected`` or ``Recorded`` (see ``engine.script``); after a hang-up,
            promptly, with what there is.

        Raises:
            MediaError: another action is running on this session.
            PromptError: a prompt item that does not exist or cannot be read.
            ValueError: an action with a field out of range (``field`` named).
            OSError: the recording cannot be written.
        """
        if self._busy:
            raise MediaError("MediaSession.run: another action is running")
        self._busy = True
        try:
            if isinstance(action, Play):
                return await self._run_play(action)
            if isinstance(action, Collect):
                return await self._run_collect(action)
            return await self._run_record(action)
        finally:
            self._busy = False
            self._player = None
            self._recording = None
            self._digit_waiter = None

    async def run_terminal(self, terminal: AudioTerminal) -> None:
        """Give the call's audio to ``terminal`` (a fax modem) until it is ``finished`` or the caller
        hangs up (``terminal.hangup()`` is called then): every media clock tick it gets the next received
        frame through a ``Playout`` (one frame a tick, lost ones as None) and its output is sent.

        Raises:
            MediaError: another action is running on this session.
        """
        if self._busy:
            raise MediaError("MediaSession.run_terminal: another action is running")
        if self.hung_up:
            terminal.hangup()
            return
        self._busy = True
        done: asyncio.Future[None] = self._loop.create_future()
        self._terminal = (terminal, Playout(), done)
        try:
            await done
        finally:
            self._busy = False
            self._terminal = None

    async def _run_play(self, play: Play) -> Played:
        if self.hung_up:
            return Played()
        if play.barge_in and self._digits:
            return Played(interrupted=True)  # type-ahead: the caller already answered
        audio = await self._loop.run_in_executor(None, self._resolve, play.items, self.language)
        if self.hung_up:
            return Played()
        if play.barge_in and self._digits:
            return Played(interrupted=True)
        interrupted = await self._play_samples(audio, play.barge_in)
        return Played(interrupted=interrupted)

    async def _play_samples(self, audio: npt.NDArray[np.int16], barge_in: bool) -> bool:
        if audio.size == 0 or not self._sending:
            return False
        encoded = self._codec.encode(audio)
        tail = -len(encoded) % self._frame_samples
        done: asyncio.Future[bool] = self._loop.create_future()
        self._player = _Player(encoded + self._silence[:tail], barge_in, done)
        try:
            return await done
        finally:
            self._player = None

    async def _run_collect(self, collect: Collect) -> Collected:
        if collect.max_digits < 1:
            raise ValueError(f"Collect.max_digits {collect.max_digits} must be at least 1")
        if collect.first_timeout_s < 0 or collect.inter_digit_timeout_s < 0:
            raise ValueError("Collect.first_timeout_s and inter_digit_timeout_s must not be negative")
        if collect.flush:
            self._digits.clear()
        digits = ""
        deadline = self._loop.time() + collect.first_timeout_s
        while True:
            while self._digits:
                key = self._digits.popleft()
                if key in collect.terminators:
                    return Collected(digits, "terminator", key)
                digits += key
                if len(digits) >= collect.max_digits:
                    return Collected(digits, "max")
                deadline = self._loop.time() + collect.inter_digit_timeout_s
            if self.hung_up:
                return Collected(digits, "timeout")
            waiter: asyncio.Future[bool] = self._loop.create_future()
            self._digit_waiter = waiter
            timer = self._loop.call_at(deadline, _finish, waiter, False)
            try:
                arrived = await waiter
            finally:
                timer.cancel()
                self._digit_waiter = None
            if not arrived and not self._digits:
                return Collected(digits, "timeout")

    async def _run_record(self, record: Record) -> Recorded:
        if record.max_s <= 0:
            raise ValueError(f"Record.max_s {record.max_s} must be positive")
        if self.hung_up:
            return Recorded(None, 0.0, "hangup")
        if record.beep:
            await self._play_samples(self._tone(BEEP), barge_in=False)
            if self.hung_up:
                return Recorded(None, 0.0, "hangup")
        done: asyncio.Future[tuple[str, str]] = self._loop.create_future()
        recording = _Recording(self._loop.time(), record, self._frame_samples, done)
        self._recording = recording
        try:
            ended, key = await done
        finally:
            self._recording = None
        for frame in recording.buffer.flush():
            recording.feed(None if frame is None else self._codec.decode(frame), self._loop.time())
        keep = min(recording.voiced_end, int(record.max_s * SAMPLE_RATE_HZ))
        reason = cast(Literal["key", "silence", "max", "hangup"], ended)
        if recording.detector.voiced_frames == 0 or keep == 0:
            return Recorded(None, 0.0, reason, key)
        audio = np.concatenate(recording.frames)[:keep]
        await self._loop.run_in_executor(None, write_atomic, record.path, encode_wav(audio))
        return Recorded(record.path, keep / SAMPLE_RATE_HZ, reason, key)

    # -- prompt items --------------------------------------------------------------------------------

    def _resolve(self, items: tuple[PromptItem, ...], language: str) -> npt.NDArray[np.int16]:
        """The samples of ``items`` one after another (runs in an executor: it may read files)."""
        parts: list[npt.NDArray[np.int16]] = []
        for item in items:
            if isinstance(item, Sound):
                parts.append(self._prompts.get(language, item.key))
            elif isinstance(item, File):
                parts.append(self._files.load(item.path))
            elif isinstance(item, Tone):
                parts.append(self._tone(item))
            else:
                parts.append(tone_silence(item.ms))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    @staticmethod
    def _tone(item: Tone) -> npt.NDArray[np.int16]:
        return tone_samples(item.hz, item.ms, item.level_dbfs)

    # -- the media clock's tick and the sockets' callbacks -------------------------------------------------

    def _stop_sending(self) -> None:
        if self._sending:
            self._sending = False
            self._clock.discard(self)

    def _tick(self, tick: int, now: float) -> None:
        """Send this tick's frame (the prompt's next one, else silence); check the recording's limits."""
        if self._tick0 is None:
            self._tick0 = tick
        player = self._player
        payload = self._silence if self.hold is None else self.hold.frame(self._codec, tick)
        if self._terminal is not None:
            payload = self._terminal_tick()
        if player is not None:
            size = self._frame_samples
            position = player.position
            payload = player.encoded[position : position + size]
            player.position = position + size
            if player.position >= len(player.encoded):
                self._player = None
                _finish(player.done, False)
        destination = self._latch.latched or self._latch.signalled
        if destination is not None:
            timestamp = self._ts_base + (tick - self._tick0) * self._frame_samples
            header = build_header(self._codec.payload_type, self._seq, timestamp, self._ssrc, self._marker)
            try:
                self._rtp.sendto(header + payload, destination)
            except OSError:  # buffer full, unreachable: this frame is lost
                self.dropped += 1
            else:
                self._marker = False
                self._seq = (self._seq + 1) & 0xFFFF
                self.packets_sent += 1
        recording = self._recording
        if recording is not None:
            if now >= recording.deadline:
                _finish(recording.done, ("max", ""))
            elif recording.silence_s > 0 and now - recording.last_voice_at >= recording.silence_s:
                _finish(recording.done, ("silence", ""))

    def _terminal_tick(self) -> bytes:
        """The running terminal hears this tick's frame and says the next one."""
        assert self._terminal is not None
        terminal, playout, done = self._terminal
        frame = playout.take()
        terminal.receive(None if frame is None else self._codec.decode(frame), self._frame_samples)
        payload = self._codec.encode(terminal.transmit(self._frame_samples))
        if terminal.finished:
            _finish(done, None)
        return payload

    def _on_key(self, key: str) -> bool:
        if len(key) != 1 or key not in DTMF_KEYS:
            return False
        recording = self._recording
        if recording is not None and key in recording.stop_keys and not recording.done.done():
            _finish(recording.done, ("key", key))  # consumed, not buffered
            return True
        self._digits.append(key)
        player = self._player
        if player is not None and player.barge_in:
            self._player = None
            _finish(player.done, True)
        if self._digit_waiter is not None:
            _finish(self._digit_waiter, True)
        return True

    def _on_rtp(self) -> None:
        try:
            sock = self._rtp
            latch = self._latch
            for _ in range(DRAIN_MAX):
                try:
                    data, source = sock.recvfrom(MAX_DATAGRAM_BYTES)
                except BlockingIOError:
                    break
                except OSError as exc:
                    self.dropped += 1
                    logger.debug("RTP recv on port %d failed: %s", self.local_port, exc)
                    break
                if source != latch.latched and not latch.accept(source):
                    self.dropped += 1
                    continue
                if len(data) < 12 or data[0] >> 6 != 2:
                    self.dropped += 1
                    continue
                self.packets_received += 1
                payload_type = data[1] & 0x7F
                if payload_type == self._event_pt:
                    self._on_event(data)
                elif payload_type == self._codec.payload_type:
                    if self.sink is not None:
                        self._to_sink(self.sink, data)
                    if self._recording is not None:
                        self._on_audio(data)
                    elif self._terminal is not None:
                        self._on_terminal_audio(data)
        except Exception:
            self.errors += 1
            logger.exception("media session RTP callback failed (port %d)", self.local_port)

    def _parse(self, data: bytes, what: str) -> RtpPacket | None:
        """The packet, or None (dropped and counted) when it is malformed."""
        try:
            return RtpPacket.parse(data)
        except RtpParseError as exc:
            self.dropped += 1
            logger.debug("malformed %s packet on port %d: %s", what, self.local_port, exc)
            return None

    def _on_event(self, data: bytes) -> None:
        packet = self._parse(data, "telephone-event")
        if packet is None:
            return
        key = self._dtmf.feed(packet)
        if key is not None:
            self._on_key(key)

    def _to_sink(self, sink: AudioSink, data: bytes) -> None:
        packet = self._parse(data, "RTP")
        if packet is not None:
            sink.receive(packet.ssrc, packet.sequence, packet.payload)

    def _on_audio(self, data: bytes) -> None:
        recording = self._recording
        if recording is None or recording.done.done():
            return
        packet = self._parse(data, "RTP")
        if packet is None:
            return
        now = self._loop.time()
        decode = self._codec.decode
        if packet.ssrc != recording.ssrc:  # a new source (or the first packet): its own sequence space
            for frame in recording.buffer.flush():
                recording.feed(None if frame is None else decode(frame), now)
            recording.ssrc = packet.ssrc
        for frame in recording.buffer.put(packet.sequence, packet.payload):
            recording.feed(None if frame is None else decode(frame), now)

    def _on_terminal_audio(self, data: bytes) -> None:
        assert self._terminal is not None
        packet = self._parse(data, "RTP")
        if packet is not None:
            self._terminal[1].put(packet.ssrc, packet.sequence, packet.payload)

    def _on_rtcp(self) -> None:
        """Read and discard RTCP (the endpoint sends none; see the report in the bench notes)."""
        sock = self._rtcp
        if sock is None:
            return
        for _ in range(DRAIN_MAX):
            try:
                sock.recvfrom(MAX_DATAGRAM_BYTES)
            except OSError:  # BlockingIOError (drained) included
                break


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
