"""Upgrading a data directory of the first release (schema version 1) to version 2 (issue 3: calls).

The version-1 database is built here from the version-1 table definitions, frozen in this file as they
shipped, so the test keeps checking the real upgrade path whatever ``engine.store.schema`` becomes.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.model import DEFAULT_DIAL_PERMISSIONS, CallRecord, Direction, Disposition
from engine.sip.auth import compute_ha1
from engine.store import DB_FILE, SCHEMA_VERSION, Store, load_company_file, schema
from tests.store.conftest import PG_BASE_URL

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config" / "example-company.yaml"


def v1_metadata() -> sa.MetaData:
    """The tables of schema version 1, as released."""
    md = sa.MetaData()
    real: sa.types.TypeEngine[float] = sa.Double().with_variant(sa.REAL(), "sqlite")
    sa.Table(
        "schema_version",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    sa.Table(
        "config_version",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    sa.Table(
        "company",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sip_realm", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("country", sa.Text, nullable=False),
        sa.Column("first_extension", sa.Integer, nullable=False),
    )
    sa.Table(
        "users",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("first_name", sa.Text, nullable=False),
        sa.Column("last_name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=True, unique=True),
    )
    sa.Table(
        "lines",
        md,
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
    sa.Table(
        "dial_plans",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("graph", sa.Text, nullable=False),
    )
    sa.Table(
        "numbers",
        md,
        sa.Column("e164", sa.Text, primary_key=True),
        sa.Column("route_kind", sa.Text, nullable=False),
        sa.Column("route_target", sa.Text, nullable=False),
    )
    sa.Table(
        "registrations",
        md,
        sa.Column("aor", sa.Text, primary_key=True),
        sa.Column("contact", sa.Text, primary_key=True),
        sa.Column("expires_at", real, nullable=False, index=True),
        sa.Column("q", real, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("cseq", sa.Integer, nullable=False),
        sa.Column("source_transport", sa.Text, nullable=False),
        sa.Column("source_host", sa.Text, nullable=False),
        sa.Column("source_port", sa.Integer, nullable=False),
        sa.Column("user_agent", sa.Text, nullable=False),
        sa.Column("instance_id", sa.Text, nullable=True),
        sa.Column("reg_id", sa.Integer, nullable=True),
    )
    return md


def build_v1(url: str) -> None:
    """A version-1 database with what the first release's example import and a registration left."""
    engine = sa.create_engine(url)
    md = v1_metadata()
    t = md.tables
    try:
        with engine.begin() as conn:
            md.create_all(conn)
            conn.execute(sa.insert(t["schema_version"]).values(id=1, version=1))
            conn.execute(sa.insert(t["config_version"]).values(id=1, version=7))
            conn.execute(
                sa.insert(t["company"]).values(
                    id=1,
                    name="Alt GmbH",
                    sip_realm="pbx.alt.example",
                    timezone="Europe/Berlin",
                    country="DE",
                    first_extension=201,
                )
            )
            conn.execute(sa.insert(t["users"]).values(id=1, first_name="Anna", last_name="Alt", email=None))
            conn.execute(
                sa.insert(t["lines"]).values(
                    id=1,
                    user_id=1,
                    extension="201",
                    name="Anna Alt",
                    external_caller_id="+493023125100",
                    ha1_md5=compute_ha1("201", "pbx.alt.example", "pw", "MD5"),
                    ha1_sha256=compute_ha1("201", "pbx.alt.example", "pw", "SHA-256"),
                )
            )
            conn.execute(
                sa.insert(t["numbers"]),
                {"e164": "+493023125100", "route_kind": "extension", "route_target": "201"},
            )
            conn.execute(sa.insert(t["dial_plans"]).values(name="main", graph=json.dumps({"start": "x"})))
            conn.execute(
                sa.insert(t["registrations"]).values(
                    aor="sip:201@pbx.alt.example",
                    contact="sip:201@10.0.0.1:5062",
                    expires_at=2e9,
                    q=1.0,
                    call_id="c",
                    cseq=1,
                    source_transport="udp",
                    source_host="10.0.0.1",
                    source_port=5062,
                    user_agent="baresip",
                )
            )
    finally:
        engine.dispose()


@contextmanager
def another_database(data_dir: Path, db_url: str | None) -> Iterator[tuple[Path, str | None]]:
    """A second, empty database of the same kind (a data dir, or a PostgreSQL schema of its own)."""
    if db_url is None:
        yield data_dir.with_name(data_dir.name + "-fresh"), None
        return
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    try:
        yield data_dir.with_name(data_dir.name + "-fresh"), f"{PG_BASE_URL}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        admin.dispose()


def shape(engine: sa.Engine) -> dict[str, Any]:
    """Every table's columns (in order, with type, nullability and default), keys, indexes and uniques."""
    inspector = sa.inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], _default(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(c or "" for c in i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
        }
    return out


def _default(text: object) -> object:
    # PostgreSQL names a serial column's sequence with its schema when it is not on the search path.
    return re.sub(r"t_[0-9a-f]{12}\.", "", text) if isinstance(text, str) else text


def test_a_v1_data_dir_upgrades_on_open(data_dir: Path, db_url: str | None) -> None:
    data_dir.mkdir(parents=True)
    build_v1(db_url or f"sqlite:///{data_dir / DB_FILE}")
    store = Store.open(data_dir, db_url)
    try:
        with store.engine.connect() as conn:
            version = conn.execute(sa.select(schema.schema_version.c.version)).scalar_one()
        assert version == SCHEMA_VERSION == 8
        assert store.config_version() == 7  # a schema upgrade is not a configuration change
        company = store.company()
        assert (company.name, company.area_code, company.media_release_networks) == ("Alt GmbH", None, ())
        (line,) = store.lines()
        assert line.extension == "201" and line.external_caller_id == "+493023125100"
        assert line.dial_permissions == DEFAULT_DIAL_PERMISSIONS  # no international for old lines either
        assert store.sip_credentials()["201"].ha1_md5 == compute_ha1("201", "pbx.alt.example", "pw", "MD5")
        assert [b.contact for b in store.list_bindings()] == ["sip:201@10.0.0.1:5062"]
        assert store.trunks() == [] and store.list_cdrs() == [] and store.routing_objects() == []
        record = CallRecord(
            "c-1", Direction.INTERNAL, "201", "Anna", "202", None, None, 1.5, None, 2.5,
            Disposition.UNAVAILABLE, 480, "480 Temporarily Unavailable",
        )
        store.write_cdrs([record])
        assert store.list_cdrs() == [record] and record.path == ()
        store.import_company(load_company_file(EXAMPLE))  # and the new configuration fits
        assert [t.name for t in store.trunks()] == ["carrier"]
    finally:
        store.close()


def test_an_upgraded_database_has_the_tables_of_a_new_one(data_dir: Path, db_url: str | None) -> None:
    data_dir.mkdir(parents=True)
    build_v1(db_url or f"sqlite:///{data_dir / DB_FILE}")
    upgraded = Store.open(data_dir, db_url)
    with another_database(data_dir, db_url) as (fresh_dir, fresh_url):
        fresh = Store.open(fresh_dir, fresh_url)
        try:
            assert shape(upgraded.engine) == shape(fresh.engine)
            assert {"trunks", "cdrs", "routing_objects"} <= set(shape(fresh.engine))
        finally:
            fresh.close()
            upgraded.close()
