"""A writer thread behind a queue: how the event loop hands work to the database without waiting for it.

The event loop must never wait for the database (ARCHITECTURE rule 4). A ``QueueWriter`` takes items with
``_put``, which only appends to a ``queue.SimpleQueue``. One thread drains the queue in batches: after the
first item it waits ``flush_interval_s`` (cut short by ``flush`` or ``stop``), then takes what piled up
without blocking, up to ``max_batch`` items (no wait while a backlog remains: one wake-up per batch rather
than one per item, so the thread does not take the GIL from the event loop for every change). Each batch
goes to ``_commit``, which the subclass writes (``BindingWriter``: registrar changes, coalesced;
``CdrWriter``: call records). ``flush`` is a marker in the same queue, so it returns once everything put
before it is committed; ``stop`` commits what is queued and ends the thread. An exception out of
``_commit`` is logged and the thread goes on: it never dies silently.
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from typing import Final, Generic, TypeVar

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
BatchT = TypeVar("BatchT")


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP: Final = object()


class QueueWriter(ABC, Generic[ItemT, BatchT]):
    """The queue, the thread, batching, ``flush`` and ``stop``; subclasses say what a batch is and how it
    is committed.

    Args:
        what: the writer's name in logs and in its thread's name ("binding writer", "CDR writer").
        flush_interval_s: how long the first item of a batch waits for others.
        max_batch: the most items in one batch.

    Raises:
        ValueError: ``max_batch`` is below 1.
    """

    def __init__(self, what: str, *, flush_interval_s: float, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.what = what
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[ItemT | _Flush | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._wake = threading.Event()  # set by flush()/stop(): end the batching wait now
        self._hurry = threading.Event()  # set by stop(): retries skip their back-off
        self._backlog = False  # the last batch was full: do not wait before the next

    # -- what subclasses provide --------------------------------------------------------------------------
    @abstractmethod
    def _new_batch(self) -> BatchT: ...

    @abstractmethod
    def _add(self, batch: BatchT, item: ItemT) -> int:
        """Add ``item``; returns the batch's size in items."""

    @abstractmethod
    def _commit(self, batch: BatchT) -> None:
        """Write the batch (in the writer thread)."""

    def _on_thread_start(self) -> None:
        """Called first in the writer thread."""

    # -- the public side ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (once).

        Raises:
            RuntimeError: already started, or stopped.
        """
        if self._thread is not None or self._stopped:
            raise RuntimeError(f"{self.what}: start() called twice")
        name = "pbx-" + self.what.lower().replace(" ", "-")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def flush(self, timeout: float = 5.0) -> None:
        """Block until everything put so far is committed (or given up on, see the log).

        Raises:
            RuntimeError: the writer thread is not running.
            TimeoutError: not done within ``timeout`` seconds.
        """
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError(f"the {self.what} is not running")
        marker = _Flush()
        self._queue.put(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            raise TimeoutError(f"{self.what} did not flush within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued and end the thread (retries skip their back-off). Idempotent."""
        thread = self._thread
        if thread is None or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        self._queue.put(_STOP)
        self._wake.set()
        self._hurry.set()
        thread.join(timeout)
        if thread.is_alive():
            logger.error("%s did not finish within %g s; queued changes may be lost", self.what, timeout)

    def _put(self, item: ItemT) -> bool:
        """Queue ``item``; False (nothing queued) after ``stop``. Non-blocking: safe on the event loop."""
        if self._stopped:
            return False
        self._queue.put(item)
        return True

    def _back_off(self, seconds: float) -> None:
        """Sleep between retries, unless ``stop`` hurries the writer."""
        self._hurry.wait(seconds)

    # -- the thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        self._on_thread_start()
        while True:
            try:
                batch, size, markers, stop = self._collect()
                if size:
                    self._commit(batch)
                for marker in markers:
                    marker.done.set()
                if stop:
                    return
            except Exception:
                logger.exception("%s: unexpected error", self.what)
                self._unexpected()

    def _unexpected(self) -> None:
        """Count an unexpected error (subclasses keep the counter in their stats)."""

    def _collect(self) -> tuple[BatchT, int, list[_Flush], bool]:
        batch = self._new_batch()
        size = 0
        markers: list[_Flush] = []
        item = self._queue.get()
        if not isinstance(item, _Flush) and item is not _STOP and not self._backlog:
            self._wake.wait(self._interval)
            self._wake.clear()
        self._backlog = False
        while True:
            if isinstance(item, _Flush):
                markers.append(item)
                return batch, size, markers, False
            if item is _STOP:
                return batch, size, markers, True
            size = self._add(batch, item)  # type: ignore[arg-type]  # anything else is an ItemT
            if size >= self._max_batch:
                self._backlog = True
                return batch, size, markers, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, size, markers, False
