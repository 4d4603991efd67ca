"""The admin store: one SQLAlchemy Core engine over SQLite (default) or PostgreSQL, and its operations.

``Store.open`` creates the data directory and database, sets SQLite up for a server (WAL journal,
``synchronous=NORMAL``, foreign keys, a busy timeout) and migrates the schema. Every configuration change
runs in one write transaction that also bumps ``config_version``, so a running server notices changes made
by another process (``pbx user add``) by polling one integer.

On SQLite, transactions are started by us, not by the ``sqlite3`` module (whose implicit transactions
leave DDL in autocommit): reads use ``BEGIN``, writes ``BEGIN IMMEDIATE`` so that two writers queue on
the busy timeout instead of failing on a lock upgrade.

Line passwords are never stored: a line keeps HA1 = H(extension:realm:password) for MD5 and SHA-256, so
changing the company's SIP realm requires new SIP passwords for every line. Trunk passwords are stored in
clear text, because we answer the carrier's digest challenges with them (see ``engine.model.Trunk``).

``config_snapshot`` reads everything a running engine takes from the configuration (company, users, lines,
numbers, trunks, dial plans, routing objects, digest credentials, voicemail options) in one read
transaction, so that the engine never sees half of a change; on PostgreSQL that transaction is REPEATABLE
READ (its default, READ COMMITTED, gives each statement a snapshot of its own).

Call detail records are written in batches by ``CdrWriter`` (``engine.store.cdrs``) through
``write_cdrs`` and read back newest first by ``list_cdrs``.
"""

from __future__ import annotations

import json
import operator
import secrets
import string
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from engine.model import (
    DEFAULT_DIAL_PERMISSIONS,
    CallRecord,
    Company,
    DialPlan,
    Line,
    ModelError,
    PhoneNumber,
    RoutingObject,
    Trunk,
    User,
    UserSpec,
    next_free_extension,
    parse_company_document,
    rules,
)
from engine.model.features import LineFeatures, features_of
from engine.sip.auth import Credentials, compute_ha1
from engine.store import schema
from engine.store.bindings import BindingRecord
from engine.store.cdrs import cdr_from_row, cdr_row
from engine.store.errors import StoreError
from engine.store.migrate import migrate
from engine.store.notify import ConfigListener, notify_config_change

DB_FILE: Final = "pbx.sqlite3"
SOUNDS_DIR: Final = "sounds"
"""Sound clips live beside the database, one 8 kHz 16-bit mono WAV per clip (``sound_clip_path``)."""
_BUMPED: Final = "pbx_config_bumped"  # in Connection.info: this write changed the configuration
DEFAULT_COMPANY_NAME: Final = "My Company"
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
PASSWORD_LENGTH: Final = 20
_PASSWORD_ALPHABET: Final = string.ascii_letters + string.digits
_BINDING_FIELDS: Final = tuple(c.name for c in schema.registrations.columns)
_binding_row: Final = operator.attrgetter(*_BINDING_FIELDS)


#: Rows per binding upsert statement, largest first (``Store.write_bindings``). 64 rows of 12 columns stay
#: under SQLite's oldest limit of 999 parameters.
_UPSERT_CHUNKS: Final = (64, 8, 1)


def _binding_upsert_sql(paramstyle: str, rows: int = 1) -> str:
    """INSERT ... ON CONFLICT (aor, contact) DO UPDATE of ``rows`` rows of the registrations table, in the
    driver's style. The rows of one statement must have distinct (aor, contact) keys (PostgreSQL refuses to
    update a row twice in one statement)."""
    marker = "?" if paramstyle == "qmark" else "%s"
    cols = ", ".join(_BINDING_FIELDS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _BINDING_FIELDS if c not in ("aor", "contact"))
    values = ", ".join([f"({', '.join([marker] * len(_BINDING_FIELDS))})"] * rows)
    return (
        f"INSERT INTO {schema.registrations.name} ({cols}) VALUES {values} "
        f"ON CONFLICT (aor, contact) DO UPDATE SET {updates}"
    )


@dataclass(frozen=True, slots=True)
class StoredConfig:
    """The configuration as one read transaction saw it (``Store.config_snapshot``)."""

    version: int
    company: Company
    users: tuple[User, ...]
    lines: tuple[Line, ...]
    numbers: tuple[PhoneNumber, ...]
    trunks: tuple[Trunk, ...]
    dial_plans: tuple[DialPlan, ...]
    routing_objects: tuple[RoutingObject, ...]
    #: SIP username (the extension) -> its digest credentials for the company's realm
    credentials: Mapping[str, Credentials]
    #: extensions whose line options switch voicemail off
    no_voicemail: frozenset[str]
    #: extension -> the address its new voicemail messages are e-mailed to
    voicemail_email: Mapping[str, str]
    #: extension -> its do-not-disturb and call forwarding, for lines that have any set
    line_features: Mapping[str, LineFeatures] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import wrote (the previous configuration is replaced)."""

    company: str
    users: int
    lines: int
    numbers: int
    dial_plans: int
    trunks: int
    config_version: int


def generate_sip_password() -> str:
    """A fresh SIP password: 20 letters and digits (about 119 bits) from ``secrets``."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def ha1_pair(extension: str, realm: str, password: str) -> tuple[str, str]:
    """(MD5, SHA-256) HA1 of a line's credentials."""
    return (
        compute_ha1(extension, realm, password, "MD5"),
        compute_ha1(extension, realm, password, "SHA-256"),
    )


class Store:
    """The persistent admin configuration and registrar bindings.

    Methods are synchronous and may block on I/O: call them from a thread or an executor, never from the
    event loop (the server uses ``BindingWriter`` for registrations).
    """

    def __init__(self, engine: sa.Engine, data_dir: Path) -> None:
        self.engine = engine
        self.data_dir = data_dir
        self._sqlite = engine.dialect.name == "sqlite"
        if engine.dialect.name == "postgresql":
            self._insert: Any = postgresql.insert
        else:
            self._insert = sqlite.insert
        self._upsert_sql = {n: _binding_upsert_sql(engine.dialect.paramstyle, n) for n in _UPSERT_CHUNKS}
        #: called (in the writing thread) after each committed configuration change of this process, so
        #: that a running engine reloads at once instead of at its next poll
        self.on_config_change: Callable[[], None] | None = None

    @classmethod
    def open(cls, data_dir: Path | str, url: str | None = None) -> Store:
        """Open (creating if needed) the store of ``data_dir``; ``url`` selects another database
        (``postgresql+psycopg://user@host/db``). Migrates the schema.

        Raises:
            SchemaVersionError: the database is newer than this engine.
            StoreError: the database is not usable.
        """
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(url or f"sqlite:///{directory / DB_FILE}")
        store = cls(engine, directory)
        try:
            with store._write() as conn:
                migrate(conn)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            # An unreachable server, a refused login, a database that does not exist: one line that says
            # which database (password hidden) and what the driver said, not a traceback.
            where = engine.url.render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            raise StoreError(f"cannot open the database {where}: {reason}") from exc
        except BaseException:
            engine.dispose()
            raise
        return store

    def listen_config(self, on_change: Callable[[], None]) -> ConfigListener | None:
        """Call ``on_change`` (in a thread of its own) whenever any process commits a configuration change,
        through PostgreSQL LISTEN/NOTIFY; None on SQLite, which has no such channel (the caller polls)."""
        if self._sqlite:
            return None
        listener = ConfigListener(self.engine, on_change)
        listener.start()
        return listener

    def close(self) -> None:
        """Release every database connection."""
        self.engine.dispose()

    # -- configuration -----------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when nothing was configured yet (no company saved, no users)."""
        with self._read() as conn:
            has_company = conn.execute(sa.select(schema.company.c.id).limit(1)).first() is not None
            has_user = conn.execute(sa.select(schema.users.c.id).limit(1)).first() is not None
        return not (has_company or has_user)

    def company(self) -> Company:
        """The company's settings (defaults, unsaved, while the store is empty)."""
        with self._read() as conn:
            return self._company(conn)

    def users(self) -> list[User]:
        with self._read() as conn:
            return _users(conn)

    def lines(self) -> list[Line]:
        with self._read() as conn:
            return _lines(conn)

    def numbers(self) -> list[PhoneNumber]:
        with self._read() as conn:
            return _numbers(conn)

    def trunks(self) -> list[Trunk]:
        """Every trunk in file order (the first with ``outbound`` set carries outbound calls)."""
        with self._read() as conn:
            return _trunks(conn)

    def dial_plans(self) -> list[DialPlan]:
        with self._read() as conn:
            return _dial_plans(conn)

    def lines_without_voicemail(self) -> frozenset[str]:
        """Extensions whose line options switch voicemail off (``{"voicemail": {"enabled": false}}``)."""
        with self._read() as conn:
            return _lines_without_voicemail(conn)

    def voicemail_email_targets(self) -> dict[str, str]:
        """Voicemail to e-mail: extension -> its user's e-mail address, for lines whose options say
        ``{"voicemail": {"email_notification": true}}`` and whose user has an address."""
        with self._read() as conn:
            return _voicemail_email_targets(conn)

    def routing_objects(self) -> list[RoutingObject]:
        """Ring groups, schedules, sound clips, shared mailboxes, queues, conference rooms and fax lines, in
        document order within each kind."""
        with self._read() as conn:
            return _routing_objects(conn)

    def config_version(self) -> int:
        """A counter bumped by every configuration change (cheap to poll)."""
        with self._read() as conn:
            return _config_version(conn)

    def sip_credentials(self) -> dict[str, Credentials]:
        """SIP username (the extension) -> its digest credentials for the company's realm."""
        with self._read() as conn:
            return _sip_credentials(conn, self._company(conn).sip_realm)

    def config_snapshot(self) -> StoredConfig:
        """Everything the running engine reads of the configuration, with its ``config_version``, in one
        read transaction (see the module docstring)."""
        with self._read(consistent=True) as conn:
            company = self._company(conn)
            return StoredConfig(
                version=_config_version(conn),
                company=company,
                users=tuple(_users(conn)),
                lines=tuple(_lines(conn)),
                numbers=tuple(_numbers(conn)),
                trunks=tuple(_trunks(conn)),
                dial_plans=tuple(_dial_plans(conn)),
                routing_objects=tuple(_routing_objects(conn)),
                credentials=_sip_credentials(conn, company.sip_realm),
                no_voicemail=_lines_without_voicemail(conn),
                voicemail_email=_voicemail_email_targets(conn),
                line_features=_line_features(conn),
            )

    def import_company(self, doc: Mapping[str, Any]) -> ImportSummary:
        """Replace the configuration (company, users, lines, numbers, dial plans, trunks) with ``doc``.

        All or nothing: the document is validated whole first and written in one transaction.
        Registrations are kept.

        Raises:
            ModelError: bad data, the field named by its path in the document (``users[3].extension``).
        """
        parsed = parse_company_document(doc)
        company = parsed.company
        realm = company.sip_realm
        user_rows = [
            {"first_name": u.first_name, "last_name": u.last_name, "email": u.email} for u in parsed.users
        ]
        with self._write() as conn:
            version = self._bump(conn)
            for table in (
                schema.lines,
                schema.users,
                schema.numbers,
                schema.dial_plans,
                schema.trunks,
                schema.routing_objects,
                schema.company,
            ):
                conn.execute(sa.delete(table))
            conn.execute(sa.insert(schema.company).values(id=1, **_company_row(company)))
            ids: list[int] = []
            if user_rows:
                stmt = sa.insert(schema.users).returning(schema.users.c.id, sort_by_parameter_order=True)
                ids = list(conn.execute(stmt, user_rows).scalars())
            line_rows = []
            for user_id, spec in zip(ids, parsed.users, strict=True):
                md5, sha256 = ha1_pair(spec.extension, realm, spec.sip_password)
                line_rows.append(
                    {
                        "user_id": user_id,
                        "extension": spec.extension,
                        "name": spec.line_name,
                        "external_caller_id": spec.external_caller_id,
                        "ha1_md5": md5,
                        "ha1_sha256": sha256,
                        "dial_permissions": _permissions_json(spec.dial_permissions),
                        "options": _line_options(spec),
                    }
                )
            if line_rows:
                conn.execute(sa.insert(schema.lines), line_rows)
            if parsed.numbers:
                conn.execute(
                    sa.insert(schema.numbers),
                    [
                        {"e164": n.e164, "route_kind": n.route_kind, "route_target": n.route_target}
                        for n in parsed.numbers
                    ],
                )
            if parsed.dial_plans:
                conn.execute(
                    sa.insert(schema.dial_plans),
                    [
                        {"name": p.name, "graph": json.dumps(p.graph, sort_keys=True)}
                        for p in parsed.dial_plans
                    ],
                )
            if parsed.trunks:
                conn.execute(
                    sa.insert(schema.trunks),
                    [
                        {
                            "name": t.name,
                            "sources": json.dumps(list(t.sources)),
                            "host": t.host,
                            "port": t.port,
                            "transport": t.transport,
                            "username": t.username,
                            "password": t.password,
                            "from_domain": t.from_domain,
                            "outbound": t.outbound,
                        }
                        for t in parsed.trunks
                    ],
                )
            if parsed.objects:
                conn.execute(
                    sa.insert(schema.routing_objects),
                    [
                        {"kind": o.kind, "name": o.name, "spec": json.dumps(o.spec, sort_keys=True)}
                        for o in parsed.objects
                    ],
                )
        return ImportSummary(
            company=company.name,
            users=len(user_rows),
            lines=len(line_rows),
            numbers=len(parsed.numbers),
            dial_plans=len(parsed.dial_plans),
            trunks=len(parsed.trunks),
            config_version=version,
        )

    def add_user(
        self,
        first: str,
        last: str,
        email: str | None,
        extension: str | None,
        sip_password: str | None,
        *,
        dial_permissions: Collection[str] | None = None,
    ) -> tuple[User, Line, str]:
        """Create a user with one line; returns them and the line's SIP password.

        ``extension`` None takes the next free one from the company's first extension; ``sip_password``
        None generates one; ``dial_permissions`` None gives ``DEFAULT_DIAL_PERMISSIONS`` (no international).
        An empty store gets a default company first (not the example company).

        Raises:
            ModelError: a bad or taken value, naming the field (``extension: 201 is already in use``).
        """
        first_name = rules.check_text(first, "first_name")
        last_name = rules.check_text(last, "last_name")
        mail = rules.check_email(email, "email")
        wanted = None if extension is None else rules.check_extension(extension, "extension")
        password = generate_sip_password() if sip_password is None else rules.check_sip_password(sip_password)
        permissions = (
            DEFAULT_DIAL_PERMISSIONS
            if dial_permissions is None
            else rules.check_dial_permissions(dial_permissions, "dial_permissions")
        )
        with self._write() as conn:
            self._bump(conn)
            company = self._company(conn)
            if conn.execute(sa.select(schema.company.c.id)).first() is None:
                conn.execute(sa.insert(schema.company).values(id=1, **_company_row(company)))
            in_use = set(conn.execute(sa.select(schema.lines.c.extension)).scalars())
            if wanted is None:
                ext = next_free_extension(in_use, company.first_extension)
            else:
                ext = rules.check_unique_extension(wanted, in_use, "extension")
            if mail is not None:
                taken = conn.execute(
                    sa.select(schema.users.c.id).where(sa.func.lower(schema.users.c.email) == mail.lower())
                ).first()
                if taken is not None:
                    raise ModelError("email", f"{mail} is already used by another user")
            user_id = conn.execute(
                sa.insert(schema.users)
                .values(first_name=first_name, last_name=last_name, email=mail)
                .returning(schema.users.c.id)
            ).scalar_one()
            md5, sha256 = ha1_pair(ext, company.sip_realm, password)
            line_name = f"{first_name} {last_name}"
            line_id = conn.execute(
                sa.insert(schema.lines)
                .values(
                    user_id=user_id,
                    extension=ext,
                    name=line_name,
                    external_caller_id=None,
                    ha1_md5=md5,
                    ha1_sha256=sha256,
                    dial_permissions=_permissions_json(permissions),
                )
                .returning(schema.lines.c.id)
            ).scalar_one()
        user = User(user_id, first_name, last_name, mail)
        return user, Line(line_id, user_id, ext, line_name, None, md5, sha256, permissions), password

    # -- registrations -----------------------------------------------------------------------------------

    def load_bindings(self, now_wall: float) -> list[BindingRecord]:
        """The unexpired bindings; deletes the expired ones (``expires_at <= now_wall``)."""
        reg = schema.registrations
        with self._write() as conn:
            conn.execute(sa.delete(reg).where(reg.c.expires_at <= now_wall))
            rows = conn.execute(sa.select(reg).order_by(reg.c.aor, reg.c.contact)).all()
        return [_binding(r) for r in rows]

    def list_bindings(self) -> list[BindingRecord]:
        """Every stored binding, expired or not, by AOR and contact."""
        reg = schema.registrations
        with self._read() as conn:
            rows = conn.execute(sa.select(reg).order_by(reg.c.aor, reg.c.contact)).all()
        return [_binding(r) for r in rows]

    def write_bindings(
        self,
        upserts: Sequence[BindingRecord],
        deletes: Sequence[tuple[str, str]] = (),
        delete_aors: Sequence[str] = (),
    ) -> None:
        """Apply registrar changes in one transaction: AOR deletes, then single deletes, then upserts.

        Blocking; ``BindingWriter`` calls it from its thread.
        """
        reg = schema.registrations
        with self._write() as conn:
            if delete_aors:
                conn.execute(
                    sa.delete(reg).where(reg.c.aor == sa.bindparam("b_aor")),
                    [{"b_aor": a} for a in delete_aors],
                )
            if deletes:
                conn.execute(
                    sa.delete(reg).where(
                        reg.c.aor == sa.bindparam("b_aor"), reg.c.contact == sa.bindparam("b_contact")
                    ),
                    [{"b_aor": a, "b_contact": c} for a, c in deletes],
                )
            if upserts:
                # The registrar writes thousands of rows a second from a thread that shares the GIL with the
                # event loop: driver-level statements of plain tuples cost a fraction of Core's per-row
                # parameter processing, and many rows per statement mean few sqlite3_step calls, each of
                # which lets go of the GIL and takes it back from the event loop (a thread switch both ways).
                # The statements are portable (SQLite >= 3.24, PostgreSQL). The last change of a key wins,
                # as it did row by row; one statement must not name a key twice (see _binding_upsert_sql).
                rows = list({(r.aor, r.contact): _binding_row(r) for r in upserts}.values())
                start = 0
                for size in _UPSERT_CHUNKS:
                    count = (len(rows) - start) // size
                    if count:
                        end = start + count * size
                        chunks = [tuple(chain.from_iterable(rows[i : i + size]))
                                  for i in range(start, end, size)]
                        conn.exec_driver_sql(self._upsert_sql[size], chunks)
                        start = end

    # -- call detail records ----------------------------------------------------------------------------

    def write_cdrs(self, records: Sequence[CallRecord]) -> None:
        """Insert call records in one transaction (all or none). Blocking; ``CdrWriter`` calls it from its
        thread.

        Text the database cannot take (lone surrogates kept from undecodable SIP bytes, NUL) is stored
        with U+FFFD in its place.

        Raises:
            sqlalchemy.exc.IntegrityError: a record's ``call_id`` is already stored.
            ValueError: a time is not a finite number.
        """
        if records:
            with self._write() as conn:
                conn.execute(sa.insert(schema.cdrs), [cdr_row(r) for r in records])

    def list_cdrs(self, limit: int = 50, *, since: float | None = None) -> list[CallRecord]:
        """The newest ``limit`` call records, newest first; ``since`` (epoch seconds) keeps only calls
        that started at or after it.

        Raises:
            ValueError: ``limit`` is negative.
        """
        if limit < 0:
            raise ValueError("limit must not be negative")
        cdrs = schema.cdrs
        stmt = sa.select(cdrs).order_by(cdrs.c.started_at.desc(), cdrs.c.call_id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(cdrs.c.started_at >= since)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [cdr_from_row(r._mapping) for r in rows]

    # -- plumbing ----------------------------------------------------------------------------------------

    @contextmanager
    def _read(self, *, consistent: bool = False) -> Iterator[sa.Connection]:
        """A read transaction; ``consistent`` makes all its statements see one snapshot on PostgreSQL too
        (SQLite's read transactions always do)."""
        with self.engine.connect() as conn:
            if consistent and not self._sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(pbx_begin="BEGIN IMMEDIATE")
            with conn.begin():
                yield conn
            changed = conn.info.pop(_BUMPED, False)
        if changed and self.on_config_change is not None:
            self.on_config_change()  # after the commit: a reader now sees the new version

    @staticmethod
    def _bump(conn: sa.Connection) -> int:
        """Bump config_version first thing in a write (on PostgreSQL its row lock serialises writers)."""
        cv = schema.config_version
        conn.info[_BUMPED] = True
        conn.execute(sa.update(cv).where(cv.c.id == 1).values(version=cv.c.version + 1))
        if conn.dialect.name == "postgresql":
            notify_config_change(conn)  # other processes' config loops wake on commit (engine.store.notify)
        return int(conn.execute(sa.select(cv.c.version).where(cv.c.id == 1)).scalar_one())

    @staticmethod
    def _company(conn: sa.Connection) -> Company:
        row = conn.execute(sa.select(schema.company).where(schema.company.c.id == 1)).first()
        if row is None:
            return Company(DEFAULT_COMPANY_NAME)
        return Company(
            row.name,
            row.sip_realm,
            row.timezone,
            row.country,
            row.first_extension,
            row.area_code,
            tuple(json.loads(row.media_release_networks)),
            row.hold_clip,
            tuple(sorted(json.loads(row.star_codes).items())),
        )


def sound_clip_path(data_dir: Path, name: str) -> Path:
    """Where sound clip ``name`` is kept: the engine plays it from there, the API and imports write it."""
    return data_dir / SOUNDS_DIR / f"{name}.wav"


def _company_row(company: Company) -> dict[str, Any]:
    return {
        "name": company.name,
        "sip_realm": company.sip_realm,
        "timezone": company.timezone,
        "country": company.country,
        "first_extension": company.first_extension,
        "area_code": company.area_code,
        "media_release_networks": json.dumps(list(company.media_release_networks)),
        "hold_clip": company.hold_clip,
        "star_codes": json.dumps(dict(company.star_codes), sort_keys=True),
    }


def _line_options(spec: UserSpec) -> str:
    """The line options a company file sets: voicemail off, or voicemail to the user's e-mail."""
    voicemail: dict[str, bool] = {}
    if not spec.voicemail:
        voicemail["enabled"] = False
    if spec.voicemail_to_email:
        voicemail["email_notification"] = True
    return json.dumps({"voicemail": voicemail}) if voicemail else "{}"


def _permissions_json(permissions: Collection[str]) -> str:
    # Spelt like the column's server default (schema.DEFAULT_DIAL_PERMISSIONS_JSON) for a tidy table.
    return json.dumps(rules.format_dial_permissions(permissions))


def _users(conn: sa.Connection) -> list[User]:
    rows = conn.execute(sa.select(schema.users).order_by(schema.users.c.id)).all()
    return [User(r.id, r.first_name, r.last_name, r.email) for r in rows]


def _lines(conn: sa.Connection) -> list[Line]:
    rows = conn.execute(sa.select(schema.lines).order_by(schema.lines.c.id)).all()
    return [_line(r) for r in rows]


def _numbers(conn: sa.Connection) -> list[PhoneNumber]:
    rows = conn.execute(sa.select(schema.numbers).order_by(schema.numbers.c.e164)).all()
    return [PhoneNumber(r.e164, r.route_kind, r.route_target) for r in rows]


def _trunks(conn: sa.Connection) -> list[Trunk]:
    rows = conn.execute(sa.select(schema.trunks).order_by(schema.trunks.c.id)).all()
    return [_trunk(r) for r in rows]


def _dial_plans(conn: sa.Connection) -> list[DialPlan]:
    rows = conn.execute(sa.select(schema.dial_plans).order_by(schema.dial_plans.c.id)).all()
    return [DialPlan(r.id, r.name, json.loads(r.graph)) for r in rows]


def _lines_without_voicemail(conn: sa.Connection) -> frozenset[str]:
    t = schema.lines
    rows = conn.execute(sa.select(t.c.extension, t.c.options)).all()
    return frozenset(r.extension for r in rows
                     if json.loads(r.options or "{}").get("voicemail", {}).get("enabled") is False)


def _line_features(conn: sa.Connection) -> dict[str, LineFeatures]:
    t = schema.lines
    rows = conn.execute(sa.select(t.c.extension, t.c.options)).all()
    found = ((r.extension, features_of(json.loads(r.options or "{}"))) for r in rows)
    return {ext: f for ext, f in found if f.active}


def _voicemail_email_targets(conn: sa.Connection) -> dict[str, str]:
    lines, users = schema.lines, schema.users
    q = sa.select(lines.c.extension, lines.c.options, users.c.email).join(
        users, users.c.id == lines.c.user_id
    )
    rows = conn.execute(q.where(users.c.email.is_not(None))).all()
    return {r.extension: r.email for r in rows
            if json.loads(r.options or "{}").get("voicemail", {}).get("email_notification") is True}


def _routing_objects(conn: sa.Connection) -> list[RoutingObject]:
    t = schema.routing_objects
    rows = conn.execute(sa.select(t.c.kind, t.c.name, t.c.spec).order_by(t.c.id)).all()
    return [RoutingObject(r.kind, r.name, json.loads(r.spec)) for r in rows]


def _config_version(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(schema.config_version.c.version)).scalar_one())


def _sip_credentials(conn: sa.Connection, realm: str) -> dict[str, Credentials]:
    lines = schema.lines
    rows = conn.execute(sa.select(lines.c.extension, lines.c.ha1_md5, lines.c.ha1_sha256)).all()
    return {r.extension: Credentials(r.extension, realm, r.ha1_md5, r.ha1_sha256) for r in rows}


def _line(r: sa.Row[Any]) -> Line:
    return Line(
        r.id,
        r.user_id,
        r.extension,
        r.name,
        r.external_caller_id,
        r.ha1_md5,
        r.ha1_sha256,
        frozenset(json.loads(r.dial_permissions)),
    )


def _trunk(r: sa.Row[Any]) -> Trunk:
    return Trunk(
        id=r.id,
        name=r.name,
        sources=tuple(json.loads(r.sources)),
        host=r.host,
        port=r.port,
        transport=r.transport,
        username=r.username,
        password=r.password,
        from_domain=r.from_domain,
        outbound=bool(r.outbound),
    )


def _binding(r: sa.Row[Any]) -> BindingRecord:
    return BindingRecord(
        aor=r.aor,
        contact=r.contact,
        expires_at=float(r.expires_at),
        q=float(r.q),
        call_id=r.call_id,
        cseq=r.cseq,
        source_transport=r.source_transport,
        source_host=r.source_host,
        source_port=r.source_port,
        user_agent=r.user_agent,
        instance_id=r.instance_id,
        reg_id=r.reg_id,
    )


def _create_engine(url: str) -> sa.Engine:
    try:
        engine = sa.create_engine(normalize_url(url))
    except ModuleNotFoundError as exc:
        raise StoreError(f"the database driver {exc.name} is not installed (PostgreSQL: pip install "
                         "'pbx-engine[postgresql]')") from exc
    except sa.exc.ArgumentError as exc:
        raise StoreError(f"not a database URL: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` (libpq's spellings, as operators write them) mean psycopg 3,
    the driver this engine is tested with; SQLAlchemy would pick psycopg2 for a bare ``postgresql://``."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module (see the module docstring).
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql(str(conn.get_execution_options().get("pbx_begin", "BEGIN")))
