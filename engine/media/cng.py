"""Fax calling tone (CNG) detection: ITU-T T.30 §5.2's 1100 Hz tone, 0.5 s on and 3 s off, which a calling
fax machine sends until it hears the answering one; the Detect Fax node listens for it.

A frame (20 ms) is tonal when its energy is above ``MIN_LEVEL`` (a quiet line is not a tone) and the
Goertzel power at 1100 Hz carries at least ``MIN_SHARE`` of it (speech and music spread their energy; a
pure tone puts nearly all of it in one bin); ``ON_FRAMES`` tonal frames in a row (0.4 s of the 0.5 s burst,
so one burst suffices whatever its phase against the frames) is CNG. ``CngListener`` is an audio terminal
(``engine.media.playout.AudioTerminal``) for ``MediaSession.run_terminal``: it hears the caller, sends
silence, and finishes on CNG or after its listening time (counted in samples heard: pure, no clock).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ: Final = 8000
CNG_HZ: Final = 1100.0
#: the mean square a frame needs to count (about -45 dBm0 on G.711's scale)
MIN_LEVEL: Final = 40.0**2
#: the share of a frame's energy the 1100 Hz bin must hold
MIN_SHARE: Final = 0.5
#: tonal frames in a row that make CNG (400 ms at 20 ms a frame)
ON_FRAMES: Final = 20


def tone_share(frame: npt.NDArray[np.int16], hz: float = CNG_HZ) -> float:
    """The share of ``frame``'s energy at ``hz`` (Goertzel), 0 for a silent frame."""
    x = frame.astype(np.float64)
    n = x.size
    energy = float(np.dot(x, x))
    if n == 0 or energy / n < MIN_LEVEL:
        return 0.0
    t = np.arange(n)
    w = 2.0 * math.pi * hz / SAMPLE_RATE_HZ
    re = float(np.dot(x, np.cos(w * t)))
    im = float(np.dot(x, np.sin(w * t)))
    return (2.0 * (re * re + im * im) / n) / energy


class CngDetector:
    """Feeds frames; ``detected`` once ``ON_FRAMES`` tonal frames came in a row."""

    __slots__ = ("detected", "run")

    def __init__(self) -> None:
        self.run = 0
        self.detected = False

    def feed(self, frame: npt.NDArray[np.int16] | None) -> bool:
        """One frame (None: lost, which neither breaks nor extends a run). Returns ``detected``."""
        if frame is None or self.detected:
            return self.detected
        self.run = self.run + 1 if tone_share(frame) >= MIN_SHARE else 0
        if self.run >= ON_FRAMES:
            self.detected = True
        return self.detected


class CngListener:
    """Listens for CNG for ``listen_s`` of received audio while sending silence (see the module docstring).

    Attributes:
        detector: its detector (``detected`` is the outcome).
        hung_up: the call ended while listening.
    """

    __slots__ = ("_left", "detector", "hung_up")

    def __init__(self, listen_s: float) -> None:
        """Raises:
        ValueError: ``listen_s`` is not positive.
        """
        if listen_s <= 0:
            raise ValueError(f"listen_s {listen_s} must be positive")
        self._left = round(listen_s * SAMPLE_RATE_HZ)
        self.detector = CngDetector()
        self.hung_up = False

    @property
    def finished(self) -> bool:
        return self.detector.detected or self._left <= 0 or self.hung_up

    def receive(self, samples: npt.NDArray[np.int16] | None, count: int = SAMPLE_RATE_HZ // 50) -> None:
        self._left -= count if samples is None else samples.size
        self.detector.feed(samples)

    def transmit(self, count: int = SAMPLE_RATE_HZ // 50) -> npt.NDArray[np.int16]:
        return np.zeros(count, dtype=np.int16)

    def hangup(self) -> None:
        self.hung_up = True
