"""``Store.config_snapshot``: everything the running engine reads of the configuration in one read
transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.store import Store, load_company_file
from tests.store.conftest import OpenStore

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config" / "example-company.yaml"


def test_the_snapshot_is_what_the_single_reads_return(store: Store) -> None:
    store.import_company(load_company_file(EXAMPLE))
    snap = store.config_snapshot()
    assert snap.version == store.config_version()
    assert snap.company == store.company()
    assert list(snap.users) == store.users()
    assert list(snap.lines) == store.lines()
    assert list(snap.numbers) == store.numbers()
    assert list(snap.trunks) == store.trunks()
    assert list(snap.dial_plans) == store.dial_plans()
    assert list(snap.routing_objects) == store.routing_objects()
    assert dict(snap.credentials) == store.sip_credentials()
    assert snap.no_voicemail == store.lines_without_voicemail()
    assert dict(snap.voicemail_email) == store.voicemail_email_targets()
    assert snap.lines and snap.credentials and snap.dial_plans  # the example has something of each


def test_the_snapshot_is_read_in_one_transaction(store: Store) -> None:
    store.import_company(load_company_file(EXAMPLE))
    begins: list[Any] = []

    def began(conn: Any) -> None:
        begins.append(conn)

    sa.event.listen(store.engine, "begin", began)
    try:
        store.config_snapshot()
    finally:
        sa.event.remove(store.engine, "begin", began)
    assert len(begins) == 1


def test_a_snapshot_never_mixes_two_versions(open_store: OpenStore) -> None:
    """Users added from another connection while snapshots are read: every snapshot's credentials, lines
    and version belong together (on PostgreSQL only REPEATABLE READ guarantees it)."""
    writer, reader = open_store(), open_store()
    writer.add_user("A", "One", None, "201", "pw-201")
    done = threading.Event()

    def add() -> None:
        try:
            for i in range(30):
                writer.add_user("U", str(i), None, str(300 + i), "pw-12345678")
        finally:
            done.set()

    thread = threading.Thread(target=add)
    thread.start()
    seen: set[int] = set()
    try:
        while not done.is_set() or not seen:
            snap = reader.config_snapshot()
            assert set(snap.credentials) == {line.extension for line in snap.lines}
            assert len(snap.lines) == len(snap.users) == snap.version  # one user and one line per version
            seen.add(snap.version)
    finally:
        thread.join()
    assert reader.config_snapshot().version == 31
