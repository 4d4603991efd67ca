"""The media clock: one timer per event loop that makes every sending session send one frame per ptime.

It ticks every 20 ms at absolute deadlines (start + n * 20 ms) and calls each registered sender (the engine's
``MediaSession``, a relay side's ``RelayMusic``, a conference room): the pjmedia master-clock model, one
timer wake-up for all sessions, not one per session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

logger = logging.getLogger(__name__)

#: Ticks the clock may fall behind (a stalled loop) before it skips ahead instead of bursting frames out.
MAX_LATE_TICKS: Final = 5


class ClockedSender(Protocol):
    """What the media clock drives: a ``MediaSession`` or a ``RelayMusic``, sending one frame a tick."""

    @property
    def local_port(self) -> int: ...

    def _tick(self, tick: int, now: float) -> None: ...


class MediaClock:
    """The media clock of one event loop: every ``ptime_ms`` at absolute deadlines, each registered session
    sends one frame. Late by up to ``MAX_LATE_TICKS`` ticks, the missed ticks run at once (the phone's
    jitter buffer absorbs the burst); later still, it skips ahead (timestamps jump, as RTP wants for a gap).

    Attributes:
        late_skips: how many times the clock skipped ahead.
        errors: sessions whose tick raised (each logged; the clock keeps running).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ptime_ms: int = 20) -> None:
        """Raises:
        ValueError: ``ptime_ms`` not in 10-100 or not a multiple of 10 ms.
        """
        if not 10 <= ptime_ms <= 100 or ptime_ms % 10:
            raise ValueError(f"ptime_ms {ptime_ms} must be a multiple of 10 in 10-100")
        self.loop = loop
        self.ptime_ms = ptime_ms
        self.ptime_s = ptime_ms / 1000.0
        self._sessions: dict[ClockedSender, None] = {}  # insertion-ordered set
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._next = 0
        self.late_skips = 0
        self.errors = 0

    @property
    def tick(self) -> int:
        """The index of the next tick (ticks since the clock started)."""
        return self._next

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def add(self, session: ClockedSender) -> None:
        self._sessions[session] = None
        if self._handle is None:
            self._start = self.loop.time()
            self._next = 0
            self._handle = self.loop.call_at(self._start, self._on_tick)

    def discard(self, session: ClockedSender) -> None:
        self._sessions.pop(session, None)
        if not self._sessions and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _on_tick(self) -> None:
        now = self.loop.time()
        tick = self._next
        behind = int((now - self._start) / self.ptime_s) - tick
        if behind > MAX_LATE_TICKS:
            tick += behind
            self.late_skips += 1
        for session in list(self._sessions):
            try:
                session._tick(tick, now)
            except Exception:
                self.errors += 1
                logger.exception("media session tick failed (port %d)", session.local_port)
        self._next = tick + 1
        if self._sessions:
            self._handle = self.loop.call_at(self._start + self._next * self.ptime_s, self._on_tick)
        else:
            self._handle = None
