"""What phones change from their keypads, at rest: a line's DND and forwarding (its options) and queue
agents' login and pause (the ``queue_agents`` table, schema v7).

A line's features are configuration (``engine.model.features``): changing them bumps ``config_version``
and writes an audit entry (actor ``phone:EXTENSION``), so the running engine reloads and the API shows the
new state. Queue agents' login and pause are live state kept at rest (like registrations): the engine
holds them in memory (``engine.call.queue``) and writes each change here, so a restart keeps who is
logged in; the configuration does not change. The company's own star codes are configuration
(``set_star_codes``, for the admin API). All blocking: call from an executor thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from engine.model import Company, rules
from engine.store import schema
from engine.store.admin import AdminStore, Validator
from engine.store.store import Store, _company_row


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One agent's state in one queue as stored (rows exist only for agents who used a star code)."""

    queue: str
    extension: str
    logged_in: bool
    paused: bool


def change_line_options(store: Store, extension: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                        wall: float) -> bool:
    """Replace line ``extension``'s options by ``change(options)`` in one write transaction (config
    version bumped, audit entry by ``phone:EXTENSION`` at wall time ``wall``); False when there is no
    such line.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be written.
    """
    t = schema.lines
    with store._write() as conn:
        row = conn.execute(sa.select(t.c.id, t.c.options).where(t.c.extension == extension)).first()
        if row is None:
            return False
        before = json.loads(row.options or "{}")
        after = change(dict(before))
        if after == before:
            return True
        store._bump(conn)
        conn.execute(sa.update(t).where(t.c.id == row.id).values(options=json.dumps(after, sort_keys=True)))
        conn.execute(sa.insert(schema.audit_log).values(
            at=wall, actor=f"phone:{extension}", action="line.features", target=f"line:{row.id}",
            detail=json.dumps({"options": after}, sort_keys=True)))
    return True


@dataclass(frozen=True, slots=True)
class HotDeskAccount:
    """What a hot-desk login checks of the user with a dialable username: their line, whether they may
    hot-desk, and their dialable password's hash (None: the default ``0000``)."""

    line: str
    allowed: bool
    password_hash: str | None


def hot_desk_account(store: Store, username: str) -> HotDeskAccount | None:
    """The user whose dialable username is ``username`` and their first line; None when there is none.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read.
    """
    u, ln = schema.users, schema.lines
    q = sa.select(ln.c.extension, u.c.hot_desking, u.c.dial_password_hash).join(
        u, u.c.id == ln.c.user_id).where(u.c.dial_username == username).order_by(ln.c.id).limit(1)
    with store._read() as conn:
        row = conn.execute(q).first()
    if row is None:
        return None
    return HotDeskAccount(row.extension, bool(row.hot_desking), row.dial_password_hash)


def queue_agents(store: Store, queue: str | None = None) -> list[AgentRecord]:
    """The stored agent states (of ``queue``, or of every queue), by queue then extension.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read.
    """
    t = schema.queue_agents
    q = sa.select(t).order_by(t.c.queue, t.c.extension)
    if queue is not None:
        q = q.where(t.c.queue == queue)
    with store._read() as conn:
        return [AgentRecord(r.queue, r.extension, bool(r.logged_in), bool(r.paused))
                for r in conn.execute(q).all()]


def save_queue_agents(store: Store, records: list[AgentRecord]) -> None:
    """Write agent states (each replaces the stored one of its queue and extension) in one transaction.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be written.
    """
    t = schema.queue_agents
    with store._write() as conn:
        for r in records:
            conn.execute(sa.delete(t).where(t.c.queue == r.queue, t.c.extension == r.extension))
            conn.execute(sa.insert(t).values(queue=r.queue, extension=r.extension, logged_in=r.logged_in,
                                             paused=r.paused))


def set_star_codes(admin: AdminStore, actor: str, codes: Mapping[str, object],
                   validate: Validator | None = None) -> Company:
    """Replace the company's own star codes (feature -> code; the rest keep their defaults), checked by
    ``validate`` (the dial-plan compiler: unknown features, malformed codes, clashes) before the commit.

    Raises:
        ModelError: not a mapping of text to text; whatever ``validate`` raises.
    """
    pairs = rules.check_star_codes(codes, "star_codes")
    c = schema.company
    with admin._change(actor, "company.star_codes", "company", {"star_codes": dict(pairs)}) as conn:
        company = Store._company(conn)
        if conn.execute(sa.select(c.c.id)).first() is None:
            conn.execute(sa.insert(c).values(id=1, **_company_row(company)))
        own = json.dumps(dict(pairs), sort_keys=True)
        conn.execute(sa.update(c).where(c.c.id == 1).values(star_codes=own))
        if validate is not None:
            validate(admin.snapshot(conn))
        return Store._company(conn)
