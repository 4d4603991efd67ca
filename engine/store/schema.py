"""The store's tables (SQLAlchemy Core) and the schema version this code reads and writes.

Portable SQL only: the same tables run on SQLite (embedded default) and PostgreSQL. Floating-point
columns are DOUBLE PRECISION on PostgreSQL (REAL there is 4 bytes, too small for epoch seconds) and REAL
on SQLite. Changing a table here means bumping ``SCHEMA_VERSION`` and adding a step to
``engine.store.migrate.UPGRADES``.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa

SCHEMA_VERSION: Final = 1

metadata = sa.MetaData()

_Float: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)

config_version = sa.Table(
    "config_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
)

company = sa.Table(
    "company",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("sip_realm", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("country", sa.Text, nullable=False),
    sa.Column("first_extension", sa.Integer, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=True, unique=True),
)

lines = sa.Table(
    "lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("extension", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("external_caller_id", sa.Text, nullable=True),
    sa.Column("ha1_md5", sa.Text, nullable=False),
    sa.Column("ha1_sha256", sa.Text, nullable=False),
)

dial_plans = sa.Table(
    "dial_plans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("graph", sa.Text, nullable=False),  # JSON text, opaque until the dial-plan compiler owns it
)

numbers = sa.Table(
    "numbers",
    metadata,
    sa.Column("e164", sa.Text, primary_key=True),
    sa.Column("route_kind", sa.Text, nullable=False),
    sa.Column("route_target", sa.Text, nullable=False),
)

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("aor", sa.Text, primary_key=True),
    sa.Column("contact", sa.Text, primary_key=True),
    sa.Column("expires_at", _Float, nullable=False, index=True),  # wall-clock epoch seconds
    sa.Column("q", _Float, nullable=False),
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("cseq", sa.Integer, nullable=False),
    sa.Column("source_transport", sa.Text, nullable=False),
    sa.Column("source_host", sa.Text, nullable=False),
    sa.Column("source_port", sa.Integer, nullable=False),
    sa.Column("user_agent", sa.Text, nullable=False),
    sa.Column("instance_id", sa.Text, nullable=True),
    sa.Column("reg_id", sa.Integer, nullable=True),
)
