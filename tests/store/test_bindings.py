"""Registrar bindings at rest: Store.write_bindings/load_bindings and the background BindingWriter."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from engine.store import BindingRecord, BindingWriter, Store, bindings

REPO_ROOT = Path(__file__).resolve().parents[2]


NOW = 1_800_000_000.0


def rec(aor: str = "sip:201@pbx.test", contact: str = "sip:201@10.0.0.1:5060", **over: Any) -> BindingRecord:
    base = BindingRecord(
        aor=aor,
        contact=contact,
        expires_at=NOW + 3600,
        q=1.0,
        call_id="cid-1",
        cseq=1,
        source_transport="udp",
        source_host="10.0.0.1",
        source_port=5060,
        user_agent="test/1.0",
    )
    return replace(base, **over)


@pytest.fixture
def writer(store: Store) -> Any:
    w = BindingWriter(store, flush_interval_s=0.05)
    w.start()
    yield w
    w.stop()


def test_write_and_read_back_every_field(store: Store) -> None:
    full = rec(
        instance_id="<urn:uuid:00000000-0000-0000-0000-000000000001>", reg_id=1, q=0.5, expires_at=NOW + 0.25
    )
    store.write_bindings([full, rec(contact="sip:201@10.0.0.2:5060")])
    got = store.list_bindings()
    assert got[0] == full  # epoch seconds keep their fraction (DOUBLE PRECISION on PostgreSQL)
    assert len(got) == 2 and got[1].instance_id is None and got[1].reg_id is None


def test_load_bindings_returns_live_ones_and_purges_expired(store: Store) -> None:
    store.write_bindings(
        [
            rec(contact="sip:live@h", expires_at=NOW + 60),
            rec(contact="sip:dead@h", expires_at=NOW - 1),
            rec(contact="sip:edge@h", expires_at=NOW),
        ]
    )
    assert [r.contact for r in store.load_bindings(NOW)] == ["sip:live@h"]
    assert [r.contact for r in store.list_bindings()] == ["sip:live@h"]


def test_write_bindings_applies_aor_deletes_then_deletes_then_upserts(store: Store) -> None:
    store.write_bindings([rec(contact="sip:a@h"), rec(contact="sip:b@h"), rec(aor="sip:202@pbx.test")])
    store.write_bindings(
        [rec(contact="sip:c@h", cseq=9)],
        deletes=[("sip:202@pbx.test", rec().contact)],
        delete_aors=["sip:201@pbx.test"],
    )
    assert [(r.aor, r.contact, r.cseq) for r in store.list_bindings()] == [("sip:201@pbx.test", "sip:c@h", 9)]


@pytest.mark.parametrize("count", [1, 7, 8, 9, 63, 64, 65, 64 + 8 + 1, 200])
def test_write_bindings_writes_any_count_of_rows_in_few_statements(store: Store, count: int) -> None:
    """Upserts go in statements of 64, 8 and 1 rows (few sqlite3_step calls, each of which hands the GIL
    over); whatever the count, every row lands, a row already stored is updated, and when a key repeats in
    one call its last change wins, as it did row by row."""
    store.write_bindings([rec(contact="sip:0@h", cseq=1)])
    executed: list[int] = []  # rows per statement run
    width = len(sa.inspect(store.engine).get_columns("registrations"))

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if statement.startswith("INSERT"):
            for params in parameters if many else [parameters]:
                executed.append(len(params) // width)

    upserts = [rec(contact=f"sip:{i}@h", cseq=i + 10) for i in range(count)]
    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.write_bindings([*upserts, rec(contact="sip:0@h", cseq=99)])
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert {r.contact: r.cseq for r in store.list_bindings()} == \
        {f"sip:{i}@h": i + 10 for i in range(count)} | {"sip:0@h": 99}
    assert sum(executed) == count  # "sip:0@h" once, with its last change
    assert len(executed) == count // 64 + count % 64 // 8 + count % 8
    assert executed == sorted(executed, reverse=True)


def test_ten_thousand_upserts_never_touch_the_database_on_the_caller_thread(store: Store) -> None:
    threads: set[int] = set()

    def seen(*_args: Any) -> None:
        threads.add(threading.get_ident())

    event.listen(store.engine, "before_cursor_execute", seen)
    w = BindingWriter(store)
    w.start()
    try:
        for i in range(10_000):
            w.upsert(rec(aor=f"sip:{i}@pbx.test", contact=f"sip:{i}@10.0.0.1:5060", cseq=i))
        assert threading.get_ident() not in threads  # enqueueing did no database work here
        w.flush()
        assert threading.get_ident() not in threads
        assert threads == {w.stats.thread_ident} == w.stats.commit_threads
    finally:
        w.stop()
        event.remove(store.engine, "before_cursor_execute", seen)
    rows = store.list_bindings()
    assert len(rows) == 10_000 and w.stats.upserts == 10_000
    assert {r.cseq for r in rows} == set(range(10_000))
    assert w.stats.batches >= 2  # max_batch=5000 splits them


def test_repeated_upserts_coalesce_within_a_batch(store: Store) -> None:
    w = BindingWriter(store, flush_interval_s=30)
    w.start()
    try:
        for cseq in range(1, 101):
            w.upsert(rec(cseq=cseq))
        w.upsert(rec(contact="sip:other@h"))
        w.flush()
    finally:
        w.stop()
    assert (w.stats.batches, w.stats.upserts) == (1, 2)
    assert {r.contact: r.cseq for r in store.list_bindings()} == {rec().contact: 100, "sip:other@h": 1}


def test_a_backlog_is_written_in_full_batches_without_waiting(store: Store) -> None:
    w = BindingWriter(store, flush_interval_s=30, max_batch=100)
    w.start()
    try:
        for i in range(1000):
            w.upsert(rec(contact=f"sip:{i}@h"))
        w.flush()  # would time out if each of the ten batches waited out the 30 s interval
    finally:
        w.stop()
    assert w.stats.batches == 10 and len(store.list_bindings()) == 1000


def test_delete_and_delete_aor_in_order(store: Store, writer: BindingWriter) -> None:
    writer.upsert(rec(contact="sip:c1@h"))
    writer.upsert(rec(contact="sip:c2@h"))
    writer.upsert(rec(aor="sip:202@pbx.test", contact="sip:x@h"))
    writer.flush()
    writer.delete("sip:201@pbx.test", "sip:c1@h")
    writer.flush()
    assert [r.contact for r in store.list_bindings()] == ["sip:c2@h", "sip:x@h"]
    # Within one batch: the AOR delete wipes what came before it, not what follows.
    writer.upsert(rec(contact="sip:c3@h"))
    writer.delete_aor("sip:201@pbx.test")
    writer.upsert(rec(contact="sip:c4@h"))
    writer.upsert(rec(aor="sip:202@pbx.test", contact="sip:y@h"))
    writer.delete("sip:202@pbx.test", "sip:y@h")
    writer.flush()
    assert [(r.aor, r.contact) for r in store.list_bindings()] == [
        ("sip:201@pbx.test", "sip:c4@h"),
        ("sip:202@pbx.test", "sip:x@h"),
    ]


def test_a_failed_commit_is_logged_and_retried(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = store.write_bindings
    failures = [RuntimeError("database is locked")]

    def flaky(*args: Any) -> None:
        if failures:
            raise failures.pop()
        real(*args)

    monkeypatch.setattr(store, "write_bindings", flaky)
    monkeypatch.setattr(bindings, "_RETRY_DELAYS_S", (0.0,) * 5)
    w = BindingWriter(store)
    w.start()
    try:
        with caplog.at_level(logging.ERROR, logger="engine.store.bindings"):
            w.upsert(rec())
            w.flush()
    finally:
        w.stop()
    assert [r.contact for r in store.list_bindings()] == [rec().contact]
    assert w.stats.errors == 1 and w.stats.dropped == 0
    assert "committing 1 changes failed" in caplog.text


def test_a_batch_that_keeps_failing_is_dropped_and_the_writer_lives_on(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = store.write_bindings
    broken = [True]

    def failing(*args: Any) -> None:
        if broken[0]:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
        real(*args)

    monkeypatch.setattr(store, "write_bindings", failing)
    monkeypatch.setattr(bindings, "_RETRY_DELAYS_S", (0.0,) * 5)
    w = BindingWriter(store)
    w.start()
    try:
        with caplog.at_level(logging.ERROR, logger="engine.store.bindings"):
            w.upsert(rec(contact="sip:lost@h"))
            w.flush()
        assert w.stats.dropped == 1 and w.stats.errors == 6
        assert "gave up on 1 changes after 6 attempts" in caplog.text
        broken[0] = False
        w.upsert(rec(contact="sip:kept@h"))
        w.flush()
    finally:
        w.stop()
    assert [r.contact for r in store.list_bindings()] == ["sip:kept@h"]


def test_stop_commits_the_tail_and_later_changes_are_dropped(store: Store) -> None:
    w = BindingWriter(store, flush_interval_s=30)
    w.start()
    w.upsert(rec())
    w.stop()
    assert len(store.list_bindings()) == 1
    w.upsert(rec(contact="sip:late@h"))
    assert w.stats.dropped == 1
    with pytest.raises(RuntimeError):
        w.flush()


def test_flush_needs_a_running_writer(store: Store) -> None:
    with pytest.raises(RuntimeError):
        BindingWriter(store).flush()


_CHILD = textwrap.dedent(
    """
    import os, sys
    from engine.store import BindingRecord, BindingWriter, Store
    store = Store.open(sys.argv[1])
    writer = BindingWriter(store)
    writer.start()
    mode = sys.argv[2]
    n = 0
    while True:
        for _ in range(500):
            writer.upsert(BindingRecord(f"sip:{n}@pbx.test", f"sip:{n}@10.0.0.1", 1.9e9, 1.0, "c", n,
                                        "udp", "10.0.0.1", 5060, "ua"))
            n += 1
        writer.flush()
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
        if mode == "exit":
            os._exit(0)  # no close(), no stop(): as abrupt as a crash for SQLite
    """
)


def test_flushed_bindings_survive_an_abrupt_exit(data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir), "exit"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "500"
    store = Store.open(data_dir)
    try:
        assert len(store.load_bindings(NOW)) == 500
    finally:
        store.close()


def test_sigkill_while_writing_keeps_every_flushed_binding_and_a_sound_database(data_dir: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir), "loop"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    flushed = 0
    deadline = time.monotonic() + 60
    while flushed < 5000 and time.monotonic() < deadline:
        flushed = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    assert flushed >= 5000
    store = Store.open(data_dir)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert len(store.list_bindings()) >= flushed
    finally:
        store.close()
