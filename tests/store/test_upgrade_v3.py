"""Upgrading a data directory of schema version 3 to 4 (issue 6: administration), then on to 5.

The v3 database is the v1 database of ``test_upgrade_v1`` taken through the frozen v1->v2->v3 steps; then
the v3->v4 step runs on open. Existing users get the v4 defaults (no admin rights, no web login, default
dialable password, no groups), lines get no device, and the new tables start empty and usable.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from engine.store import DB_FILE, SCHEMA_VERSION, Store, migrate, schema
from engine.store.admin import AdminStore
from tests.store.test_upgrade_v1 import build_v1


def test_a_v3_data_dir_upgrades_to_v4(data_dir: Path, db_url: str | None) -> None:
    data_dir.mkdir(parents=True)
    url = db_url or f"sqlite:///{data_dir / DB_FILE}"
    build_v1(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            migrate.UPGRADES[1](conn)
            migrate.UPGRADES[2](conn)
            conn.execute(sa.update(schema.schema_version).values(version=3))
    finally:
        engine.dispose()
    store = Store.open(data_dir, db_url)
    try:
        with store.engine.connect() as conn:
            assert (
                conn.execute(sa.select(schema.schema_version.c.version)).scalar_one() == SCHEMA_VERSION == 8
            )
        admin = AdminStore(store)
        (user,) = admin.users()
        assert (user.admin.role, user.allow_web_login, user.registered, user.groups) == (
            "none",
            False,
            False,
            (),
        )
        assert (user.dial_username, user.hot_desking, user.softphone) == (None, False, False)
        (line,) = user.lines
        assert (line.device_id, line.location_id, line.options) == (None, None, {})
        assert admin.devices() == [] and admin.orders() == [] and admin.locations() == []
        inventory = admin.inventory()
        assert [(n.e164, n.state, n.source) for n in inventory] == [("+493023125100", "owned", "imported")]
        assert store.config_version() == 7
        # (build_v1 inserted explicit ids, so PostgreSQL's id sequence is behind: promote the existing user.)
        admin.update_user("test", user.id, {"email": "anna@example.com"})
        promoted, token = admin.bootstrap_admin("anna@example.com")
        assert promoted.id == user.id
        principal = admin.principal(token)
        assert principal is not None and principal.rights.is_super_admin
        assert [a.action for a in admin.audit()][-1] == "user.update"
    finally:
        store.close()
