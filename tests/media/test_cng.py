"""CNG detection: a calling fax machine's tone (spandsp's own CNG, through PCMU) is found within its first
burst; silence, a 1000 Hz beep of 250 ms, a chord and noise are not CNG; the listener gives up after its
time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.media.cng import CngDetector, CngListener
from engine.media.fax import FaxTerminal
from engine.media.g711 import ulaw_decode, ulaw_encode
from engine.media.tone import tone


def frames(samples: np.ndarray) -> list[np.ndarray]:
    return [samples[i : i + 160] for i in range(0, samples.size - 159, 160)]


def test_a_calling_fax_machines_tone_is_detected_in_its_first_burst(tmp_path: Path) -> None:
    from tests.media.test_fax import two_pages

    two_pages(tmp_path / "tx.tif")
    fax = FaxTerminal(calling=True, station_id="1", tx_path=str(tmp_path / "tx.tif"))
    listener = CngListener(4.0)
    heard = 0
    while not listener.finished:
        listener.receive(ulaw_decode(ulaw_encode(fax.transmit())))
        heard += 1
    fax.close()
    assert listener.detector.detected and heard <= 50  # within its first 0.5 s burst (plus lead-in)


def test_silence_a_beep_a_chord_and_noise_are_not_cng() -> None:
    rng = np.random.default_rng(3)
    chord = tone(1100.0, 2000, -12.0).astype(np.int32) + tone(1400.0, 2000, -12.0) + tone(700.0, 2000, -12.0)
    cases = {
        "silence": np.zeros(16000, dtype=np.int16),
        "beep": np.concatenate([tone(1100.0, 250), np.zeros(8000, dtype=np.int16)]),
        "chord": np.clip(chord, -32768, 32767).astype(np.int16),
        "noise": (rng.standard_normal(16000) * 3000).astype(np.int16),
    }
    for name, samples in cases.items():
        detector = CngDetector()
        assert not any(detector.feed(f) for f in frames(samples)), name


def test_the_listener_gives_up_after_its_time_and_on_hangup() -> None:
    listener = CngListener(1.0)
    for _ in range(49):
        listener.receive(None)
        assert not listener.finished and not listener.transmit().any()
    listener.receive(np.zeros(160, dtype=np.int16))
    assert listener.finished and not listener.detector.detected
    other = CngListener(5.0)
    other.hangup()
    assert other.finished
