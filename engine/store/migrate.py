"""Versioned schema migrations: create a new database, upgrade an old one, refuse a newer one.

The database records its version in ``schema_version`` (one row). ``migrate`` runs inside the caller's
write transaction, so a migration is all-or-nothing on both SQLite (whose DDL is transactional) and
PostgreSQL (serialised across processes by an advisory lock).

We use this small runner instead of Alembic: the engine migrates itself on open, from package code, with
no ``alembic.ini`` or script directory to ship, and there is one linear history. To change the schema:
edit ``engine.store.schema``, bump ``SCHEMA_VERSION`` and add ``UPGRADES[old] = step`` that turns a
database of version ``old`` into ``old + 1`` with portable ``ALTER``/``CREATE`` statements. A new database
is created straight from the current tables, so a test should check that upgrading a saved old database
gives the same tables as a fresh one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa

from engine.store import schema
from engine.store.errors import SchemaVersionError, StoreError

logger = logging.getLogger(__name__)

UPGRADES: Final[dict[int, Callable[[sa.Connection], None]]] = {}
_PG_LOCK_KEY: Final = 0x70627845  # "pbxE": one advisory lock id for schema changes


def migrate(conn: sa.Connection) -> int:
    """Bring the database to ``schema.SCHEMA_VERSION``; returns the version it had (0 when new).

    Raises:
        SchemaVersionError: the database is newer than this engine.
        StoreError: the database holds tables but no version, or a version with no upgrade path.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    inspector = sa.inspect(conn)
    if not inspector.has_table(schema.schema_version.name):
        ours = sorted(set(inspector.get_table_names()) & set(schema.metadata.tables))
        if ours:
            raise StoreError(
                f"the database has tables {ours} but no schema_version: not a pbx-engine database"
            )
        schema.metadata.create_all(conn)
        conn.execute(sa.insert(schema.schema_version).values(id=1, version=schema.SCHEMA_VERSION))
        conn.execute(sa.insert(schema.config_version).values(id=1, version=0))
        logger.info("created a new database at schema version %d", schema.SCHEMA_VERSION)
        return 0
    recorded = conn.execute(sa.select(schema.schema_version.c.version)).scalar_one_or_none()
    if recorded is None:
        raise StoreError("the database's schema_version table is empty")
    found = int(recorded)
    if found > schema.SCHEMA_VERSION:
        raise SchemaVersionError(found, schema.SCHEMA_VERSION)
    version = found
    while version < schema.SCHEMA_VERSION:
        step = UPGRADES.get(version)
        if step is None:
            raise StoreError(f"no upgrade from schema version {version}")
        step(conn)
        version += 1
        conn.execute(sa.update(schema.schema_version).values(version=version))
        logger.info("upgraded the database to schema version %d", version)
    return int(found)
