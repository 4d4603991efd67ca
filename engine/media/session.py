"""The engine as an RTP endpoint: ``MediaSession``, the engine's own end of a call (auto attendant,
voicemail, conference seat, fax).

It sends prompts as G.711 RTP, receives the caller's RTP to record it and RFC 4733 events for digits, and
executes the actions of ``engine.script`` (Play, Collect, Record). Sending is driven by the loop's
``engine.media.clock.MediaClock``.

Between prompts, and while collecting or recording, a session sends silence frames rather than nothing:
the stream stays continuous from negotiation to hang-up. Reasons: NAT bindings and firewall pinholes on
the phone's side are kept open by our packets (UDP bindings can time out in 30 s, and a long Record with
nothing sent would outlive them); phones and SBCs with an RTP inactivity timer hang up on silence that is
no packets; a phone's symmetric-RTP/latching logic and its jitter buffer behave best with one steady
stream (no marker-bit talkspurts to re-synchronise on). The cost is the same 50 packets/s a prompt costs
(bench/media.py measures it), which the engine must afford anyway while it plays.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections import deque
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt

from engine.files import write_atomic
from engine.media.clock import MediaClock
from engine.media.dtmf import DEFAULT_PAYLOAD_TYPE as DEFAULT_EVENT_PT
from engine.media.dtmf import DtmfReceiver
from engine.media.g711 import PT_PCMU, G711Codec
from engine.media.hold import AudioSink, FrameSource
from engine.media.io import DRAIN_MAX, MAX_DATAGRAM_BYTES, bind_rtp_pair
from engine.media.jitter import JitterBuffer
from engine.media.playout import AudioTerminal, Playout
from engine.media.prompts import DEFAULT_LANGUAGE, AudioFileCache, PromptLibrary
from engine.media.relay import Latch, MediaError, PortAllocator, SockAddr
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

#: Digits buffered per call at most (older ones are dropped first).
DIGIT_BUFFER_MAX: Final = 64
SAMPLE_RATE_HZ: Final = 8000


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
    """The engine's own RTP endpoint for one call; see the module docstring and engine.script.

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
