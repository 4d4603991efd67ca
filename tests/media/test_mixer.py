"""The conference mixer with real G.711 audio: each participant sends an encoded tone, and what each one
receives is decoded and measured by frequency (tests.integration.audio.tone_amplitude). N-1 mixes (every
tone but one's own), mute, active-speaker selection, listen and talk volume, saturation, the jitter
buffer's reordering, loss concealment and mixed codecs."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from engine.media.g711 import PT_PCMA, PT_PCMU, G711Codec
from engine.media.mixer import FRAME_SAMPLES, PREFETCH_FRAMES, Participant, Room
from tests.integration.audio import tone_amplitude

ULAW = G711Codec(PT_PCMU)
ALAW = G711Codec(PT_PCMA)
TONES = (500.0, 700.0, 900.0, 1100.0)
TICKS = 60


def tone(hz: float, frames: int, amplitude: float = 0.2) -> npt.NDArray[np.int16]:
    t = np.arange(frames * FRAME_SAMPLES) / 8000
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


class Talker:
    """A participant fed one encoded tone (``None``: it sends nothing), recording what it receives."""

    def __init__(self, room: Room, hz: float | None, codec: G711Codec = ULAW, amplitude: float = 0.2) -> None:
        self.participant = Participant(codec)
        self.codec = codec
        room.add(self.participant)
        self.frames: list[bytes] = []
        if hz is not None:
            audio = tone(hz, TICKS + 10, amplitude)
            step = FRAME_SAMPLES
            self.frames = [codec.encode(audio[i : i + step]) for i in range(0, audio.size, step)]
        self.heard: list[bytes] = []

    def send(self, k: int) -> None:
        if self.frames:
            self.participant.receive(0x1234, k, self.frames[k])

    def listen(self, tick: int) -> None:
        self.heard.append(self.participant.frame(self.codec, tick))

    def audio(self, skip: int = PREFETCH_FRAMES + 2) -> npt.NDArray[np.int16]:
        return np.concatenate([self.codec.decode(f) for f in self.heard[skip:]])

    def amplitude(self, hz: float) -> float:
        return tone_amplitude(self.audio(), hz)


def run(talkers: list[Talker], ticks: int = TICKS) -> None:
    for k in range(ticks):
        for t in talkers:
            t.send(k)
        for t in talkers:
            t.listen(k)


def test_each_of_four_hears_the_other_three_and_not_itself() -> None:
    room = Room()
    talkers = [Talker(room, hz) for hz in TONES]
    run(talkers)
    for t, own in zip(talkers, TONES, strict=True):
        for hz in TONES:
            level = t.amplitude(hz)
            if hz == own:
                assert level < 0.005, (own, hz, level)
            else:
                assert 0.15 < level < 0.25, (own, hz, level)


def test_a_muted_participant_is_not_heard_but_hears() -> None:
    room = Room()
    talkers = [Talker(room, hz) for hz in TONES[:3]]
    talkers[0].participant.muted = True
    run(talkers)
    assert talkers[1].amplitude(TONES[0]) < 0.005
    assert talkers[2].amplitude(TONES[0]) < 0.005
    assert talkers[0].amplitude(TONES[1]) > 0.15
    assert talkers[0].amplitude(TONES[2]) > 0.15


def test_only_the_loudest_three_others_are_mixed() -> None:
    room = Room(max_talkers=3)
    freqs = (400.0, 600.0, 800.0, 1000.0, 1200.0, 1400.0)
    amplitudes = (0.05, 0.3, 0.1, 0.25, 0.2, 0.02)
    talkers = [Talker(room, hz, amplitude=a) for hz, a in zip(freqs, amplitudes, strict=True)]
    silent = Talker(room, None)
    run([*talkers, silent])
    heard = {hz: silent.amplitude(hz) for hz in freqs}
    assert {hz for hz, a in heard.items() if a > 0.01} == {600.0, 1000.0, 1200.0}, heard
    # One of the loudest three hears the other two and the fourth loudest (800 Hz).
    loud = talkers[1]
    got = {hz for hz in freqs if loud.amplitude(hz) > 0.01}
    assert got == {800.0, 1000.0, 1200.0}, got


def test_listen_and_talk_volume_change_the_level() -> None:
    room = Room()
    a, b, c = Talker(room, 500.0), Talker(room, 700.0), Talker(room, None)
    assert a.participant.change_talk(-2) == -2  # 6 dB softer for everyone
    assert c.participant.change_listen(+2) == 2  # 6 dB louder for c
    run([a, b, c])
    assert b.amplitude(500.0) == pytest.approx(0.1, rel=0.08)
    assert c.amplitude(700.0) == pytest.approx(0.4, rel=0.08)
    assert c.amplitude(500.0) == pytest.approx(0.2, rel=0.08)
    assert c.participant.change_listen(+9) == 4  # clamped


def test_loud_talkers_saturate_instead_of_wrapping() -> None:
    room = Room()
    a, b, c, d = (Talker(room, 500.0, amplitude=0.9), Talker(room, 500.0, amplitude=0.9),
                  Talker(room, 500.0, amplitude=0.9), Talker(room, None))
    run([a, b, c, d])
    heard = d.audio()
    assert heard.max() > 32000 and heard.min() < -32000
    # Wrapping would flip the sign at the peaks; saturation keeps the tone's polarity there.
    sent = tone(500.0, TICKS + 10, 0.9)
    lag = (PREFETCH_FRAMES + 2 + 0) * FRAME_SAMPLES
    expected = np.clip(3 * sent[lag - PREFETCH_FRAMES * FRAME_SAMPLES :][: heard.size].astype(np.int32),
                       -32768, 32767)
    assert np.mean(np.sign(heard) == np.sign(expected)) > 0.97


def test_reordered_packets_come_out_in_order() -> None:
    room = Room()
    a, b = Talker(room, 700.0), Talker(room, None)
    order = list(range(TICKS))
    for i in range(2, TICKS - 2, 5):
        order[i], order[i + 1] = order[i + 1], order[i]  # every fifth pair swapped
    for tick, k in enumerate(order):
        a.send(k)
        b.listen(tick)
    clean = Room()
    a2, b2 = Talker(clean, 700.0), Talker(clean, None)
    run([a2, b2])
    assert np.array_equal(b.audio(), b2.audio())


def test_a_lost_frame_is_concealed_then_silence() -> None:
    room = Room()
    a, b = Talker(room, 700.0), Talker(room, None)
    for k in range(20):
        a.send(k)
        b.listen(k)
    for k in range(20, 25):  # no more packets: the one frame queued plays, then four ticks have none
        b.listen(k)
    last = ULAW.decode(b.heard[-5]).astype(np.int32)  # the last frame received
    peak = [int(np.abs(ULAW.decode(f).astype(np.int32)).max()) for f in b.heard[-4:]]
    top = int(np.abs(last).max())
    assert top * 0.4 < peak[0] < top * 0.6  # the last frame at half the level
    assert top * 0.15 < peak[1] < top * 0.35  # then a quarter
    assert peak[2] < 40 and peak[3] < 40  # then silence


def test_a_law_and_mu_law_participants_hear_each_other() -> None:
    room = Room()
    a, b = Talker(room, 500.0, ALAW), Talker(room, 900.0, ULAW)
    run([a, b])
    assert a.amplitude(900.0) > 0.15 and a.amplitude(500.0) < 0.005
    assert b.amplitude(500.0) > 0.15 and b.amplitude(900.0) < 0.005


def test_a_participant_removed_gets_silence_and_is_no_longer_heard() -> None:
    room = Room()
    a, b = Talker(room, 500.0), Talker(room, None)
    run([a, b], 10)
    room.remove(a.participant)
    assert a.participant.room is None and len(room) == 1
    b.heard.clear()
    a.heard.clear()
    run([a, b], 20)
    assert set(a.heard) == {bytes([ULAW.silence]) * FRAME_SAMPLES}
    assert b.amplitude(500.0) < 0.005
