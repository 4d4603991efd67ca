"""Issue 18 part 3: when shedding starts and stops (engine.net.overload), and the monitor on a real loop
setting the endpoint's flag from the CPU figures it is given."""

from __future__ import annotations

import asyncio

import pytest

from engine.clock import LoopClock
from engine.net.overload import OverloadConfig, OverloadMonitor, OverloadState
from engine.sip.endpoint import EndpointConfig, SipEndpoint


def test_two_saturated_windows_start_shedding_and_a_quiet_one_stops_it() -> None:
    state = OverloadState(OverloadConfig(enter=0.9, leave=0.7, window_s=0.5, windows=2))
    assert not state.sample(0.48, 0.5)  # 96 %: one window
    assert not state.shedding
    assert not state.sample(0.30, 0.5)  # 60 %: the run is broken
    assert not state.sample(0.46, 0.5)
    assert state.sample(0.47, 0.5) and state.shedding and state.episodes == 1
    assert not state.sample(0.40, 0.5) and state.shedding  # 80 %: above leave, still shedding
    assert state.sample(0.30, 0.5) and not state.shedding
    assert state.load == pytest.approx(0.6)


def test_zero_never_sheds() -> None:
    state = OverloadState(OverloadConfig(enter=0.0))
    for _ in range(10):
        assert not state.sample(1.0, 0.5)
    assert not state.shedding


def test_the_monitor_sets_and_clears_the_endpoint_flag() -> None:
    cpu = [0.0]
    endpoint = SipEndpoint(EndpointConfig())

    async def scenario() -> list[bool]:
        loop = asyncio.get_running_loop()
        monitor = OverloadMonitor(endpoint, OverloadConfig(enter=0.9, leave=0.7, window_s=0.05, windows=2),
                                  LoopClock(loop), cpu=lambda: cpu[0])
        monitor.start()
        seen = []
        try:
            start = loop.time()
            while loop.time() - start < 0.4:  # a whole core's worth of CPU per wall second
                cpu[0] = loop.time() - start
                await asyncio.sleep(0.01)
            seen.append(endpoint.overloaded)
            await asyncio.sleep(0.25)  # no CPU used any more
            seen.append(endpoint.overloaded)
        finally:
            monitor.stop()
        return seen

    assert asyncio.run(scenario()) == [True, False]
