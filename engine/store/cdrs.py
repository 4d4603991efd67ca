"""Call detail records at rest: their row and JSON forms, and the background writer that stores them.

The call layer runs on the event loop and must never wait for the database (ARCHITECTURE rule 4). When a
call ends it hands its ``CallRecord`` to ``CdrWriter.write``, a ``QueueWriter`` (``engine.store.writer``: a
thread draining a queue in batches, ``flush`` and ``stop``) that inserts each batch in one transaction
through ``Store.write_cdrs``.

A CDR is a bill and an audit trail, so none may disappear without a trace. A batch that fails is written
again row by row, so one bad record cannot sink the others. A record that keeps failing for a reason that
may pass (a locked SQLite file, a PostgreSQL restart) is retried with back-off; one the database refuses
for good (a duplicate ``call_id``, a time that is not a number), or that still fails after the last retry,
is logged at ERROR with all its fields as JSON: it can be recovered from the log. ``stop`` commits what is
queued; a record written after ``stop`` is logged the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from engine.model.cdr import CallRecord, Direction, Disposition, LegRecord, QueueVisit
from engine.store.writer import QueueWriter

if TYPE_CHECKING:
    from engine.store.store import Store

logger = logging.getLogger(__name__)

_RETRY_DELAYS_S: Final = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
_LEG_FIELDS: Final = tuple(f.name for f in dataclasses.fields(LegRecord))
# Refusals that a retry cannot change: the row itself is wrong.
_PERMANENT: Final = (sa.exc.IntegrityError, sa.exc.DataError, ValueError, TypeError)


def storable(text: str) -> str:
    """Text as every database can take it: lone surrogates (undecodable bytes the SIP parser keeps so a
    message re-serialises byte for byte) and NUL (PostgreSQL refuses it in text) become U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\x00", "\ufffd")


def _finite(value: float, name: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of epoch seconds, got {value!r}")
    return value


def cdr_row(record: CallRecord) -> dict[str, Any]:
    """The ``cdrs`` table row of a record (text made storable, legs as JSON text).

    Raises:
        ValueError: a time is NaN or infinite.
    """
    legs = [_leg_json(leg) for leg in record.legs]
    return {
        "call_id": storable(record.call_id),
        "direction": record.direction.value,
        "caller": storable(record.caller),
        "caller_name": storable(record.caller_name),
        "callee": storable(record.callee),
        "did": None if record.did is None else storable(record.did),
        "trunk": None if record.trunk is None else storable(record.trunk),
        "started_at": _finite(record.started_at, "started_at"),
        "answered_at": None if record.answered_at is None else _finite(record.answered_at, "answered_at"),
        "ended_at": _finite(record.ended_at, "ended_at"),
        "disposition": record.disposition.value,
        "status": record.status,
        "hangup_cause": storable(record.hangup_cause),
        "legs": json.dumps(legs, ensure_ascii=False, allow_nan=False),
        "path": json.dumps([storable(step) for step in record.path], ensure_ascii=False),
        "queues": json.dumps([_visit_json(v) for v in record.queues], ensure_ascii=False, allow_nan=False),
    }


def _visit_json(visit: QueueVisit) -> dict[str, Any]:
    return {
        "queue": storable(visit.queue), "joined_at": _finite(visit.joined_at, "queues.joined_at"),
        "left_at": _finite(visit.left_at, "queues.left_at"), "outcome": visit.outcome,
        "agent": None if visit.agent is None else storable(visit.agent),
    }


def _leg_json(leg: LegRecord) -> dict[str, Any]:
    # Every field of LegRecord by name, so a field added there is stored without a schema change (legs are
    # JSON text); reading tolerates its absence in older rows as long as it has a default.
    out: dict[str, Any] = {}
    for name in _LEG_FIELDS:
        value = getattr(leg, name)
        if isinstance(value, str):
            value = storable(value)
        elif isinstance(value, float):
            value = _finite(value, f"legs.{name}")
        out[name] = value
    return out


def cdr_from_row(row: sa.RowMapping) -> CallRecord:
    """The record a ``cdrs`` row holds (the inverse of ``cdr_row`` for storable text)."""
    answered = row["answered_at"]
    return CallRecord(
        call_id=row["call_id"],
        direction=Direction(row["direction"]),
        caller=row["caller"],
        caller_name=row["caller_name"],
        callee=row["callee"],
        did=row["did"],
        trunk=row["trunk"],
        started_at=float(row["started_at"]),
        answered_at=None if answered is None else float(answered),
        ended_at=float(row["ended_at"]),
        disposition=Disposition(row["disposition"]),
        status=int(row["status"]),
        hangup_cause=row["hangup_cause"],
        legs=tuple(
            LegRecord(**{k: leg[k] for k in _LEG_FIELDS if k in leg}) for leg in json.loads(row["legs"])
        ),
        path=tuple(json.loads(row["path"])),
        queues=tuple(QueueVisit(**v) for v in json.loads(row["queues"])),
    )


def cdr_to_json(record: CallRecord) -> dict[str, Any]:
    """Every field of a record as JSON data, plus ``duration`` (talk time, seconds): for ``pbx cdr list
    --json``, the API and the error log of records that could not be stored."""
    data = dataclasses.asdict(record)
    data["legs"] = list(data["legs"])
    data["path"] = list(data["path"])
    data["queues"] = list(data["queues"])
    data["direction"] = record.direction.value
    data["disposition"] = record.disposition.value
    data["duration"] = record.duration
    return data


@dataclass(slots=True)
class CdrWriterStats:
    """Counters kept by the writer thread (read them after ``flush``)."""

    batches: int = 0  # transactions committed
    written: int = 0  # records stored
    errors: int = 0  # failed attempts (a batch or a single record)
    dropped: int = 0  # records given up on: each one is in the ERROR log as JSON


class CdrWriter(QueueWriter[CallRecord, list[CallRecord]]):
    """Stores call records from a background thread (``QueueWriter``); ``write`` returns at once without
    touching the database."""

    def __init__(self, store: Store, *, flush_interval_s: float = 0.2, max_batch: int = 500) -> None:
        super().__init__("CDR writer", flush_interval_s=flush_interval_s, max_batch=max_batch)
        self._store = store
        self.stats = CdrWriterStats()

    def write(self, record: CallRecord) -> None:
        """Queue a record for storing. Non-blocking: safe on the event loop. After ``stop`` the record is
        logged at ERROR instead (never dropped silently)."""
        if not self._put(record):
            self.stats.dropped += 1
            self._log_lost(record, "written after stop()")

    def _unexpected(self) -> None:
        self.stats.errors += 1

    def _new_batch(self) -> list[CallRecord]:
        return []

    def _add(self, batch: list[CallRecord], item: CallRecord) -> int:
        batch.append(item)
        return len(batch)

    def _commit(self, batch: list[CallRecord]) -> None:
        try:
            self._store.write_cdrs(batch)
        except Exception:
            self.stats.errors += 1
            logger.exception("CDR writer: storing %d records failed; retrying them one by one", len(batch))
        else:
            self.stats.batches += 1
            self.stats.written += len(batch)
            return
        pending = batch
        for attempt, delay in enumerate((*_RETRY_DELAYS_S, None), start=1):
            retry: list[CallRecord] = []
            last: Exception | None = None
            for record in pending:
                try:
                    self._store.write_cdrs([record])
                except _PERMANENT as exc:
                    self.stats.errors += 1
                    self.stats.dropped += 1
                    self._log_lost(record, f"refused by the database: {exc.__class__.__name__}: {exc}")
                except Exception as exc:
                    self.stats.errors += 1
                    retry.append(record)
                    last = exc
                else:
                    self.stats.batches += 1
                    self.stats.written += 1
            pending = retry
            if not pending:
                return
            logger.warning(
                "CDR writer: %d records failed on their own (attempt %d): %s: %s",
                len(pending), attempt, last.__class__.__name__, last,
            )
            if delay is not None:
                self._back_off(delay)
        self.stats.dropped += len(pending)
        for record in pending:
            self._log_lost(record, f"still failing after {len(_RETRY_DELAYS_S) + 1} attempts")

    @staticmethod
    def _log_lost(record: CallRecord, why: str) -> None:
        logger.error(
            "CDR writer: call %s not stored (%s); the record: %s",
            record.call_id,
            why,
            json.dumps(cdr_to_json(record), ensure_ascii=False, allow_nan=True),
        )
