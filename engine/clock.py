"""The one place time is read (ARCHITECTURE: time is injected).

The pure core takes ``now`` (monotonic seconds) as an argument; the shell gets it from a ``Clock``.
"""

from __future__ import annotations

import time
from typing import Final, Protocol


class Clock(Protocol):
    """Monotonic seconds for timers, wall-clock seconds for records."""

    def now(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock: ``time.monotonic`` for timers, ``time.time`` for wall time."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


SYSTEM_CLOCK: Final = SystemClock()
"""The real clock, shared (it has no state): the default of every constructor that takes a ``Clock`` and
may run without an event loop (the admin API and provisioning answer in worker threads, the CLI has no
loop). Code on the loop gets a ``LoopClock``, whose ``now()`` is the time base of ``loop.call_at``."""


class FakeClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float = 0.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        self._now += seconds


class LoopClock:
    """The event loop's monotonic clock (the time base of ``loop.call_at``) plus wall time."""

    def __init__(self, loop: _Loop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()

    def wall(self) -> float:
        return time.time()


class _Loop(Protocol):
    def time(self) -> float: ...


def process_cpu() -> float:
    """CPU seconds this process has used (user + system, all threads): the overload monitor's load
    signal (engine.net.overload)."""
    return time.process_time()
