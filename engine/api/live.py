"""The engine's live services (conference rooms, call queues) reached from the API's worker threads.

Those services live on the engine's event loop (no locks: only the loop touches them), while the API's
handlers run in worker threads. So each request hands one function to the loop
(``loop.call_soon_threadsafe``) and waits for its result on a ``concurrent.futures.Future`` for at most
``LIVE_TIMEOUT_S``: the loop never waits for the API, and a loop that does not answer in time (stopped, or
stalled) is a 503, not a hung request. A function the loop has not started when the wait ends is
cancelled, so a late change never happens behind a 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from litestar.exceptions import ServiceUnavailableException

R = TypeVar("R")
S = TypeVar("S")

LIVE_TIMEOUT_S: Final = 2.0
"""How long a request waits for the event loop's answer."""


@dataclass(frozen=True, slots=True)
class Live(Generic[S]):
    """A service of the engine's and the loop it lives on, reached from worker threads."""

    loop: asyncio.AbstractEventLoop
    service: S
    timeout_s: float = LIVE_TIMEOUT_S

    def call(self, fn: Callable[[S], R]) -> R:
        """``fn(service)`` run on the loop; its result or its exception, here.

        Raises:
            ServiceUnavailableException: the loop is closed or did not run ``fn`` within ``timeout_s``.
        """
        done: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            if not done.set_running_or_notify_cancel():
                return  # the request gave up waiting: do nothing behind its back
            try:
                done.set_result(fn(self.service))
            except Exception as exc:  # handed to the waiting thread, which raises it
                done.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed (the engine is stopping)
            raise ServiceUnavailableException("the call engine is stopping") from None
        try:
            return done.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            if done.cancel():
                raise ServiceUnavailableException(
                    f"the call engine did not answer within {self.timeout_s:g} s; retry"
                ) from None
            return done.result()  # it started just now: its answer follows at once
