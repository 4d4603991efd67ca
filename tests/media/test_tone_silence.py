"""Tone generation and the energy-based silence detector with hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from engine.media.silence import SilenceDetector, level_dbfs
from engine.media.tone import beep, silence, tone


def test_beep_is_1khz_250ms_at_minus_9_dbfs_with_fades() -> None:
    b = beep()
    assert b.size == 2000
    spectrum = np.abs(np.fft.rfft(b.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 8000 / b.size - 1000) < 5
    assert abs(np.max(np.abs(b)) - 32767 * 10 ** (-9 / 20)) < 40
    assert abs(int(b[0])) < 50 and abs(int(b[-1])) < 50
    assert silence(20).tolist() == [0] * 160


def test_tone_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="hz"):
        tone(5000, 100)
    with pytest.raises(ValueError, match="ms"):
        tone(1000, -1)


def frames(level_db: float, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    amp = 32768 * 10 ** (level_db / 20)
    return [np.clip(rng.normal(0, amp, 160), -32768, 32767).astype(np.int16) for _ in range(count)]


def test_levels() -> None:
    assert level_dbfs(np.zeros(160, dtype=np.int16)) == -120.0
    full = np.full(160, 32767, dtype=np.int16)
    assert abs(level_dbfs(full)) < 0.01


def test_hysteresis_and_hangover() -> None:
    rng = np.random.default_rng(1)
    detector = SilenceDetector(on_dbfs=-40, off_dbfs=-45, hangover_frames=5)
    assert not any(detector.feed(f) for f in frames(-60, 20, rng))  # line noise
    assert all(detector.feed(f) for f in frames(-25, 10, rng))  # speech
    # Between the thresholds: stays voice (hysteresis).
    assert all(detector.feed(f) for f in frames(-42.5, 10, rng))
    # Below off: voice for the hang-over, then silence.
    states = [detector.feed(f) for f in frames(-60, 10, rng)]
    assert states == [True] * 5 + [False] * 5
    assert detector.silent_frames == 5
    # From silence, between the thresholds is not enough to start voice.
    assert not any(detector.feed(f) for f in frames(-42.5, 10, rng))


def test_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="off_dbfs"):
        SilenceDetector(on_dbfs=-50, off_dbfs=-40)
