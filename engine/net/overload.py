"""Overload detection (issue 18 part 3): when the engine's process is saturated, new INVITEs and REGISTERs
are shed with 503 and Retry-After (``SipEndpoint.overloaded``) before latency collapses.

The signal is the process's CPU use over a window of wall time: the engine serves SIP on one event loop,
so once it spends (nearly) a whole core, the kernel's receive queues only grow and every request waits
longer (an 8 MB UDP buffer is a second or more of requests). The loop's own lag does not show this, since
uvloop runs its timers between every batch of reads, however long the queue. A 503 costs far less than the
authentication, routing and store work of an INVITE or REGISTER, and what is already running (in-dialog
requests, ACK, CANCEL, responses) keeps being served, so the calls in progress go on.

Hysteresis: ``enter`` of a core for ``windows`` windows in a row turns shedding on; below ``leave`` for one
window turns it off. ``OverloadState.sample`` is the pure rule; ``OverloadMonitor`` drives it from a loop
timer and logs each change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from engine.clock import Clock, process_cpu
from engine.sip.endpoint import SipEndpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    """When shedding starts and stops.

    Attributes:
        enter: CPU use (cores, e.g. 0.95) at or above which a window counts as saturated (0: never shed).
        leave: CPU use below which shedding stops.
        window_s: the sampling window.
        windows: saturated windows in a row that turn shedding on.
    """

    enter: float = 0.95
    leave: float = 0.8
    window_s: float = 0.5
    windows: int = 2


class OverloadState:
    """The pure rule: fed (CPU seconds, wall seconds) per window, says whether to shed."""

    def __init__(self, config: OverloadConfig) -> None:
        self.config = config
        self.shedding = False
        self.episodes = 0
        self.load = 0.0
        self._saturated = 0

    def sample(self, cpu_s: float, wall_s: float) -> bool:
        """One window's figures; returns True when the shedding state changed."""
        config = self.config
        if wall_s <= 0 or config.enter <= 0:
            return False
        self.load = load = cpu_s / wall_s
        if self.shedding:
            if load < config.leave:
                self.shedding = False
                self._saturated = 0
                return True
            return False
        self._saturated = self._saturated + 1 if load >= config.enter else 0
        if self._saturated >= config.windows:
            self.shedding = True
            self.episodes += 1
            return True
        return False


class OverloadMonitor:
    """Samples the process's CPU every ``window_s`` and sets ``endpoint.overloaded``."""

    def __init__(self, endpoint: SipEndpoint, config: OverloadConfig, clock: Clock,
                 cpu: Callable[[], float] = process_cpu) -> None:
        self.endpoint = endpoint
        self.state = OverloadState(config)
        self.clock = clock
        self._cpu = cpu
        self._handle: asyncio.TimerHandle | None = None
        self._last = (0.0, 0.0)

    def start(self) -> None:
        if self.state.config.enter <= 0:
            return
        self._last = (self.clock.now(), self._cpu())
        self._handle = asyncio.get_running_loop().call_later(self.state.config.window_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now, cpu = self.clock.now(), self._cpu()
        then, cpu_then = self._last
        self._last = (now, cpu)
        state = self.state
        if state.sample(cpu - cpu_then, now - then):
            self.endpoint.overloaded = state.shedding
            if state.shedding:
                logger.warning("overloaded (%.0f %% of a core): new INVITEs and REGISTERs get 503 "
                               "Retry-After %d", state.load * 100, self.endpoint.limits.retry_after_s)
            else:
                logger.warning("load back to %.0f %% of a core: serving new INVITEs and REGISTERs again",
                               state.load * 100)
        self._handle = asyncio.get_running_loop().call_later(state.config.window_s, self._tick)
