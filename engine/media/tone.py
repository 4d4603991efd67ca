"""Generated audio: sine tones (the 1 kHz beep before a recording) and silence, as 8 kHz int16 frames.

Tones get a 5 ms raised-cosine fade at both ends: a tone switched on or off mid-cycle clicks.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ: Final = 8000
FADE_MS: Final = 5
BEEP_HZ: Final = 1000.0
BEEP_MS: Final = 250

Int16Array = npt.NDArray[np.int16]


def tone(hz: float, ms: int, level_dbfs: float = -9.0, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Int16Array:
    """A sine of ``hz`` for ``ms`` milliseconds whose peak is ``level_dbfs`` below full scale.

    Raises:
        ValueError: ``ms`` negative, ``hz`` not in (0, Nyquist), ``level_dbfs`` above 0.
    """
    if ms < 0:
        raise ValueError(f"ms {ms} must not be negative")
    if not 0 < hz < sample_rate_hz / 2:
        raise ValueError(f"hz {hz} must lie between 0 and {sample_rate_hz / 2} (Nyquist)")
    if level_dbfs > 0:
        raise ValueError(f"level_dbfs {level_dbfs} must not exceed 0")
    count = sample_rate_hz * ms // 1000
    amplitude = 32767.0 * 10.0 ** (level_dbfs / 20.0)
    wave = amplitude * np.sin(2.0 * np.pi * hz * np.arange(count) / sample_rate_hz)
    fade = min(sample_rate_hz * FADE_MS // 1000, count // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        wave[:fade] *= ramp
        wave[count - fade :] *= ramp[::-1]
    out: Int16Array = np.rint(wave).astype(np.int16)
    return out


def beep(sample_rate_hz: int = SAMPLE_RATE_HZ) -> Int16Array:
    """The 1000 Hz, 250 ms beep before a recording (``engine.script.BEEP``)."""
    return tone(BEEP_HZ, BEEP_MS, sample_rate_hz=sample_rate_hz)


def silence(ms: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Int16Array:
    """``ms`` milliseconds of digital silence.

    Raises:
        ValueError: ``ms`` negative.
    """
    if ms < 0:
        raise ValueError(f"ms {ms} must not be negative")
    return np.zeros(sample_rate_hz * ms // 1000, dtype=np.int16)
