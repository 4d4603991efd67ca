"""Store fixtures: every store test runs on a real SQLite file, and on PostgreSQL when it is reachable.

PostgreSQL is a hard requirement (issue 6): a case that cannot reach it fails, it does not skip. It is
``PBX_TEST_POSTGRES_URL`` when set (``scripts/test.sh`` sets it when it had to install and start a server of
its own), else the machine's server at 127.0.0.1:5432 (trust auth, database ``test``, user ``postgres``).
Each PostgreSQL case gets a schema of its own, dropped afterwards. ``tests/api`` reuses ``db_url``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.store import Store

PG_BASE_URL = os.environ.get("PBX_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"

OpenStore = Callable[[], Store]


def _pg_reachable() -> bool:
    url = sa.engine.make_url(PG_BASE_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the default SQLite file in the data dir, or a PostgreSQL URL bound to a fresh schema."""
    if request.param == "sqlite":
        yield None
        return
    if importlib.util.find_spec("psycopg") is None:
        pytest.fail("psycopg is not installed: pip install -e '.[test]'", pytrace=False)
    if not _pg_reachable():
        where = sa.engine.make_url(PG_BASE_URL).render_as_string(hide_password=True)
        pytest.fail(f"PostgreSQL is not reachable at {where} (scripts/test.sh provides one)", pytrace=False)
    schema_name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema_name}")
    try:
        yield f"{PG_BASE_URL}?options=-csearch_path%3D{schema_name}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema_name} CASCADE")
        admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_store(data_dir: Path, db_url: str | None) -> Iterator[OpenStore]:
    """Opens (again) the store under test; every store opened is closed at teardown."""
    opened: list[Store] = []

    def _open() -> Store:
        store = Store.open(data_dir, db_url)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()
