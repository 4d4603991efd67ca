"""Received audio played out on the media clock, for a terminal that must hear a continuous signal in real
time (a fax modem), unlike a recorder.

A recorder (``engine.media.jitter``) may release frames whenever they arrive; a modem's demodulator and
T.30's timers count samples, so it must get exactly one frame per media clock tick, whatever the network
did: ``Playout`` reorders arrivals through a ``JitterBuffer`` into a queue, and ``take()`` (once a tick)
gives the next frame, ``None`` for a lost one or for an empty queue (an underrun: the terminal fills the
gap, as for loss). The queue first fills to ``prefill`` frames (the playout delay that absorbs jitter); its
oldest frames are dropped when it grows past ``high`` (a sender whose clock runs fast, a burst after a
stall), so the delay stays bounded. A new SSRC starts a new sequence space.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from engine.media.jitter import Frame, JitterBuffer

#: frames queued before playout starts: 60 ms at 20 ms a frame
DEFAULT_PREFILL: Final = 3
#: frames queued past which the queue is cut back to ``prefill``
DEFAULT_HIGH: Final = 12


class AudioTerminal(Protocol):
    """What a media session can run instead of prompts: it hears the caller and makes what is sent
    (``engine.media.fax.FaxTerminal``). ``finished`` ends the run."""

    def receive(self, samples: npt.NDArray[np.int16] | None, count: int = ...) -> None: ...

    def transmit(self, count: int = ...) -> npt.NDArray[np.int16]: ...

    def hangup(self) -> None: ...

    @property
    def finished(self) -> bool: ...


class Playout:
    """See the module docstring.

    Attributes:
        underruns: ticks that found the queue empty after playout had started.
        trimmed: frames dropped to bring the delay back down.
    """

    __slots__ = ("_buffer", "_queue", "_ssrc", "_started", "high", "prefill", "trimmed", "underruns")

    def __init__(self, prefill: int = DEFAULT_PREFILL, high: int = DEFAULT_HIGH) -> None:
        """Raises:
        ValueError: ``prefill`` < 0 or ``high`` <= ``prefill``.
        """
        if prefill < 0 or high <= prefill:
            raise ValueError(f"prefill {prefill} and high {high}: need 0 <= prefill < high")
        self.prefill = prefill
        self.high = high
        self._buffer = JitterBuffer()
        self._queue: deque[Frame] = deque()
        self._ssrc: int | None = None
        self._started = False
        self.underruns = 0
        self.trimmed = 0

    def put(self, ssrc: int, sequence: int, payload: bytes) -> None:
        """One received RTP payload."""
        if ssrc != self._ssrc:
            self._queue.extend(self._buffer.flush())
            self._buffer = JitterBuffer()
            self._ssrc = ssrc
        self._queue.extend(self._buffer.put(sequence, payload))
        while len(self._queue) > self.high:
            self._queue.popleft()
            self.trimmed += 1

    def take(self) -> Frame:
        """This tick's frame: a payload, or None (lost, or nothing there yet)."""
        if not self._started:
            if len(self._queue) < max(self.prefill, 1):
                return None
            self._started = True
        if not self._queue:
            self.underruns += 1
            return None
        return self._queue.popleft()
