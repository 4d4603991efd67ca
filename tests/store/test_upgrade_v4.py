"""Upgrading a data directory of schema version 4 to 5 (issue 6: web login).

v4 kept a registered user's web-login password hash in ``users.registration_token_hash`` behind a ``pw:``
mark and each web session as an ``api_tokens`` row whose ``token_hash`` was ``session:`` + the cookie's
digest. The v4->v5 step moves both to their own column and table: the user logs in with the same password,
a session made before the upgrade still works (until its 12 h are up), and API tokens stay untouched.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from engine.clock import FakeClock
from engine.model import admin as am
from engine.store import DB_FILE, SCHEMA_VERSION, Store, migrate, schema
from engine.store.admin import AdminStore
from tests.store.test_upgrade_v1 import build_v1

PASSWORD = "correct horse battery"
NOW = 1_800_000_000.0


def test_a_v4_data_dir_moves_web_passwords_and_sessions(data_dir: Path, db_url: str | None) -> None:
    data_dir.mkdir(parents=True)
    url = db_url or f"sqlite:///{data_dir / DB_FILE}"
    build_v1(url)
    engine = sa.create_engine(url)
    session_secret, token_secret = "s" * 64, "t" * 64
    password_hash = am.hash_secret(PASSWORD, b"0123456789abcdef")
    try:
        with engine.begin() as conn:
            for step in (1, 2, 3):
                migrate.UPGRADES[step](conn)
            conn.execute(sa.update(schema.schema_version).values(version=4))
            user_id = conn.execute(sa.text("SELECT id FROM users")).scalar_one()
            conn.execute(
                sa.text(
                    "UPDATE users SET email = 'anna@example.com', allow_web_login = :t, registered = :t, "
                    "registration_token_hash = :h"
                ),
                {"t": True, "h": "pw:" + password_hash},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES "
                    "(:u, 'web session', :s, :now), (:u, 'ci', :t, :now)"
                ),
                {"u": user_id, "s": "session:" + am.token_digest(session_secret),
                 "t": am.token_digest(token_secret), "now": NOW - 60},
            )
    finally:
        engine.dispose()
    store = Store.open(data_dir, db_url)
    try:
        with store.engine.connect() as conn:
            version = conn.execute(sa.select(schema.schema_version.c.version)).scalar_one()
            assert version == SCHEMA_VERSION == 8
            users = conn.execute(sa.select(schema.users.c.registration_token_hash,
                                           schema.users.c.web_password_hash)).all()
            assert users == [(None, password_hash)]
            assert conn.execute(sa.select(schema.api_tokens.c.name)).scalars().all() == ["ci"]
            sessions = conn.execute(sa.select(schema.web_sessions.c.token_hash,
                                              schema.web_sessions.c.expires_at)).all()
            assert sessions == [(am.token_digest(session_secret), NOW - 60 + 12 * 3600)]
        admin = AdminStore(store, FakeClock(wall_start=NOW))
        old = admin.session_principal(session_secret, 12 * 3600)
        assert old is not None and old.via_session and old.user_id == user_id
        assert admin.principal(token_secret) is not None  # the API token is still one
        assert admin.principal(session_secret) is None  # and a session cookie is no API token
        made = admin.login("anna@example.com", PASSWORD, 3600)
        assert made is not None and made[0].via_session
        assert admin.login("anna@example.com", "wrong password!", 3600) is None
    finally:
        store.close()
