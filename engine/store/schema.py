"""The store's tables (SQLAlchemy Core) and the schema version this code reads and writes.

Portable SQL only: the same tables run on SQLite (embedded default) and PostgreSQL. Floating-point
columns are DOUBLE PRECISION on PostgreSQL (REAL there is 4 bytes, too small for epoch seconds) and REAL
on SQLite. Lists (networks, dial permissions, CDR legs) are JSON text: portable, and read whole anyway.
Changing a table here means bumping ``SCHEMA_VERSION`` and adding a step to
``engine.store.migrate.UPGRADES``; a column added to an existing table goes last (where ``ALTER TABLE ...
ADD COLUMN`` puts it), so that an upgraded database has the same tables as a new one.
"""

from __future__ import annotations

import json
from typing import Final

import sqlalchemy as sa

from engine.model import DEFAULT_DIAL_PERMISSIONS, rules

SCHEMA_VERSION: Final = 8

DEFAULT_DIAL_PERMISSIONS_JSON: Final = json.dumps(rules.format_dial_permissions(DEFAULT_DIAL_PERMISSIONS))

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
    sa.Column("area_code", sa.Text, nullable=True),  # v2
    sa.Column("media_release_networks", sa.Text, nullable=False, server_default="[]"),  # v2, JSON
    sa.Column("hold_clip", sa.Text, nullable=True),  # v6: the sound clip callers hear on hold
    sa.Column("star_codes", sa.Text, nullable=False, server_default="{}"),  # v7: JSON, feature -> code
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("first_name", sa.Text, nullable=False),
    sa.Column("last_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=True, unique=True),
    # v4: admin permissions, web login, dialable credentials, groups, hot desking, softphone
    sa.Column("admin_role", sa.Text, nullable=False, server_default="none"),
    sa.Column("admin_permissions", sa.Text, nullable=False, server_default="[]"),  # JSON list
    sa.Column("allow_web_login", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("registration_token_hash", sa.Text, nullable=True),
    sa.Column("registered", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("dial_username", sa.Text, nullable=True),
    sa.Column("dial_password_hash", sa.Text, nullable=True),  # None: the default password 0000
    sa.Column("groups", sa.Text, nullable=False, server_default="[]"),  # JSON list
    sa.Column("hot_desking", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("softphone", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("web_password_hash", sa.Text, nullable=True),  # v5: PBKDF2 of the web-login password
)
sa.Index("ix_users_dial_username", users.c.dial_username, unique=True)  # v4
sa.Index("ix_users_registration_token_hash", users.c.registration_token_hash, unique=True)  # v4

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
    sa.Column(  # v2, JSON list in DIAL_PERMISSIONS order; the default is what v1 lines get on upgrade
        "dial_permissions", sa.Text, nullable=False, server_default=DEFAULT_DIAL_PERMISSIONS_JSON
    ),
    # v4. References are kept by the store's code (ALTER TABLE cannot add constraints on SQLite).
    sa.Column("device_id", sa.Integer, nullable=True, index=True),
    sa.Column("location_id", sa.Integer, nullable=True),
    sa.Column("sip_password", sa.Text, nullable=True),  # clear text, only for lines on a provisioned phone
    sa.Column("options", sa.Text, nullable=False, server_default="{}"),  # JSON: find-me steps, voicemail
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

trunks = sa.Table(  # v2
    "trunks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("sources", sa.Text, nullable=False),  # JSON list of CIDR networks
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("transport", sa.Text, nullable=False),
    sa.Column("username", sa.Text, nullable=True),
    sa.Column("password", sa.Text, nullable=True),  # clear text: we answer the carrier's digest challenges
    sa.Column("from_domain", sa.Text, nullable=True),
    sa.Column("outbound", sa.Boolean, nullable=False),
)

cdrs = sa.Table(  # v2
    "cdrs",
    metadata,
    sa.Column("call_id", sa.Text, primary_key=True),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("caller", sa.Text, nullable=False),
    sa.Column("caller_name", sa.Text, nullable=False),
    sa.Column("callee", sa.Text, nullable=False),
    sa.Column("did", sa.Text, nullable=True),
    sa.Column("trunk", sa.Text, nullable=True),
    sa.Column("started_at", _Float, nullable=False, index=True),  # wall-clock epoch seconds
    sa.Column("answered_at", _Float, nullable=True),
    sa.Column("ended_at", _Float, nullable=False),
    sa.Column("disposition", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("hangup_cause", sa.Text, nullable=False),
    sa.Column("legs", sa.Text, nullable=False),  # JSON list of LegRecord fields
    sa.Column("path", sa.Text, nullable=False, server_default="[]"),  # v3, JSON list of dial-plan steps
    sa.Column("queues", sa.Text, nullable=False, server_default="[]"),  # v8, JSON list of QueueVisit fields
)

routing_objects = sa.Table(  # v3
    "routing_objects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # a document section: ring_groups, schedules, sound_clips...
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),  # JSON mapping, validated by the dial-plan compiler
    sa.UniqueConstraint("kind", "name"),
)

devices = sa.Table(  # v4
    "devices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mac", sa.Text, nullable=False, unique=True),  # 12 lower-case hex digits
    sa.Column("model", sa.Text, nullable=True),  # filled in by the phone at provisioning when not given
    sa.Column("vendor", sa.Text, nullable=True),
    sa.Column("location_id", sa.Integer, nullable=True),
    sa.Column("prov_username", sa.Text, nullable=False),
    sa.Column("prov_password_hash", sa.Text, nullable=False),
    sa.Column("allowed_networks", sa.Text, nullable=False, server_default="[]"),  # JSON list of CIDR
    sa.Column("created_at", _Float, nullable=False),
    sa.Column("last_provisioned_at", _Float, nullable=True),
)

api_tokens = sa.Table(  # v4
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),  # SHA-256 hex of the token
    sa.Column("created_at", _Float, nullable=False),
)

web_sessions = sa.Table(  # v5: web-login sessions (the cookie's SHA-256; the cookie itself is never kept)
    "web_sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", _Float, nullable=False),
    sa.Column("expires_at", _Float, nullable=False, index=True),
)

audit_log = sa.Table(  # v4
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", _Float, nullable=False, index=True),  # wall-clock epoch seconds
    sa.Column("actor", sa.Text, nullable=False),  # "user:3 (anna@...)" or "cli"
    sa.Column("action", sa.Text, nullable=False),  # "user.create", "number.route"...
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),  # JSON, never secrets
)

number_inventory = sa.Table(  # v4
    "number_inventory",
    metadata,
    sa.Column("e164", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),  # available (the carrier's pool) | owned (the company's)
    sa.Column("source", sa.Text, nullable=False),  # pool | ported | imported
    sa.Column("order_id", sa.Integer, nullable=True),
)

number_orders = sa.Table(  # v4
    "number_orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # order | port_in
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("numbers", sa.Text, nullable=False, server_default="[]"),  # JSON list of E.164
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),  # JSON order data
    sa.Column("foc_date", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", _Float, nullable=False),
    sa.Column("updated_at", _Float, nullable=False),
)

locations = sa.Table(  # v4
    "locations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("country", sa.Text, nullable=False),
    sa.Column("street", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("region", sa.Text, nullable=False),
    sa.Column("postal_code", sa.Text, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
)

queue_agents = sa.Table(  # v7: queue agents' login and pause from their phones (live state kept at rest)
    "queue_agents",
    metadata,
    sa.Column("queue", sa.Text, primary_key=True),  # the queue's name
    sa.Column("extension", sa.Text, primary_key=True),  # the agent's line
    sa.Column("logged_in", sa.Boolean, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
)
