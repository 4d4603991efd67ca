"""Versioned schema migrations: create a new database, upgrade an old one, refuse a newer one.

The database records its version in ``schema_version`` (one row). ``migrate`` runs inside the caller's
write transaction, so a migration is all-or-nothing on both SQLite (whose DDL is transactional) and
PostgreSQL (serialised across processes by an advisory lock).

We use this small runner instead of Alembic: the engine migrates itself on open, from package code, with
no ``alembic.ini`` or script directory to ship, and there is one linear history. To change the schema:
edit ``engine.store.schema``, bump ``SCHEMA_VERSION`` and add ``UPGRADES[old] = step`` that turns a
database of version ``old`` into ``old + 1`` with portable ``ALTER``/``CREATE`` statements. A new database
is created straight from the current tables, so a test should check that upgrading a saved old database
gives the same tables as a fresh one. A step creates its tables from its own frozen definitions, never
from ``engine.store.schema``: a later version that changes such a table would otherwise break the step.

History:
  1  the first release: company, users, lines, numbers, dial plans, registrations.
  2  calls (issue 3): company.area_code and .media_release_networks, lines.dial_permissions, the
     trunks and cdrs tables.
  3  dial plans (issue 4): the routing_objects table (ring groups, schedules, sound clips, shared
     mailboxes, queues, conference rooms, fax lines as JSON specs) and cdrs.path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import sqlalchemy as sa

from engine.store import schema
from engine.store.errors import SchemaVersionError, StoreError

logger = logging.getLogger(__name__)

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


def _v1_to_v2(conn: sa.Connection) -> None:
    """Trunks, dial permissions, area code, media release networks and CDRs (issue 3)."""
    # Existing lines get the default permissions (no international), as a new line would.
    conn.execute(sa.text("ALTER TABLE company ADD COLUMN area_code TEXT"))
    conn.execute(sa.text("ALTER TABLE company ADD COLUMN media_release_networks TEXT NOT NULL DEFAULT '[]'"))
    conn.execute(
        sa.text(
            "ALTER TABLE lines ADD COLUMN dial_permissions TEXT NOT NULL "
            f"DEFAULT '{_V2_DEFAULT_DIAL_PERMISSIONS}'"
        )
    )
    v2 = sa.MetaData()
    real: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
    sa.Table(
        "trunks",
        v2,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("transport", sa.Text, nullable=False),
        sa.Column("username", sa.Text, nullable=True),
        sa.Column("password", sa.Text, nullable=True),
        sa.Column("from_domain", sa.Text, nullable=True),
        sa.Column("outbound", sa.Boolean, nullable=False),
    )
    sa.Table(
        "cdrs",
        v2,
        sa.Column("call_id", sa.Text, primary_key=True),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("caller_name", sa.Text, nullable=False),
        sa.Column("callee", sa.Text, nullable=False),
        sa.Column("did", sa.Text, nullable=True),
        sa.Column("trunk", sa.Text, nullable=True),
        sa.Column("started_at", real, nullable=False, index=True),
        sa.Column("answered_at", real, nullable=True),
        sa.Column("ended_at", real, nullable=False),
        sa.Column("disposition", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("hangup_cause", sa.Text, nullable=False),
        sa.Column("legs", sa.Text, nullable=False),
    )
    v2.create_all(conn, checkfirst=False)  # a table of that name already there is an error, not ours


def _v2_to_v3(conn: sa.Connection) -> None:
    """Routing objects and the dial-plan path of a call (issue 4)."""
    conn.execute(sa.text("ALTER TABLE cdrs ADD COLUMN path TEXT NOT NULL DEFAULT '[]'"))
    v3 = sa.MetaData()
    sa.Table(
        "routing_objects",
        v3,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.UniqueConstraint("kind", "name"),
    )
    v3.create_all(conn, checkfirst=False)


_V2_DEFAULT_DIAL_PERMISSIONS: Final = '["internal", "local", "national", "mobile"]'

UPGRADES: Final[dict[int, Callable[[sa.Connection], None]]] = {1: _v1_to_v2, 2: _v2_to_v3}
"""``UPGRADES[v]`` turns a database of schema version ``v`` into ``v + 1``."""
