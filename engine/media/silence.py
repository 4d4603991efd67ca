"""Energy-based voice/silence detection over 20 ms frames, with hysteresis, for ending recordings.

A frame's level is its RMS in dBFS. The detector turns to *voice* when a frame is at or above
``on_dbfs`` and back to *silence* only after ``hangover_frames`` consecutive frames below ``off_dbfs``
(lower than ``on_dbfs``): the gap between the thresholds keeps line noise hovering around one threshold
from flapping, and the hang-over keeps the pauses between words and the soft ends of words (which fall
below the threshold before the word is over) inside the voice. Telephone line noise sits near -60 dBFS,
speech around -30 to -15 dBFS, hence the defaults.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

DEFAULT_ON_DBFS: Final = -40.0
DEFAULT_OFF_DBFS: Final = -45.0
DEFAULT_HANGOVER_FRAMES: Final = 10  # 200 ms at 20 ms
_FLOOR_DBFS: Final = -120.0


def level_dbfs(frame: npt.NDArray[np.int16]) -> float:
    """RMS level of an int16 frame in dB relative to full scale (-120 for digital silence or no samples)."""
    if frame.size == 0:
        return _FLOOR_DBFS
    samples = frame.astype(np.float64)
    power = float(np.dot(samples, samples)) / frame.size
    if power <= 0.0:
        return _FLOOR_DBFS
    return max(_FLOOR_DBFS, 10.0 * math.log10(power / (32768.0 * 32768.0)))


class SilenceDetector:
    """Voice/silence state over consecutive frames (see the module docstring).

    Attributes:
        voice: the current state.
        silent_frames: consecutive frames in the silence state (0 while voice).
        voiced_frames: frames seen in the voice state so far.
    """

    __slots__ = (
        "_below",
        "hangover_frames",
        "off_dbfs",
        "on_dbfs",
        "silent_frames",
        "voice",
        "voiced_frames",
    )

    def __init__(
        self,
        on_dbfs: float = DEFAULT_ON_DBFS,
        off_dbfs: float = DEFAULT_OFF_DBFS,
        hangover_frames: int = DEFAULT_HANGOVER_FRAMES,
    ) -> None:
        """Raises:
        ValueError: ``off_dbfs`` above ``on_dbfs`` or ``hangover_frames`` negative.
        """
        if off_dbfs > on_dbfs:
            raise ValueError(f"off_dbfs {off_dbfs} must not exceed on_dbfs {on_dbfs}")
        if hangover_frames < 0:
            raise ValueError(f"hangover_frames {hangover_frames} must not be negative")
        self.on_dbfs = on_dbfs
        self.off_dbfs = off_dbfs
        self.hangover_frames = hangover_frames
        self.voice = False
        self._below = 0
        self.silent_frames = 0
        self.voiced_frames = 0

    def feed(self, frame: npt.NDArray[np.int16]) -> bool:
        """Account for one frame; returns whether it counts as voice."""
        level = level_dbfs(frame)
        if self.voice:
            if level < self.off_dbfs:
                self._below += 1
                if self._below > self.hangover_frames:
                    self.voice = False
            else:
                self._below = 0
        elif level >= self.on_dbfs:
            self.voice = True
            self._below = 0
        if self.voice:
            self.voiced_frames += 1
            self.silent_frames = 0
        else:
            self.silent_frames += 1
        return self.voice
