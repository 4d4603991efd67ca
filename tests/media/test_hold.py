"""The shared hold stream: encoded once per codec, every listener gets the same frame for a tick, looped."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.media.g711 import PT_PCMA, PT_PCMU, G711Codec
from engine.media.hold import FRAME_SAMPLES, HoldStream, HoldStreams, default_music
from engine.media.prompts import AudioFileCache
from engine.media.tone import tone
from engine.media.wav import encode_wav


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


def _first_frame(stream: HoldStream) -> bytes:
    return stream.frame(G711Codec(PT_PCMU), 0)


def test_hold_streams_share_one_stream_per_clip_and_reread_a_replaced_clip(tmp_path: Path) -> None:
    clip = tmp_path / "hold.wav"
    clip.write_bytes(encode_wav(tone(500.0, 400)))
    streams = HoldStreams(AudioFileCache())
    first = streams.get(str(clip))
    assert streams.get(str(clip)) is first  # one stream for every caller while the file is unchanged
    ulaw = G711Codec(PT_PCMU)
    assert _first_frame(first) == ulaw.encode(tone(500.0, 400)[:FRAME_SAMPLES])

    # the admin uploads another clip under the same name (same size: only the modification time differs)
    clip.write_bytes(encode_wav(tone(900.0, 400)))
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = streams.get(str(clip))
    assert second is not first
    assert _first_frame(second) == ulaw.encode(tone(900.0, 400)[:FRAME_SAMPLES])
    assert streams.get(str(clip)) is second


def test_a_missing_clip_plays_the_system_music_until_it_is_uploaded(tmp_path: Path) -> None:
    clip = tmp_path / "later.wav"
    streams = HoldStreams(AudioFileCache())
    system = _first_frame(HoldStream(default_music()))
    missing = streams.get(str(clip))
    assert _first_frame(missing) == system
    assert streams.get(str(clip)) is missing
    clip.write_bytes(encode_wav(tone(700.0, 400)))
    uploaded = streams.get(str(clip))
    assert _first_frame(uploaded) == G711Codec(PT_PCMU).encode(tone(700.0, 400)[:FRAME_SAMPLES])
    assert streams.get(None) is streams.get(None)
    assert _first_frame(streams.get(None)) == system
