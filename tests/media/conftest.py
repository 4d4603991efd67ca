"""Fixtures of the media shell tests: each scenario runs on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    """Run a scenario in a fresh loop of the given kind; fail on anything the loop's handler sees."""

    def runner(scenario: Callable[[], Awaitable[Any]]) -> Any:
        factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop
        seen: list[dict[str, Any]] = []

        async def main() -> Any:
            asyncio.get_running_loop().set_exception_handler(lambda loop, context: seen.append(context))
            return await scenario()

        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(main())
        assert not seen, seen
        return result

    return runner
