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
  4  administration (issue 6): users get admin permissions, web login, dialable credentials, groups,
     hot desking and softphone columns; lines get device, location, options and (for provisioned
     phones) the SIP password; the devices, api_tokens, audit_log, number_inventory, number_orders
     and locations tables.
  5  web login (issue 6): users.web_password_hash and the web_sessions table (v4 kept the password hash
     in registration_token_hash behind a "pw:" mark and sessions in api_tokens behind "session:": both
     are moved, the marks go).
  6  music on hold (issue 19): company.hold_clip, the sound clip callers hear on hold.
  7  star codes (issues 19 and 12): company.star_codes (the company's own codes) and the queue_agents
     table (agents' login and pause from their phones).
  8  queue reports (issue 12): cdrs.queues, the call queues each caller waited in and how it left.
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


def _v3_to_v4(conn: sa.Connection) -> None:
    """Administration (issue 6): see the module docstring's history."""
    false = "0" if conn.dialect.name == "sqlite" else "false"
    for column in (
        "admin_role TEXT NOT NULL DEFAULT 'none'",
        "admin_permissions TEXT NOT NULL DEFAULT '[]'",
        f"allow_web_login BOOLEAN NOT NULL DEFAULT {false}",
        "registration_token_hash TEXT",
        f"registered BOOLEAN NOT NULL DEFAULT {false}",
        "dial_username TEXT",
        "dial_password_hash TEXT",
        "groups TEXT NOT NULL DEFAULT '[]'",
        f"hot_desking BOOLEAN NOT NULL DEFAULT {false}",
        f"softphone BOOLEAN NOT NULL DEFAULT {false}",
    ):
        conn.execute(sa.text(f"ALTER TABLE users ADD COLUMN {column}"))
    conn.execute(sa.text("CREATE UNIQUE INDEX ix_users_dial_username ON users (dial_username)"))
    conn.execute(
        sa.text("CREATE UNIQUE INDEX ix_users_registration_token_hash ON users (registration_token_hash)")
    )
    for column in (
        "device_id INTEGER",
        "location_id INTEGER",
        "sip_password TEXT",
        "options TEXT NOT NULL DEFAULT '{}'",
    ):
        conn.execute(sa.text(f"ALTER TABLE lines ADD COLUMN {column}"))
    conn.execute(sa.text("CREATE INDEX ix_lines_device_id ON lines (device_id)"))
    v4 = sa.MetaData()
    real: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
    sa.Table("users", v4, sa.Column("id", sa.Integer, primary_key=True))  # the foreign key's target only
    sa.Table(
        "devices",
        v4,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mac", sa.Text, nullable=False, unique=True),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("vendor", sa.Text, nullable=True),
        sa.Column("location_id", sa.Integer, nullable=True),
        sa.Column("prov_username", sa.Text, nullable=False),
        sa.Column("prov_password_hash", sa.Text, nullable=False),
        sa.Column("allowed_networks", sa.Text, nullable=False, server_default="[]"),
        sa.Column("created_at", real, nullable=False),
        sa.Column("last_provisioned_at", real, nullable=True),
    )
    sa.Table(
        "api_tokens",
        v4,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", real, nullable=False),
    )
    sa.Table(
        "audit_log",
        v4,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", real, nullable=False, index=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    )
    sa.Table(
        "number_inventory",
        v4,
        sa.Column("e164", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("order_id", sa.Integer, nullable=True),
    )
    sa.Table(
        "number_orders",
        v4,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("numbers", sa.Text, nullable=False, server_default="[]"),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("foc_date", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", real, nullable=False),
        sa.Column("updated_at", real, nullable=False),
    )
    sa.Table(
        "locations",
        v4,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("country", sa.Text, nullable=False),
        sa.Column("street", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("postal_code", sa.Text, nullable=False),
        sa.Column("verified", sa.Boolean, nullable=False),
    )
    tables = [v4.tables[name] for name in v4.tables if name != "users"]
    v4.create_all(conn, tables=tables, checkfirst=False)


_V4_SESSION_TTL_S: Final = 12 * 3600.0  # what v4 sessions lived (fixed from their creation)


def _v4_to_v5(conn: sa.Connection) -> None:
    """Web-login passwords and sessions get their own column and table (issue 6)."""
    conn.execute(sa.text("ALTER TABLE users ADD COLUMN web_password_hash TEXT"))
    v5 = sa.MetaData()
    sa.Table("users", v5, sa.Column("id", sa.Integer, primary_key=True))
    sessions = sa.Table(
        "web_sessions",
        v5,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Double().with_variant(sa.REAL(), "sqlite"), nullable=False),
        sa.Column("expires_at", sa.Double().with_variant(sa.REAL(), "sqlite"), nullable=False, index=True),
    )
    v5.create_all(conn, tables=[sessions], checkfirst=False)
    conn.execute(sa.text(
        "UPDATE users SET web_password_hash = substr(registration_token_hash, 4), "
        "registration_token_hash = NULL WHERE registration_token_hash LIKE 'pw:%'"))
    conn.execute(sa.text(
        "INSERT INTO web_sessions (user_id, token_hash, created_at, expires_at) "
        "SELECT user_id, substr(token_hash, 9), created_at, created_at + :ttl FROM api_tokens "
        "WHERE token_hash LIKE 'session:%'"), {"ttl": _V4_SESSION_TTL_S})
    conn.execute(sa.text("DELETE FROM api_tokens WHERE token_hash LIKE 'session:%'"))


_V2_DEFAULT_DIAL_PERMISSIONS: Final = '["internal", "local", "national", "mobile"]'

def _v5_to_v6(conn: sa.Connection) -> None:
    """The company's hold clip (issue 19)."""
    conn.execute(sa.text("ALTER TABLE company ADD COLUMN hold_clip TEXT"))


def _v6_to_v7(conn: sa.Connection) -> None:
    """Star codes (issues 19 and 12): the company's own codes, queue agents' login and pause."""
    conn.execute(sa.text("ALTER TABLE company ADD COLUMN star_codes TEXT NOT NULL DEFAULT '{}'"))
    v7 = sa.MetaData()
    agents = sa.Table(
        "queue_agents",
        v7,
        sa.Column("queue", sa.Text, primary_key=True),
        sa.Column("extension", sa.Text, primary_key=True),
        sa.Column("logged_in", sa.Boolean, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    v7.create_all(conn, tables=[agents], checkfirst=False)


def _v7_to_v8(conn: sa.Connection) -> None:
    """Queue reports (issue 12): the queue visits of each call."""
    conn.execute(sa.text("ALTER TABLE cdrs ADD COLUMN queues TEXT NOT NULL DEFAULT '[]'"))


UPGRADES: Final[dict[int, Callable[[sa.Connection], None]]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
    7: _v7_to_v8,
}
"""``UPGRADES[v]`` turns a database of schema version ``v`` into ``v + 1``."""
