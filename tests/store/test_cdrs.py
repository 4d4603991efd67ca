"""Call detail records at rest: Store.write_cdrs/list_cdrs and the background CdrWriter."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.model import CallRecord, Direction, Disposition, LegRecord
from engine.store import DB_FILE, CdrWriter, Store, cdr_to_json, cdrs

T0 = 1_800_000_000.125


def call(call_id: str = "c-1", started_at: float = T0, **over: Any) -> CallRecord:
    base = CallRecord(
        call_id=call_id,
        direction=Direction.INBOUND,
        caller="+4915112345678",
        caller_name="Erika Mustermann",
        callee="+493023125100",
        did="+493023125100",
        trunk="carrier",
        started_at=started_at,
        answered_at=started_at + 4.5,
        ended_at=started_at + 65.25,
        disposition=Disposition.ANSWERED,
        status=200,
        hangup_cause="caller hung up",
        legs=(
            LegRecord("sip:201@10.0.0.1:5062", started_at + 0.1, started_at + 4.5, started_at + 65.25, 200),
            LegRecord("sip:202@10.0.0.2:5062", started_at + 0.1, None, started_at + 4.6, 487),
        ),
    )
    return replace(base, **over)


@pytest.fixture
def writer(store: Store) -> Any:
    w = CdrWriter(store, flush_interval_s=0.02)
    w.start()
    yield w
    w.stop()


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdrs, "_RETRY_DELAYS_S", (0.01, 0.01))


# -- the store -----------------------------------------------------------------------------------------


def test_every_field_round_trips(store: Store) -> None:
    answered = call()
    missed = call(
        "c-2",
        T0 + 10,
        direction=Direction.OUTBOUND,
        caller="201",
        caller_name="",
        callee="+441632960000",
        did=None,
        trunk=None,
        answered_at=None,
        disposition=Disposition.BUSY,
        status=486,
        hangup_cause="486 Busy Here",
        legs=(),
    )
    store.write_cdrs([answered, missed])
    assert store.list_cdrs() == [missed, answered]  # epoch seconds keep their fraction on PostgreSQL too


def test_newest_first_limit_and_since(store: Store) -> None:
    store.write_cdrs([call(f"c-{i:02d}", T0 + i) for i in range(20)] + [call("c-19b", T0 + 19)])
    assert [r.call_id for r in store.list_cdrs(3)] == ["c-19b", "c-19", "c-18"]
    assert len(store.list_cdrs()) == 21 and store.list_cdrs(0) == []
    assert [r.call_id for r in store.list_cdrs(50, since=T0 + 17)] == ["c-19b", "c-19", "c-18", "c-17"]
    assert [r.call_id for r in store.list_cdrs(2, since=T0 + 17)] == ["c-19b", "c-19"]
    with pytest.raises(ValueError, match="negative"):
        store.list_cdrs(-1)


def test_text_the_database_cannot_take_is_stored_with_a_replacement_character(store: Store) -> None:
    undecodable = b"Caf\xe9".decode("utf-8", "surrogateescape")  # how the SIP parser keeps bad bytes
    record = call(
        caller_name=undecodable,
        hangup_cause="x\x00y",
        legs=(LegRecord(f"sip:{undecodable}@h", T0, None, T0 + 1, 480),),
    )
    store.write_cdrs([record])
    (got,) = store.list_cdrs()
    assert got.caller_name == "Caf\ufffd" and got.hangup_cause == "x\ufffdy"
    assert got.legs[0].target == "sip:Caf\ufffd@h"


def test_a_batch_is_all_or_nothing(store: Store) -> None:
    store.write_cdrs([call("c-1")])
    with pytest.raises(sa.exc.IntegrityError):
        store.write_cdrs([call("c-2"), call("c-1")])
    assert [r.call_id for r in store.list_cdrs()] == ["c-1"]
    with pytest.raises(ValueError, match="finite"):
        store.write_cdrs([call("c-3", ended_at=math.nan)])
    with pytest.raises(ValueError, match=r"legs\.answered_at must be a finite"):
        store.write_cdrs([call("c-4", legs=(LegRecord("sip:x@h", T0, math.inf, T0 + 1, 200),))])
    store.write_cdrs([])
    assert len(store.list_cdrs()) == 1


def test_cdr_to_json_has_every_field_and_the_duration() -> None:
    data = cdr_to_json(call())
    assert data["direction"] == "inbound" and data["disposition"] == "answered"
    assert data["duration"] == pytest.approx(60.75)
    assert data["legs"][1] == {
        "target": "sip:202@10.0.0.2:5062",
        "started_at": T0 + 0.1,
        "answered_at": None,
        "ended_at": T0 + 4.6,
        "status": 487,
    }
    assert set(data) == {*CallRecord.__dataclass_fields__, "duration"}
    json.dumps(data)


# -- the writer ----------------------------------------------------------------------------------------


def test_writer_stores_what_it_is_given(store: Store, writer: CdrWriter) -> None:
    for i in range(50):
        writer.write(call(f"c-{i:02d}", T0 + i))
    writer.flush()
    assert [r.call_id for r in store.list_cdrs(100)] == [f"c-{i:02d}" for i in reversed(range(50))]
    assert writer.stats.written == 50 and writer.stats.dropped == 0 and writer.stats.errors == 0
    assert writer.stats.batches < 50  # batched, not a transaction per record


def test_one_bad_record_does_not_sink_its_batch_and_is_logged_whole(
    store: Store, writer: CdrWriter, caplog: pytest.LogCaptureFixture
) -> None:
    store.write_cdrs([call("dup")])
    caplog.set_level(logging.ERROR, logger="engine.store.cdrs")
    for record in (call("a", T0 + 1), call("dup", T0 + 2, caller="999"), call("b", T0 + 3)):
        writer.write(record)
    writer.flush()
    assert [r.call_id for r in store.list_cdrs()] == ["b", "a", "dup"]
    assert writer.stats.dropped == 1 and writer.stats.written == 2
    (lost,) = [r for r in caplog.records if "not stored" in r.getMessage()]
    assert "call dup not stored (refused by the database: IntegrityError" in lost.getMessage()
    logged = json.loads(lost.getMessage().split("the record: ", 1)[1])
    assert logged == cdr_to_json(call("dup", T0 + 2, caller="999"))


def test_a_passing_failure_is_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fast_retries(monkeypatch)
    real = store.write_cdrs
    failures = iter(range(3))

    def flaky(records: Any) -> None:
        if next(failures, None) is not None:
            raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        real(records)

    monkeypatch.setattr(store, "write_cdrs", flaky)
    caplog.set_level(logging.WARNING, logger="engine.store.cdrs")
    w = CdrWriter(store, flush_interval_s=0.01)
    w.start()
    try:
        w.write(call("a", T0 + 1))
        w.write(call("b", T0 + 2))
        w.flush()
    finally:
        w.stop()
    assert [r.call_id for r in store.list_cdrs()] == ["b", "a"]
    assert w.stats.dropped == 0 and w.stats.written == 2 and w.stats.errors == 3


def test_a_record_that_keeps_failing_ends_in_the_log(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fast_retries(monkeypatch)

    def down(records: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("server closed the connection"))

    monkeypatch.setattr(store, "write_cdrs", down)
    caplog.set_level(logging.ERROR, logger="engine.store.cdrs")
    w = CdrWriter(store, flush_interval_s=0.01)
    w.start()
    try:
        w.write(call("a"))
        w.write(call("b"))
        w.flush()
    finally:
        w.stop()
    lost = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(lost) == 2 and all("still failing after 3 attempts" in m for m in lost)
    assert {json.loads(m.split("the record: ", 1)[1])["call_id"] for m in lost} == {"a", "b"}
    assert w.stats.dropped == 2 and w.stats.written == 0


def test_stop_stores_the_queue_and_later_writes_are_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    w = CdrWriter(store, flush_interval_s=5.0)  # stop() must not wait for the interval
    w.start()
    for i in range(10):
        w.write(call(f"c-{i}", T0 + i))
    started = time.perf_counter()
    w.stop()
    assert time.perf_counter() - started < 4
    assert len(store.list_cdrs()) == 10
    caplog.set_level(logging.ERROR, logger="engine.store.cdrs")
    w.write(call("late"))
    assert w.stats.dropped == 1
    assert any("call late not stored (written after stop())" in r.getMessage() for r in caplog.records)
    w.stop()  # idempotent


def test_stop_skips_the_back_off(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cdrs, "_RETRY_DELAYS_S", (30.0, 30.0))

    def down(records: Any) -> None:
        raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(store, "write_cdrs", down)
    w = CdrWriter(store, flush_interval_s=0.01)
    w.start()
    w.write(call("a"))
    time.sleep(0.2)  # the writer is now in its first 30 s back-off
    started = time.perf_counter()
    w.stop()
    assert time.perf_counter() - started < 5
    assert w.stats.dropped == 1


def test_lifecycle_errors(store: Store) -> None:
    w = CdrWriter(store)
    with pytest.raises(RuntimeError, match="not running"):
        w.flush()
    w.start()
    with pytest.raises(RuntimeError, match="twice"):
        w.start()
    w.stop()
    with pytest.raises(ValueError, match="max_batch"):
        CdrWriter(store, max_batch=0)


def test_write_never_waits_for_a_locked_database(tmp_path: Path) -> None:
    """The event loop's side only queues: another writer holding the SQLite lock delays storing, not
    calling ``write`` (SQLite only: the embedded default is where a file lock can be held)."""
    data_dir = tmp_path / "data"
    store = Store.open(data_dir)
    w = CdrWriter(store, flush_interval_s=0.01)
    w.start()
    locker = sqlite3.connect(data_dir / DB_FILE, isolation_level=None, check_same_thread=False)
    try:
        locker.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        for i in range(200):
            w.write(call(f"c-{i}", T0 + i))
        assert time.perf_counter() - started < 0.5
        release = threading.Timer(0.5, locker.execute, ("COMMIT",))
        release.start()
        w.flush(timeout=30)
        release.join()
    finally:
        w.stop()
        locker.close()
    assert len(store.list_cdrs(500)) == 200 and w.stats.dropped == 0
    store.close()
