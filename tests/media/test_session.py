"""The engine's RTP endpoint (MediaSession) on real UDP sockets on 127.0.0.1, under asyncio and uvloop.

The "phone" is a plain non-blocking socket written here: it reads what the session sends and sends RTP audio
and RFC 4733 events back from the same socket (symmetric RTP), paced by absolute deadlines.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.media import g711
from engine.media.clock import MediaClock
from engine.media.dtmf import DtmfSender
from engine.media.prompts import PromptLibrary
from engine.media.relay import MediaError, PortAllocator
from engine.media.rtp import RtpPacket, build_header
from engine.media.session import MediaSession
from engine.media.tone import tone
from engine.media.wav import decode_wav, encode_wav
from engine.script import (
    Collect,
    Collected,
    File,
    Play,
    Played,
    Record,
    Recorded,
    Silence,
    Sound,
    Tone,
)

HOST = "127.0.0.1"
PROMPTS = PromptLibrary()


class Phone:
    """One UDP socket standing for the caller's phone."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.dtmf = DtmfSender(ssrc=0x1234, sequence=500)
        self.seq = 1000
        self.ts = 0xFFFF_0000  # wraps during the test

    def drain(self) -> list[RtpPacket]:
        packets = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return packets
            packets.append(RtpPacket.parse(data))

    async def send_audio(self, to: int, samples: np.ndarray, payload_type: int = 0) -> None:
        """Send ``samples`` as 20 ms G.711 packets at absolute deadlines."""
        encode = g711.ulaw_encode if payload_type == 0 else g711.alaw_encode
        payload = encode(samples.astype(np.int16))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(0, len(payload) - 159, 160):
            await asyncio.sleep(max(0.0, start + i / 8000 - loop.time()))
            header = build_header(payload_type, self.seq, self.ts, 0x5678)
            self.sock.sendto(header + payload[i : i + 160], (HOST, to))
            self.seq = (self.seq + 1) & 0xFFFF
            self.ts = (self.ts + 160) & 0xFFFF_FFFF

    async def press(self, to: int, key: str) -> None:
        for packet in self.dtmf.packets(key, self.ts):
            self.sock.sendto(packet.serialize(), (HOST, to))
            await asyncio.sleep(0.002)

    def close(self) -> None:
        self.sock.close()


def session_on(loop: asyncio.AbstractEventLoop, allocator: PortAllocator | None = None) -> MediaSession:
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((HOST, 0))
    rtp.setblocking(False)
    return MediaSession(rtp, None, loop=loop, clock=MediaClock(loop), prompts=PROMPTS)


async def started(payload_type: int = 0) -> tuple[MediaSession, Phone]:
    phone = Phone()
    session = session_on(asyncio.get_running_loop())
    session.negotiate(HOST, phone.port, payload_type)
    return session, phone


def speech_like(seconds: float) -> np.ndarray:
    """A 1 kHz tone with a slow 3 Hz amplitude wobble (correlation must find the alignment)."""
    t = np.arange(int(8000 * seconds)) / 8000
    return (8000 * np.sin(2 * np.pi * 1000 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.int16)


# -- Play ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload_type", [0, 8])
def test_play_sends_paced_packets_whose_audio_is_the_prompt(run: Any, payload_type: int) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        negotiated = loop.time()
        session, phone = await started(payload_type)
        start = loop.time()
        played = await session.run(Play((Sound("digit-1"), Silence(100)), barge_in=False))
        elapsed = loop.time() - start
        await asyncio.sleep(0.05)
        packets = phone.drain()
        streamed = loop.time() - negotiated
        session.close()
        phone.close()
        assert played == Played(interrupted=False)
        prompt = PROMPTS.get("en", "digit-1")
        assert 0.9 * (prompt.size / 8000 + 0.1) <= elapsed <= prompt.size / 8000 + 0.1 + 0.2
        assert {p.payload_type for p in packets} == {payload_type}
        assert {len(p.payload) for p in packets} == {160}
        assert packets[0].marker and not any(p.marker for p in packets[1:])
        seqs = [p.sequence for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        stamps = [p.timestamp for p in packets]
        assert all((b - a) & 0xFFFF_FFFF == 160 for a, b in itertools.pairwise(stamps))
        assert len({p.ssrc for p in packets}) == 1
        # Pacing: as many packets as 20 ms periods passed (silence after the prompt included).
        assert abs(len(packets) - streamed / 0.020) <= 3
        codec = g711.G711Codec(payload_type)
        assert codec.encode(prompt) in b"".join(p.payload for p in packets)

    run(scenario)


def test_play_tone_file_and_type_ahead_skip(run: Any, tmp_path: Path) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(encode_wav(tone(600, 200)))

    async def scenario() -> None:
        session, phone = await started()
        played = await session.run(Play((File(str(clip)), Tone(1000.0, 100)), barge_in=True))
        assert played == Played(interrupted=False)
        stream = b"".join(p.payload for p in phone.drain())
        assert g711.ulaw_encode(tone(600, 200)) in stream
        assert g711.ulaw_encode(tone(1000.0, 100)) in stream
        # A digit already buffered: a barge-in prompt is skipped, the digit stays for Collect.
        session.push_digit("3")
        assert await session.run(Play((Sound("vm-main-menu"),))) == Played(interrupted=True)
        assert session.digits == "3"
        session.close()
        phone.close()

    run(scenario)


def test_barge_in_on_rfc4733_digit(run: Any) -> None:
    async def scenario() -> None:
        session, phone = await started()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(session.run(Play((Sound("vm-message-menu"),), barge_in=True)))
        await asyncio.sleep(0.3)
        pressed_at = loop.time()
        await phone.press(session.local_port, "5")
        played = await asyncio.wait_for(task, 2.0)
        assert played == Played(interrupted=True)
        assert loop.time() - pressed_at < 0.2
        assert session.digits == "5"  # once, despite three end packets
        assert await session.run(Collect(max_digits=3, first_timeout_s=0.2)) == Collected("5", "timeout")
        session.close()
        phone.close()

    run(scenario)


def test_no_barge_in_keeps_playing_and_buffers(run: Any) -> None:
    async def scenario() -> None:
        session, phone = await started()
        task = asyncio.ensure_future(session.run(Play((Silence(400),), barge_in=False)))
        await asyncio.sleep(0.1)
        await phone.press(session.local_port, "7")
        assert await task == Played(interrupted=False)
        assert session.digits == "7"
        session.close()
        phone.close()

    run(scenario)


# -- Collect -------------------------------------------------------------------------------------------


def test_collect_type_ahead_then_rtp_digits_until_terminator(run: Any) -> None:
    async def scenario() -> None:
        session, phone = await started()
        session.push_digit("1")
        session.push_digit("2")
        assert not session.push_digit("x")

        async def later() -> None:
            await asyncio.sleep(0.1)
            await phone.press(session.local_port, "3")
            await asyncio.sleep(0.05)
            await phone.press(session.local_port, "#")
            await asyncio.sleep(0.05)
            await phone.press(session.local_port, "9")

        presser = asyncio.ensure_future(later())
        collected = await session.run(Collect(max_digits=10, terminators="#", first_timeout_s=2.0))
        await presser
        assert collected == Collected("123", "terminator", "#")
        assert session.digits == "9"  # pressed after the terminator: buffered for the next action
        session.close()
        phone.close()

    run(scenario)


def test_collect_max_and_timeouts(run: Any) -> None:
    async def scenario() -> None:
        session, phone = await started()
        loop = asyncio.get_running_loop()
        for key in "4567":
            session.push_digit(key)
        assert await session.run(Collect(max_digits=3)) == Collected("456", "max")
        assert session.digits == "7"
        start = loop.time()
        assert await session.run(Collect(max_digits=3, inter_digit_timeout_s=0.15)) == Collected(
            "7", "timeout"
        )
        assert 0.13 <= loop.time() - start < 0.4
        start = loop.time()
        assert await session.run(Collect(first_timeout_s=0.2)) == Collected("", "timeout")
        assert 0.18 <= loop.time() - start < 0.45
        session.push_digit("8")
        assert await session.run(Collect(flush=True, first_timeout_s=0.05)) == Collected("", "timeout")
        with pytest.raises(ValueError, match="max_digits"):
            await session.run(Collect(max_digits=0))
        session.close()
        phone.close()

    run(scenario)


def test_hangup_ends_play_and_collect_promptly(run: Any) -> None:
    async def scenario() -> None:
        session, phone = await started()
        loop = asyncio.get_running_loop()
        play = asyncio.ensure_future(session.run(Play((Sound("vm-message-menu"),), barge_in=False)))
        await asyncio.sleep(0.1)
        with pytest.raises(MediaError, match="another action"):
            await session.run(Collect())
        session.hangup()
        assert await asyncio.wait_for(play, 0.5) == Played(interrupted=False)
        session2, phone2 = await started()
        session2.push_digit("1")
        collect = asyncio.ensure_future(session2.run(Collect(max_digits=4, first_timeout_s=5)))
        await asyncio.sleep(0.1)
        start = loop.time()
        session2.hangup()
        assert await collect == Collected("1", "timeout")
        assert loop.time() - start < 0.1
        for s, p in ((session, phone), (session2, phone2)):
            s.close()
            p.close()

    run(scenario)


# -- Record --------------------------------------------------------------------------------------------


def correlation(recorded: np.ndarray, sent: np.ndarray) -> float:
    """Peak normalised cross-correlation of the recording against what was sent (best alignment)."""
    a = recorded.astype(np.float64)
    b = sent.astype(np.float64)
    n = a.size + b.size
    xc = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    lag = int(np.argmax(xc))
    lag = lag - n if lag > a.size else lag
    # Compare the overlapping parts at the best lag.
    if lag >= 0:
        x, y = a[lag:], b[: a.size - lag]
    else:
        x, y = a[: b.size + lag], b[-lag:]
    m = min(x.size, y.size)
    x, y = x[:m], y[:m]
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def read_samples(path: str) -> np.ndarray:
    audio = decode_wav(Path(path).read_bytes())
    assert (audio.sample_rate_hz, audio.channels) == (8000, 1)
    return np.rint(audio.samples[:, 0] * 32768).astype(np.int16)


def test_record_until_pound_matches_what_was_sent(run: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "msg.wav")
    sent = speech_like(1.0)

    async def scenario() -> Recorded:
        session, phone = await started()
        task = asyncio.ensure_future(session.run(Record(path, max_s=10, silence_s=3)))
        await asyncio.sleep(0.3)  # the beep (250 ms) first
        beep_packets = phone.drain()
        await phone.send_audio(session.local_port, sent)
        await phone.press(session.local_port, "#")
        recorded = await asyncio.wait_for(task, 2.0)
        assert g711.ulaw_encode(tone(1000.0, 250, -9.0)) in b"".join(p.payload for p in beep_packets)
        assert session.digits == ""  # the stop key is consumed
        session.close()
        phone.close()
        return recorded

    recorded = run(scenario)
    assert recorded.ended == "key" and recorded.key == "#" and recorded.path == path
    samples = read_samples(path)
    assert abs(recorded.duration_s - samples.size / 8000) < 1e-9
    assert 0.9 <= recorded.duration_s <= 1.25
    assert correlation(samples, g711.ulaw_decode(g711.ulaw_encode(sent))) > 0.99
    assert os.listdir(tmp_path) == ["msg.wav"]


def test_record_stops_on_silence_and_trims_it(run: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "greeting.wav")

    async def scenario() -> Recorded:
        session, phone = await started(payload_type=8)
        task = asyncio.ensure_future(session.run(Record(path, silence_s=0.5, beep=False)))
        await phone.send_audio(
            session.local_port, np.concatenate([speech_like(0.6), np.zeros(8000, np.int16)]), 8
        )
        recorded = await asyncio.wait_for(task, 1.0)
        session.close()
        phone.close()
        return recorded

    recorded = run(scenario)
    assert recorded.ended == "silence"
    # 0.6 s of voice plus the detector's 200 ms hang-over at most; the rest of the silence is trimmed.
    assert 0.55 <= recorded.duration_s <= 0.85
    assert read_samples(path).size == round(recorded.duration_s * 8000)


def test_record_stops_at_max(run: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "long.wav")

    async def scenario() -> Recorded:
        session, phone = await started()
        task = asyncio.ensure_future(session.run(Record(path, max_s=0.5, beep=False)))
        sender = asyncio.ensure_future(phone.send_audio(session.local_port, speech_like(1.2)))
        recorded = await asyncio.wait_for(task, 1.5)
        await sender
        session.close()
        phone.close()
        return recorded

    recorded = run(scenario)
    assert recorded.ended == "max"
    assert 0.4 <= recorded.duration_s <= 0.5


def test_record_on_hangup_still_writes_atomically(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "hangup.wav"
    path.write_bytes(b"old")  # replaced whole, never half-written

    async def scenario() -> Recorded:
        session, phone = await started()
        task = asyncio.ensure_future(session.run(Record(str(path), beep=False)))
        sender = asyncio.ensure_future(phone.send_audio(session.local_port, speech_like(2.0)))
        await asyncio.sleep(0.5)
        session.hangup()
        recorded = await asyncio.wait_for(task, 1.0)
        sender.cancel()
        sent_after = len(phone.drain())
        await asyncio.sleep(0.1)
        assert phone.drain() == []  # the session stopped sending at the hang-up
        assert sent_after > 0
        session.close()
        phone.close()
        return recorded

    recorded = run(scenario)
    assert recorded.ended == "hangup" and recorded.path == str(path)
    assert 0.3 <= recorded.duration_s <= 0.6
    assert read_samples(str(path)).size == round(recorded.duration_s * 8000)
    assert sorted(os.listdir(tmp_path)) == ["hangup.wav"]


def test_record_of_nothing_keeps_nothing(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"

    async def scenario() -> tuple[Recorded, Recorded]:
        session, phone = await started()
        task = asyncio.ensure_future(session.run(Record(str(path), silence_s=0.3, beep=False)))
        await phone.send_audio(session.local_port, np.zeros(4000, np.int16))
        quiet = await asyncio.wait_for(task, 1.0)
        session.hangup()
        after = await session.run(Record(str(path)))
        session.close()
        phone.close()
        return quiet, after

    quiet, after = run(scenario)
    assert quiet == Recorded(None, 0.0, "silence")
    assert after == Recorded(None, 0.0, "hangup")
    assert not path.exists()


# -- addresses and lifecycle -----------------------------------------------------------------------------


def test_symmetric_latching_and_set_remote(run: Any) -> None:
    async def scenario() -> None:
        signalled, nat, moved = Phone(), Phone(), Phone()
        session = session_on(asyncio.get_running_loop())
        session.negotiate(HOST, signalled.port)
        await asyncio.sleep(0.1)
        assert signalled.drain()  # sent to the SDP address until the phone's first packet
        await nat.send_audio(session.local_port, np.zeros(160, np.int16))  # from behind a NAT: elsewhere
        await asyncio.sleep(0.1)
        signalled.drain()
        await asyncio.sleep(0.1)
        assert signalled.drain() == []
        assert nat.drain()
        session.set_remote(HOST, moved.port)  # re-INVITE
        await asyncio.sleep(0.1)
        assert moved.drain()
        session.close()
        for phone in (signalled, nat, moved):
            phone.close()

    run(scenario)


def test_open_binds_a_pair_from_the_allocator_and_close_gives_it_back(run: Any) -> None:
    from tests.media.test_io import free_range

    async def scenario() -> None:
        first, last = free_range(2)
        allocator = PortAllocator(first, last)
        loop = asyncio.get_running_loop()
        session = MediaSession.open(HOST, allocator, loop=loop, prompts=PROMPTS)
        assert session.local_port % 2 == 0 and first <= session.local_port < last
        assert allocator.in_use == 1
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            probe.bind((HOST, session.local_port + 1))  # RTCP is bound too
        probe.close()
        session.close()
        session.close()
        assert allocator.in_use == 0

    run(scenario)
