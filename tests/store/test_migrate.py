"""Opening a store: a new database, pragmas, reopening, upgrades, and refusing a newer schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.store import DB_FILE, SCHEMA_VERSION, SchemaVersionError, Store, StoreError, migrate, schema
from tests.store.conftest import OpenStore


def _version(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(schema.schema_version.c.version)).scalar_one())


def test_new_store_is_created_at_the_current_version(store: Store, data_dir: Path) -> None:
    assert data_dir.is_dir()
    assert _version(store) == SCHEMA_VERSION
    assert set(sa.inspect(store.engine).get_table_names()) >= {
        "schema_version",
        "config_version",
        "company",
        "users",
        "lines",
        "numbers",
        "dial_plans",
        "registrations",
    }
    assert store.is_empty() and store.config_version() == 0


def test_sqlite_runs_in_wal_with_foreign_keys(data_dir: Path) -> None:
    store = Store.open(data_dir)
    try:
        assert (data_dir / DB_FILE).is_file()
        with store.engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
        assert pragma == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 10_000}
    finally:
        store.close()


def test_reopening_keeps_data_and_version(open_store: OpenStore) -> None:
    first = open_store()
    first.add_user("Anna", "Schmidt", None, "201", "pw")
    first.close()
    again = open_store()
    assert [line.extension for line in again.lines()] == ["201"]
    assert _version(again) == SCHEMA_VERSION and again.config_version() == 1


def test_a_newer_schema_is_refused_and_left_alone(open_store: OpenStore) -> None:
    store = open_store()
    with store.engine.begin() as conn:
        conn.execute(sa.update(schema.schema_version).values(version=SCHEMA_VERSION + 7))
    store.close()
    with pytest.raises(SchemaVersionError) as err:
        open_store()
    assert (err.value.found, err.value.supported) == (SCHEMA_VERSION + 7, SCHEMA_VERSION)
    assert "newer than this engine supports" in str(err.value)
    with store.engine.connect() as conn:  # the refused database was not touched
        assert conn.execute(sa.select(schema.schema_version.c.version)).scalar_one() == SCHEMA_VERSION + 7


def test_tables_without_a_version_are_not_ours(open_store: OpenStore) -> None:
    store = open_store()
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE schema_version"))
    store.close()
    with pytest.raises(StoreError, match="not a pbx-engine database"):
        open_store()


def test_an_old_schema_is_upgraded_step_by_step(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store().close()

    def add_note(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN note TEXT"))

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(migrate.UPGRADES, SCHEMA_VERSION, add_note)
    upgraded = open_store()
    assert _version(upgraded) == SCHEMA_VERSION + 1
    assert "note" in {c["name"] for c in sa.inspect(upgraded.engine).get_columns("users")}


def test_a_failing_upgrade_changes_nothing(open_store: OpenStore, monkeypatch: pytest.MonkeyPatch) -> None:
    open_store().close()

    def half_done(conn: sa.Connection) -> None:
        conn.execute(sa.text("ALTER TABLE users ADD COLUMN note TEXT"))
        raise RuntimeError("step failed")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(migrate.UPGRADES, SCHEMA_VERSION, half_done)
    with pytest.raises(RuntimeError, match="step failed"):
        open_store()
    monkeypatch.undo()
    store = open_store()
    assert _version(store) == SCHEMA_VERSION
    assert "note" not in {c["name"] for c in sa.inspect(store.engine).get_columns("users")}


def test_a_version_without_upgrade_path_is_an_error(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store().close()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=f"no upgrade from schema version {SCHEMA_VERSION}"):
        open_store()
