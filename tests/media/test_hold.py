"""The shared hold stream: encoded once per codec, every listener gets the same frame for a tick, looped."""

from __future__ import annotations

import numpy as np

from engine.media.g711 import PT_PCMA, PT_PCMU, G711Codec
from engine.media.hold import FRAME_SAMPLES, HoldStream, default_music


def test_frames_are_slices_of_one_encoding_and_loop() -> None:
    samples = (np.arange(FRAME_SAMPLES * 3 + 10) % 2000 - 1000).astype(np.int16)
    stream = HoldStream(samples)
    assert stream.frames == 4  # padded to whole frames
    ulaw = G711Codec(PT_PCMU)
    encoded = ulaw.encode(np.concatenate([samples, np.zeros(FRAME_SAMPLES - 10, dtype=np.int16)]))
    for tick in range(9):
        start = (tick % 4) * FRAME_SAMPLES
        assert stream.frame(ulaw, tick) == encoded[start : start + FRAME_SAMPLES]
    alaw = G711Codec(PT_PCMA)
    assert stream.frame(alaw, 1) == alaw.encode(samples[FRAME_SAMPLES : 2 * FRAME_SAMPLES])
    assert stream.frame(ulaw, 5) is not stream.frame(alaw, 5)


def test_the_system_music_and_an_empty_clip() -> None:
    music = default_music()
    assert music.size == 8000 * 1200 // 1000
    stream = HoldStream(np.zeros(0, dtype=np.int16))
    assert stream.frames == 1 and len(stream.frame(G711Codec(PT_PCMU), 7)) == FRAME_SAMPLES
