"""Registrar bindings at rest: the record type and the background writer that persists changes.

The registrar runs on the event loop and must never wait for the database (ARCHITECTURE rule 4). It hands
every change to ``BindingWriter``, a ``QueueWriter`` (``engine.store.writer``: a thread draining a queue in
batches, ``flush`` and ``stop``). Each batch is coalesced per (aor, contact) and committed as one
transaction through ``Store.write_bindings``. A failed batch is written again change by change, and what
keeps failing is retried a few times, then dropped with an error log; the thread keeps running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from engine.sip.registrar import Binding
from engine.sip.transaction import Peer
from engine.store.writer import QueueWriter

if TYPE_CHECKING:
    from engine.store.store import Store

logger = logging.getLogger(__name__)

_UPSERT: Final = 0
_DELETE: Final = 1
_DELETE_AOR: Final = 2
_RETRY_DELAYS_S: Final = (0.05, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class BindingRecord:
    """One row of ``registrations``: a contact bound to an address-of-record until ``expires_at``."""

    aor: str
    contact: str
    expires_at: float  # wall-clock epoch seconds
    q: float
    call_id: str
    cseq: int
    source_transport: str
    source_host: str
    source_port: int
    user_agent: str
    instance_id: str | None = None
    reg_id: int | None = None


def storable(text: str) -> str:
    """Text as the database can take it. The parser keeps undecodable bytes as lone surrogates (so that a
    message re-serialises byte for byte); a database driver refuses those, so they become U+FFFD here."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def binding_record(b: Binding) -> BindingRecord:
    """The row of registrar binding ``b`` (its text made ``storable``)."""
    return BindingRecord(
        aor=storable(b.aor), contact=storable(b.contact), expires_at=b.expires_at, q=b.q,
        call_id=storable(b.call_id), cseq=b.cseq, source_transport=b.source.transport,
        source_host=b.source.host, source_port=b.source.port, user_agent=storable(b.user_agent),
        instance_id=None if b.instance_id is None else storable(b.instance_id), reg_id=b.reg_id,
    )


def binding_from_record(r: BindingRecord) -> Binding:
    """The registrar binding a stored row restores."""
    return Binding(
        aor=r.aor, contact=r.contact, expires_at=r.expires_at, q=r.q, call_id=r.call_id, cseq=r.cseq,
        source=Peer(r.source_transport, r.source_host, r.source_port), user_agent=r.user_agent,
        instance_id=r.instance_id, reg_id=r.reg_id,
    )


@dataclass(slots=True)
class WriterStats:
    """Counters kept by the writer thread (read them after ``flush``)."""

    batches: int = 0
    upserts: int = 0  # rows upserted after coalescing
    deletes: int = 0
    aor_deletes: int = 0
    errors: int = 0
    dropped: int = 0  # changes lost: a batch that failed every retry, or a change made after stop()
    thread_ident: int | None = None
    commit_threads: set[int] = field(default_factory=set)


class _Batch:
    """Changes collected from the queue, coalesced: the last change per (aor, contact) wins, and
    ``delete_aor`` discards earlier changes to that AOR and runs before the ones that follow it."""

    __slots__ = ("aor_deletes", "changes", "size")

    def __init__(self) -> None:
        self.changes: dict[str, dict[str, BindingRecord | None]] = {}
        self.aor_deletes: set[str] = set()
        self.size = 0

    def add(self, item: tuple[Any, ...]) -> None:
        self.size += 1
        kind = item[0]
        if kind == _UPSERT:
            record: BindingRecord = item[1]
            self.changes.setdefault(record.aor, {})[record.contact] = record
        elif kind == _DELETE:
            self.changes.setdefault(item[1], {})[item[2]] = None
        else:
            self.changes.pop(item[1], None)
            self.aor_deletes.add(item[1])

    def split(self) -> tuple[list[BindingRecord], list[tuple[str, str]], list[str]]:
        upserts: list[BindingRecord] = []
        deletes: list[tuple[str, str]] = []
        for aor, contacts in self.changes.items():
            for contact, record in contacts.items():
                if record is None:
                    deletes.append((aor, contact))
                else:
                    upserts.append(record)
        return upserts, deletes, sorted(self.aor_deletes)


class BindingWriter(QueueWriter[tuple[Any, ...], _Batch]):
    """Persists registrar changes from a background thread (``QueueWriter``); every public method but
    ``flush``/``stop`` returns at once without touching the database."""

    def __init__(self, store: Store, *, flush_interval_s: float = 0.2, max_batch: int = 5000) -> None:
        super().__init__("binding writer", flush_interval_s=flush_interval_s, max_batch=max_batch)
        self._store = store
        self.stats = WriterStats()

    def upsert(self, record: BindingRecord) -> None:
        """Insert or replace the binding (record.aor, record.contact). Non-blocking."""
        if not self._put((_UPSERT, record)):
            self._late("upsert")

    def delete(self, aor: str, contact: str) -> None:
        """Remove one binding. Non-blocking."""
        if not self._put((_DELETE, aor, contact)):
            self._late("delete")

    def delete_aor(self, aor: str) -> None:
        """Remove every binding of ``aor`` (REGISTER with ``Contact: *``). Non-blocking."""
        if not self._put((_DELETE_AOR, aor)):
            self._late("delete_aor")

    def _late(self, what: str) -> None:
        self.stats.dropped += 1
        logger.warning("binding writer: %s after stop() dropped", what)

    def _on_thread_start(self) -> None:
        self.stats.thread_ident = threading.get_ident()

    def _unexpected(self) -> None:
        self.stats.errors += 1

    def _new_batch(self) -> _Batch:
        return _Batch()

    def _add(self, batch: _Batch, item: tuple[Any, ...]) -> int:
        batch.add(item)
        return batch.size

    def _commit(self, batch: _Batch) -> None:
        upserts, deletes, aors = batch.split()
        for attempt, delay in enumerate((*_RETRY_DELAYS_S, None), start=1):
            try:
                self._store.write_bindings(upserts, deletes, aors)
            except Exception:
                self.stats.errors += 1
                logger.exception(
                    "binding writer: committing %d changes failed (attempt %d)",
                    len(upserts) + len(deletes) + len(aors), attempt,
                )
                if attempt == 1 and len(upserts) + len(deletes) + len(aors) > 1:
                    # One bad row must not sink the others: write them one by one and keep retrying only
                    # the ones that fail (if all fail, the cause is likely transient, e.g. a locked file).
                    upserts, deletes, aors = self._one_by_one(upserts, deletes, aors)
                    if not (upserts or deletes or aors):
                        return
                if delay is not None:
                    self._back_off(delay)
                continue
            self._count(upserts, deletes, aors)
            return
        left = len(upserts) + len(deletes) + len(aors)
        self.stats.dropped += left
        logger.error("binding writer: gave up on %d changes after %d attempts", left, attempt)

    def _count(self, upserts: Sequence[BindingRecord], deletes: Sequence[tuple[str, str]],
               aors: Sequence[str]) -> None:
        self.stats.batches += 1
        self.stats.upserts += len(upserts)
        self.stats.deletes += len(deletes)
        self.stats.aor_deletes += len(aors)
        self.stats.commit_threads.add(threading.get_ident())

    def _one_by_one(
        self, upserts: list[BindingRecord], deletes: list[tuple[str, str]], aors: list[str]
    ) -> tuple[list[BindingRecord], list[tuple[str, str]], list[str]]:
        """Write each change in its own transaction (AOR deletes, deletes, upserts: the batch order);
        return the ones that failed."""
        failed_aors = [a for a in aors if not self._try((), (), [a])]
        failed_deletes = [d for d in deletes if not self._try((), [d], ())]
        failed_upserts = [u for u in upserts if not self._try([u], (), ())]
        self._count(
            upserts[: len(upserts) - len(failed_upserts)],  # counts only: which ones does not matter
            deletes[: len(deletes) - len(failed_deletes)],
            aors[: len(aors) - len(failed_aors)],
        )
        return failed_upserts, failed_deletes, failed_aors

    def _try(self, upserts: Sequence[BindingRecord], deletes: Sequence[tuple[str, str]],
             aors: Sequence[str]) -> bool:
        try:
            self._store.write_bindings(upserts, deletes, aors)
        except Exception:
            logger.warning("binding writer: one change failed on its own", exc_info=True)
            return False
        return True
