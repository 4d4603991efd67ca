"""Administration operations on the store (issue 6): users with permissions, devices and lines, API tokens,
numbers (inventory, orders, port-in, routes), routing objects and dial plans, locations, the audit log and
CDR reports.

``AdminStore`` wraps a ``Store``. Every change runs in one write transaction that bumps ``config_version``
(the running engine polls it and recompiles) and appends an audit record (who, what, when) in the same
transaction, so a change and its record are never apart. Values are validated with ``engine.model.rules``
and ``engine.model.admin``; bad input raises ``ModelError`` naming the field, a missing object
``NotFoundError``.

Routing changes (routing objects, dial plans, number routes) take an optional ``validate`` callback that
receives the configuration as it would be after the change (``ConfigSnapshot``), inside the transaction:
raising from it rolls the change back. The API passes the dial-plan compiler there; the store itself
cannot import it (layers point down).

Secrets: SIP passwords are kept as HA1 only, except for a line on a provisioned desk phone, whose
configuration file must carry the password (see ``engine.provisioning``): that line also keeps it in clear
text, like trunk passwords. API and registration tokens are stored as SHA-256 digests, dialable and
provisioning passwords as PBKDF2 hashes. Secrets are returned once, by the call that generates them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from engine.clock import SYSTEM_CLOCK, Clock
from engine.files import fsync_dir
from engine.model import (
    DEFAULT_DIAL_PERMISSIONS,
    CallRecord,
    Company,
    DialPlan,
    Line,
    ModelError,
    PhoneNumber,
    User,
    features,
    next_free_extension,
    rules,
)
from engine.model import admin as am
from engine.store import schema
from engine.store.cdrs import cdr_from_row
from engine.store.errors import BulkEditError, NotFoundError
from engine.store.store import Store, _company_row, _line, generate_sip_password, ha1_pair

TOKEN_BYTES: Final = 32
EXTENSION_OBJECT_KINDS: Final = ("ring_groups", "queues", "conference_rooms", "fax_lines")
"""Routing-object kinds that may carry an ``extension`` (unique across lines, plans and these)."""
ROUTE_OBJECT_KIND: Final[Mapping[str, str]] = {
    "ring_group": "ring_groups",
    "queue": "queues",
    "conference_room": "conference_rooms",
    "fax_line": "fax_lines",
    "mailbox": "mailboxes",
}
"""Number route kind -> the routing-object kind its target names."""
_DUMMY_HASH: Final = am.hash_secret("not a password", b"pbx-engine-dummy")
"""Verified against when there is no user, so a failed login takes as long either way."""
_USER_FIELDS: Final = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "admin",
        "allow_web_login",
        "dial_username",
        "dial_password",
        "groups",
        "hot_desking",
        "softphone",
    }
)
_LINE_FIELDS: Final = frozenset({"name", "external_caller_id", "dial_permissions", "options", "location_id"})
_LINE_OPTION_KEYS: Final = frozenset({"find_me_follow_me", "voicemail", *features.OPTION_KEYS})
_VOICEMAIL_KEYS: Final = frozenset({"enabled", "email_notification", "greeting"})
MAX_FIND_ME_STEPS: Final = 10


@dataclass(frozen=True, slots=True)
class LineRecord:
    id: int
    user_id: int
    extension: str
    name: str
    external_caller_id: str | None
    dial_permissions: list[str]
    device_id: int | None
    location_id: int | None
    options: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user with the admin fields of v4 and their lines (secrets never included)."""

    id: int
    first_name: str
    last_name: str
    email: str | None
    admin: am.AdminRights
    allow_web_login: bool
    registered: bool
    dial_username: str | None
    groups: tuple[str, ...]
    hot_desking: bool
    softphone: bool
    lines: tuple[LineRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: int
    mac: str
    model: str | None
    vendor: str | None
    location_id: int | None
    prov_username: str
    allowed_networks: tuple[str, ...]
    line_ids: tuple[int, ...]
    created_at: float
    last_provisioned_at: float | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an API token (or a web-login session) belongs to."""

    user_id: int
    email: str | None
    rights: am.AdminRights
    token_id: int
    via_session: bool = False
    """Authenticated by a web-login session cookie (``token_id`` is then the session's id)."""

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}" + (f" ({self.email})" if self.email else "")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    user_id: int
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InventoryNumber:
    e164: str
    state: str
    source: str
    order_id: int | None


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    kind: str
    state: str
    numbers: tuple[str, ...]
    detail: dict[str, Any]
    foc_date: str | None
    reason: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    id: int
    kind: str
    name: str
    spec: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlanRecord:
    id: int
    name: str
    graph: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """The routing configuration as it would be after a change (what the dial-plan compiler reads)."""

    company: Company
    users: list[User]
    lines: list[Line]
    numbers: list[PhoneNumber]
    dial_plans: list[DialPlan]
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProvisioningLine:
    extension: str
    name: str
    sip_password: str | None


@dataclass(frozen=True, slots=True)
class ProvisioningData:
    """What a desk phone's configuration file needs, and how to check the phone's request."""

    device_id: int
    mac: str
    model: str | None
    prov_username: str
    prov_password_hash: str
    allowed_networks: tuple[str, ...]
    realm: str
    lines: tuple[ProvisioningLine, ...]


Validator = Callable[[ConfigSnapshot], None]


class AdminStore:
    """Administration operations over a ``Store``; blocking like it (run in a thread, not on the loop).

    ``clock`` gives the wall time of audit records, orders, sessions and tokens (only ``wall()`` is read:
    these times are stored and compared across restarts), ``random_bytes`` is the source of salts and
    tokens; tests inject both (a ``FakeClock``, a seeded source).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock = SYSTEM_CLOCK,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self._clock = clock
        self._random = random_bytes

    # -- plumbing -----------------------------------------------------------------------------------------

    @contextmanager
    def _change(
        self, actor: str, action: str, target: str, detail: Mapping[str, Any] | None = None
    ) -> Iterator[sa.Connection]:
        """A write transaction that bumps config_version and records the audit entry."""
        with self.store._write() as conn:
            self.store._bump(conn)
            yield conn
            conn.execute(
                sa.insert(schema.audit_log).values(
                    at=self._clock.wall(),
                    actor=actor,
                    action=action,
                    target=target,
                    detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
                )
            )

    def _token(self) -> str:
        return self._random(TOKEN_BYTES).hex()

    def _hash(self, secret: str) -> str:
        return am.hash_secret(secret, self._random(16))

    @staticmethod
    def _extensions_in_use(conn: sa.Connection) -> set[str]:
        """Extensions of lines, dial plans and the routing objects that take one."""
        used = set(conn.execute(sa.select(schema.lines.c.extension)).scalars())
        for graph in conn.execute(sa.select(schema.dial_plans.c.graph)).scalars():
            ext = json.loads(graph).get("extension")
            if isinstance(ext, str):
                used.add(ext)
        ro = schema.routing_objects
        for spec in conn.execute(sa.select(ro.c.spec).where(ro.c.kind.in_(EXTENSION_OBJECT_KINDS))).scalars():
            ext = json.loads(spec).get("extension")
            if isinstance(ext, str):
                used.add(ext)
        return used

    def next_free_extension(self) -> str:
        """The extension proposed for a new user (lowest free one from the company's first extension)."""
        with self.store._read() as conn:
            return next_free_extension(self._extensions_in_use(conn), Store._company(conn).first_extension)

    @staticmethod
    def company_numbers(conn: sa.Connection) -> set[str]:
        """The company's numbers: owned in the inventory or routed."""
        inv = schema.number_inventory
        owned = set(conn.execute(sa.select(inv.c.e164).where(inv.c.state == "owned")).scalars())
        return owned | set(conn.execute(sa.select(schema.numbers.c.e164)).scalars())

    def snapshot(self, conn: sa.Connection) -> ConfigSnapshot:
        objects: dict[str, list[dict[str, Any]]] = {}
        ro = schema.routing_objects
        for r in conn.execute(sa.select(ro.c.kind, ro.c.spec).order_by(ro.c.id)).all():
            objects.setdefault(r.kind, []).append(json.loads(r.spec))
        return ConfigSnapshot(
            company=Store._company(conn),
            users=[
                User(r.id, r.first_name, r.last_name, r.email)
                for r in conn.execute(sa.select(schema.users).order_by(schema.users.c.id)).all()
            ],
            lines=[_line(r) for r in conn.execute(sa.select(schema.lines).order_by(schema.lines.c.id)).all()],
            numbers=[
                PhoneNumber(r.e164, r.route_kind, r.route_target)
                for r in conn.execute(sa.select(schema.numbers).order_by(schema.numbers.c.e164)).all()
            ],
            dial_plans=[
                DialPlan(r.id, r.name, json.loads(r.graph))
                for r in conn.execute(sa.select(schema.dial_plans).order_by(schema.dial_plans.c.id)).all()
            ],
            objects=objects,
        )

    # -- users --------------------------------------------------------------------------------------------

    def users(self) -> list[UserRecord]:
        with self.store._read() as conn:
            return self._users(conn, None)

    def user(self, user_id: int) -> UserRecord:
        """Raises: NotFoundError."""
        with self.store._read() as conn:
            found = self._users(conn, user_id)
        if not found:
            raise NotFoundError("user", user_id)
        return found[0]

    @staticmethod
    def _users(conn: sa.Connection, user_id: int | None) -> list[UserRecord]:
        u, ln = schema.users, schema.lines
        q = sa.select(u).order_by(u.c.id)
        lq = sa.select(ln).order_by(ln.c.id)
        if user_id is not None:
            q = q.where(u.c.id == user_id)
            lq = lq.where(ln.c.user_id == user_id)
        by_user: dict[int, list[LineRecord]] = {}
        for r in conn.execute(lq).all():
            by_user.setdefault(r.user_id, []).append(_line_record(r))
        return [
            UserRecord(
                id=r.id,
                first_name=r.first_name,
                last_name=r.last_name,
                email=r.email,
                admin=am.AdminRights(r.admin_role, frozenset(json.loads(r.admin_permissions))),
                allow_web_login=bool(r.allow_web_login),
                registered=bool(r.registered),
                dial_username=r.dial_username,
                groups=tuple(json.loads(r.groups)),
                hot_desking=bool(r.hot_desking),
                softphone=bool(r.softphone),
                lines=tuple(by_user.get(r.id, ())),
            )
            for r in conn.execute(q).all()
        ]

    def create_user(
        self,
        actor: str,
        fields: Mapping[str, object],
        *,
        extension: object = None,
        with_line: bool = True,
        new_device: Mapping[str, object] | None = None,
        device_id: int | None = None,
    ) -> tuple[UserRecord, dict[str, str]]:
        """Create a user (and a line unless ``with_line`` is false); returns the user and the secrets made
        for it, shown once: ``sip_password`` and, with a new desk phone, ``provisioning_password``.

        ``fields`` are the user fields of ``update_user`` (first and last name required). ``extension``
        None takes the next free one. A desk phone is a ``new_device`` (``{"mac", "model"?}``) or an
        existing ``device_id``; neither makes a standalone user (or a softphone user with ``softphone``).

        Raises:
            ModelError: a bad or taken value, naming the field.
            NotFoundError: ``device_id`` does not exist.
        """
        unknown = sorted(set(fields) - _USER_FIELDS)
        if unknown:
            raise ModelError(unknown[0], "unknown field")
        for required in ("first_name", "last_name"):
            if required not in fields:
                raise ModelError(required, "is required")
        if new_device is not None and device_id is not None:
            raise ModelError("device", "give a new device or an existing one, not both")
        values = self._user_values(fields, "")
        wanted = None if extension is None else rules.check_extension(extension, "extension")
        mac = model = None
        if new_device is not None:
            mac = am.check_mac(new_device.get("mac"), "desk_phone.mac")
            raw_model = new_device.get("model")
            model = None if raw_model is None else rules.check_text(raw_model, "desk_phone.model")
        secrets_out: dict[str, str] = {}
        target = f"user:{values['first_name']} {values['last_name']}"
        with self._change(actor, "user.create", target, {"fields": sorted(fields)}) as conn:
            company = Store._company(conn)
            if conn.execute(sa.select(schema.company.c.id)).first() is None:
                conn.execute(sa.insert(schema.company).values(id=1, **_company_row(company)))
            self._check_user_unique(conn, values, None, "")
            user_id = int(
                conn.execute(
                    sa.insert(schema.users).values(**_user_row(values)).returning(schema.users.c.id)
                ).scalar_one()
            )
            if with_line:
                in_use = self._extensions_in_use(conn)
                if wanted is None:
                    ext = next_free_extension(in_use, company.first_extension)
                else:
                    ext = rules.check_unique_extension(wanted, in_use, "extension")
                password = generate_sip_password()
                md5, sha256 = ha1_pair(ext, company.sip_realm, password)
                dev: int | None = None
                if mac is not None:
                    dev, prov_password = self._insert_device(conn, mac, model, (), None, "desk_phone.mac")
                    secrets_out["provisioning_password"] = prov_password
                elif device_id is not None:
                    self._device_row(conn, device_id)
                    dev = device_id
                conn.execute(
                    sa.insert(schema.lines).values(
                        user_id=user_id,
                        extension=ext,
                        name=f"{values.get('first_name')} {values.get('last_name')}",
                        external_caller_id=None,
                        ha1_md5=md5,
                        ha1_sha256=sha256,
                        dial_permissions=json.dumps(rules.format_dial_permissions(DEFAULT_DIAL_PERMISSIONS)),
                        device_id=dev,
                        sip_password=password if dev is not None else None,
                    )
                )
                secrets_out["sip_password"] = password
            elif mac is not None or device_id is not None:
                raise ModelError("device", "a user without a line cannot have a desk phone")
            record = self._users(conn, user_id)[0]
        return record, secrets_out

    def _user_values(self, fields: Mapping[str, object], at: str) -> dict[str, Any]:
        """Validated column values for the given user fields (``at`` prefixes error paths)."""

        def f(name: str) -> str:
            return f"{at}{name}"

        out: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "first_name" or key == "last_name":
                out[key] = rules.check_text(value, f(key))
            elif key == "email":
                out[key] = rules.check_email(value, f(key))
            elif key == "admin":
                if not isinstance(value, Mapping):
                    raise ModelError(f(key), "must be a mapping {role, permissions}")
                out[key] = am.check_admin_rights(value.get("role"), value.get("permissions"), f(key))
            elif key == "allow_web_login":
                out[key] = rules.check_flag(value, f(key))
            elif key == "dial_username":
                out[key] = None if value is None else am.check_dial_digits(value, f(key))
            elif key == "dial_password":
                password = am.check_dial_digits(value, f(key))
                out["dial_password_hash"] = (
                    None if password == am.DEFAULT_DIAL_PASSWORD else self._hash(password)
                )
            elif key == "groups":
                out[key] = am.check_groups(value, f(key))
            elif key in ("hot_desking", "softphone"):
                out[key] = rules.check_flag(value, f(key))
            else:
                raise ModelError(f(key), "unknown field")
        return out

    @staticmethod
    def _check_user_unique(
        conn: sa.Connection, values: Mapping[str, Any], user_id: int | None, at: str
    ) -> None:
        u = schema.users
        mail = values.get("email")
        if mail is not None:
            q = sa.select(u.c.id).where(sa.func.lower(u.c.email) == mail.lower())
            if user_id is not None:
                q = q.where(u.c.id != user_id)
            if conn.execute(q).first() is not None:
                raise ModelError(f"{at}email", f"{mail} is already used by another user")
        name = values.get("dial_username")
        if name is not None:
            q = sa.select(u.c.id).where(u.c.dial_username == name)
            if user_id is not None:
                q = q.where(u.c.id != user_id)
            if conn.execute(q).first() is not None:
                raise ModelError(f"{at}dial_username", f"{name} is already used by another user")

    def update_user(self, actor: str, user_id: int, fields: Mapping[str, object]) -> UserRecord:
        """Change some of a user's fields (see ``create_user``).

        Turning web login on needs an e-mail on the user; changing the e-mail of a registered user
        requires a new registration.

        Raises:
            ModelError: a bad or taken value.
            NotFoundError: no such user.
        """
        values = self._user_values(fields, "")
        with self._change(actor, "user.update", f"user:{user_id}", {"fields": sorted(fields)}) as conn:
            self._apply_user(conn, user_id, values, "")
            return self._users(conn, user_id)[0]

    def _apply_user(
        self,
        conn: sa.Connection,
        user_id: int,
        values: Mapping[str, Any],
        at: str,
        originals: Mapping[int, str | None] | None = None,
    ) -> None:
        """Write validated values; ``originals`` holds e-mails a bulk edit cleared before applying rows."""
        u = schema.users
        row = conn.execute(sa.select(u).where(u.c.id == user_id)).first()
        if row is None:
            raise NotFoundError("user", user_id)
        self._check_user_unique(conn, values, user_id, at)
        before = originals[user_id] if originals is not None and user_id in originals else row.email
        email = values.get("email", before)
        allow = values.get("allow_web_login", bool(row.allow_web_login))
        if allow and email is None:
            raise ModelError(f"{at}allow_web_login", "web login needs an e-mail address on the user")
        if "admin" in values and row.admin_role == "super_admin" and values["admin"].role != "super_admin":
            self._keep_a_super_admin(conn, user_id, f"{at}admin.role")
        update = _user_row(values)
        if "email" in values and values["email"] != before:
            update.update(registered=False, registration_token_hash=None, web_password_hash=None)
        if not allow:
            update.update(registration_token_hash=None, web_password_hash=None)
        if update:
            conn.execute(sa.update(u).where(u.c.id == user_id).values(**update))

    @staticmethod
    def _keep_a_super_admin(conn: sa.Connection, user_id: int, at: str) -> None:
        u = schema.users
        others = conn.execute(
            sa.select(sa.func.count()).where(u.c.admin_role == "super_admin", u.c.id != user_id)
        ).scalar_one()
        if not others:
            raise ModelError(at, "the company must keep at least one super admin")

    def bulk_update(self, actor: str, rows: Sequence[Mapping[str, object]]) -> list[UserRecord]:
        """Edit many users at once, all or nothing: each row is ``{"id": N, <fields>}``.

        Raises:
            BulkEditError: every bad row with its field; nothing was changed.
        """
        errors: list[tuple[int, str, str]] = []
        parsed: list[tuple[int, int, dict[str, Any]]] = []  # (row index, user id, values)
        for i, row in enumerate(rows):
            raw_id = row.get("id")
            if not isinstance(raw_id, int) or isinstance(raw_id, bool):
                errors.append((i, "id", "must be a user id"))
                continue
            values: dict[str, Any] = {}
            bad = False
            for key, value in row.items():  # every bad field of the row, not only the first
                if key == "id":
                    continue
                try:
                    values.update(self._user_values({key: value}, ""))
                except ModelError as exc:
                    errors.append((i, exc.field, exc.message))
                    bad = True
            if not bad:
                parsed.append((i, raw_id, values))
        seen_mail: dict[str, int] = {}
        seen_name: dict[str, int] = {}
        seen_id: dict[int, int] = {}
        for index, uid, values in parsed:
            if uid in seen_id:
                errors.append((index, "id", f"user {uid} is also edited in row {seen_id[uid]}"))
            seen_id.setdefault(uid, index)
            mail = values.get("email")
            if mail is not None:
                key = mail.lower()
                if key in seen_mail:
                    errors.append((index, "email", f"{mail} is also given in row {seen_mail[key]}"))
                seen_mail.setdefault(key, index)
            name = values.get("dial_username")
            if name is not None:
                if name in seen_name:
                    errors.append((index, "dial_username", f"{name} is also given in row {seen_name[name]}"))
                seen_name.setdefault(name, index)
        if errors:
            raise BulkEditError(sorted(errors))
        with self._change(actor, "user.bulk_update", "users", {"rows": len(rows)}) as conn:
            # Free the unique values first, so that rows may swap e-mails or dialable usernames.
            u = schema.users
            ids = {uid for _, uid, _ in parsed}
            originals: dict[int, str | None] = {
                r.id: r.email for r in conn.execute(sa.select(u.c.id, u.c.email).where(u.c.id.in_(ids))).all()
            }
            for _, uid, values in parsed:
                cleared = {k: None for k in ("dial_username", "email") if k in values}
                if cleared:
                    conn.execute(sa.update(u).where(u.c.id == uid).values(**cleared))
            for index, uid, values in parsed:
                try:
                    self._apply_user(conn, uid, values, "", originals)
                except ModelError as exc:
                    errors.append((index, exc.field, exc.message))
                except NotFoundError:
                    errors.append((index, "id", f"no user {uid}"))
            if errors:
                raise BulkEditError(errors)
            records = [r for r in self._users(conn, None) if r.id in ids]
        return records

    def delete_user(self, actor: str, user_id: int) -> None:
        """Delete a user, their lines and tokens (the last super admin cannot be deleted).

        Raises:
            NotFoundError, ModelError.
        """
        u = schema.users
        with self._change(actor, "user.delete", f"user:{user_id}") as conn:
            row = conn.execute(sa.select(u.c.admin_role).where(u.c.id == user_id)).first()
            if row is None:
                raise NotFoundError("user", user_id)
            if row.admin_role == "super_admin":
                self._keep_a_super_admin(conn, user_id, "id")
            conn.execute(sa.delete(schema.lines).where(schema.lines.c.user_id == user_id))
            conn.execute(sa.delete(schema.api_tokens).where(schema.api_tokens.c.user_id == user_id))
            conn.execute(sa.delete(u).where(u.c.id == user_id))

    # -- web login ---------------------------------------------------------------------------------------

    def start_registration(self, actor: str, user_id: int) -> str:
        """A registration token for the user's web login (shown once; a new one replaces the old).

        Raises:
            ModelError: the user has no e-mail or web login is not allowed.
            NotFoundError: no such user.
        """
        token = self._token()
        u = schema.users
        with self._change(actor, "user.login_invite", f"user:{user_id}") as conn:
            row = conn.execute(sa.select(u).where(u.c.id == user_id)).first()
            if row is None:
                raise NotFoundError("user", user_id)
            if row.email is None:
                raise ModelError("email", "the user needs an e-mail address to log in")
            if not row.allow_web_login:
                raise ModelError("allow_web_login", "web login is not allowed for this user")
            conn.execute(
                sa.update(u)
                .where(u.c.id == user_id)
                .values(
                    registration_token_hash=am.token_digest(token), registered=False, web_password_hash=None
                )
            )
        return token

    def complete_registration(self, token: str, email: object, password: object) -> UserRecord:
        """Finish a web-login registration: the token must be current and ``email`` the user's own; the
        user's web-login ``password`` is set (see ``login``).

        Raises:
            ModelError: an unknown token (field ``token``), another e-mail (field ``email``) or a password
                the rules refuse (field ``password``).
        """
        mail = rules.check_email(email, "email")
        if mail is None:
            raise ModelError("email", "is required")
        secret = am.check_web_password(password, "password")
        stored = self._hash(secret)
        u = schema.users
        digest = am.token_digest(token)
        with self.store._write() as conn:
            row = conn.execute(sa.select(u).where(u.c.registration_token_hash == digest)).first()
            if row is None or not row.allow_web_login:
                raise ModelError("token", "unknown or expired registration token")
            if row.email is None or row.email.lower() != mail.lower():
                raise ModelError("email", "does not match the e-mail address the invitation was sent to")
            self.store._bump(conn)
            conn.execute(
                sa.update(u)
                .where(u.c.id == row.id)
                .values(registered=True, registration_token_hash=None, web_password_hash=stored)
            )
            conn.execute(
                sa.insert(schema.audit_log).values(
                    at=self._clock.wall(),
                    actor=f"user:{row.id} ({row.email})",
                    action="user.login_registered",
                    target=f"user:{row.id}",
                    detail="{}",
                )
            )
            return self._users(conn, row.id)[0]

    # -- web-login sessions ----------------------------------------------------------------------------------
    #
    # A registered user's web-login password is a PBKDF2 hash in ``users.web_password_hash``; a session is a
    # ``web_sessions`` row holding the SHA-256 of its cookie and when it expires. A new invitation, an
    # e-mail change or web login turned off clears the password (and ``registered``), which ends the login
    # and every session with it.

    def login(self, email: object, password: object, ttl_s: float) -> tuple[Principal, str, float] | None:
        """Check a web login and make a session: (principal, session secret, expires at), or None when the
        e-mail is unknown, the user may not log in, has not registered, or the password is wrong (the same
        answer for each, and a PBKDF2 run each time, so neither the answer nor its time tells them apart).

        Raises:
            Nothing for wrong credentials (None); StoreError on database failure.
        """
        try:
            mail = rules.check_email(email, "email")
            secret = password if isinstance(password, str) else ""
            (mail or "").encode()
            secret.encode()
        except (ModelError, UnicodeEncodeError):  # no user has such an address or password
            mail, secret = None, ""
        u, t = schema.users, schema.web_sessions
        row = None
        if mail:
            with self.store._read() as conn:
                row = conn.execute(sa.select(u).where(sa.func.lower(u.c.email) == mail.lower())).first()
        stored = row.web_password_hash if row is not None else None
        usable = (
            row is not None and bool(row.allow_web_login) and bool(row.registered) and isinstance(stored, str)
        )
        encoded = stored if usable and isinstance(stored, str) else _DUMMY_HASH
        if not am.verify_secret(secret, encoded) or not usable or row is None:
            return None
        token = self._token()
        now = self._clock.wall()
        with self.store._write() as conn:
            conn.execute(sa.delete(t).where(t.c.expires_at <= now))
            session_id = conn.execute(
                sa.insert(t)
                .values(
                    user_id=row.id, token_hash=am.token_digest(token), created_at=now, expires_at=now + ttl_s
                )
                .returning(t.c.id)
            ).scalar_one()
            self._audit(conn, f"user:{row.id} ({row.email})", "session.login", f"user:{row.id}")
        rights = am.AdminRights(row.admin_role, frozenset(json.loads(row.admin_permissions)))
        return Principal(row.id, row.email, rights, int(session_id), via_session=True), token, now + ttl_s

    def session_principal(self, token: str, ttl_s: float) -> Principal | None:
        """The user of a live session (made less than ``ttl_s`` ago, the user still allowed to log in and
        registered), or None (a read, no audit)."""
        t, u = schema.web_sessions, schema.users
        q = (
            sa.select(
                t.c.id,
                t.c.created_at,
                t.c.expires_at,
                u.c.id.label("uid"),
                u.c.email,
                u.c.admin_role,
                u.c.admin_permissions,
                u.c.allow_web_login,
                u.c.registered,
            )
            .join(u, u.c.id == t.c.user_id)
            .where(t.c.token_hash == am.token_digest(token))
        )
        with self.store._read() as conn:
            row = conn.execute(q).first()
        if row is None or not row.allow_web_login or not row.registered:
            return None
        if min(row.expires_at, row.created_at + ttl_s) <= self._clock.wall():
            return None
        rights = am.AdminRights(row.admin_role, frozenset(json.loads(row.admin_permissions)))
        return Principal(row.uid, row.email, rights, row.id, via_session=True)

    def logout(self, principal: Principal) -> None:
        """End the principal's session (nothing for an API token's principal)."""
        if not principal.via_session:
            return
        t = schema.web_sessions
        with self.store._write() as conn:
            conn.execute(sa.delete(t).where(t.c.id == principal.token_id))
            self._audit(conn, principal.actor, "session.logout", f"user:{principal.user_id}")

    def change_web_password(self, principal: Principal, current: object, new: object) -> None:
        """Set a registered user's web-login password; every other session of theirs ends.

        Raises:
            ModelError: the current password is wrong (field ``current_password``), the user has no web
                login (field ``password``), or the new one is refused (field ``new_password``).
        """
        fresh = am.check_web_password(new, "new_password")
        u, t = schema.users, schema.web_sessions
        with self.store._read() as conn:
            row = conn.execute(sa.select(u).where(u.c.id == principal.user_id)).first()
        stored = row.web_password_hash if row is not None else None
        if row is None or not row.registered or not isinstance(stored, str):
            raise ModelError("password", "this user has no web login (complete the registration first)")
        if not isinstance(current, str) or not am.verify_secret(current, stored):
            raise ModelError("current_password", "is not the current password")
        with self.store._write() as conn:
            # Only if nobody changed it meanwhile (compare and set), so two changes cannot interleave.
            done = conn.execute(
                sa.update(u)
                .where(u.c.id == row.id, u.c.web_password_hash == stored)
                .values(web_password_hash=self._hash(fresh))
            ).rowcount
            if done == 0:
                raise ModelError("current_password", "the password changed meanwhile; try again")
            keep = principal.token_id if principal.via_session else -1
            conn.execute(sa.delete(t).where(t.c.user_id == row.id, t.c.id != keep))
            self._audit(conn, principal.actor, "user.web_password", f"user:{row.id}")

    def record_event(self, actor: str, action: str, target: str, detail: Mapping[str, object]) -> None:
        """An audit record for a change kept outside the database (e.g. a voicemail greeting file)."""
        with self.store._write() as conn:
            conn.execute(
                sa.insert(schema.audit_log).values(
                    at=self._clock.wall(),
                    actor=actor,
                    action=action,
                    target=target,
                    detail=json.dumps(detail),
                )
            )

    def _audit(self, conn: sa.Connection, actor: str, action: str, target: str) -> None:
        """An audit record for an event that changes no configuration (no config_version bump)."""
        conn.execute(
            sa.insert(schema.audit_log).values(
                at=self._clock.wall(), actor=actor, action=action, target=target, detail="{}"
            )
        )

    # -- API tokens --------------------------------------------------------------------------------------

    def create_token(self, actor: str, user_id: int, name: object) -> tuple[TokenRecord, str]:
        """A new API token for ``user_id``: the record and the token itself (shown once).

        Raises:
            ModelError, NotFoundError.
        """
        label = rules.check_text(name, "name")
        token = self._token()
        with self._change(actor, "token.create", f"user:{user_id}", {"name": label}) as conn:
            if conn.execute(sa.select(schema.users.c.id).where(schema.users.c.id == user_id)).first() is None:
                raise NotFoundError("user", user_id)
            at = self._clock.wall()
            token_id = conn.execute(
                sa.insert(schema.api_tokens)
                .values(user_id=user_id, name=label, token_hash=am.token_digest(token), created_at=at)
                .returning(schema.api_tokens.c.id)
            ).scalar_one()
        return TokenRecord(int(token_id), user_id, label, at), token

    def tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        t = schema.api_tokens
        q = sa.select(t).order_by(t.c.id)
        if user_id is not None:
            q = q.where(t.c.user_id == user_id)
        with self.store._read() as conn:
            return [TokenRecord(r.id, r.user_id, r.name, r.created_at) for r in conn.execute(q).all()]

    def revoke_token(self, actor: str, token_id: int) -> None:
        """Raises: NotFoundError."""
        t = schema.api_tokens
        with self._change(actor, "token.revoke", f"token:{token_id}") as conn:
            q = sa.delete(t).where(t.c.id == token_id)
            if conn.execute(q).rowcount == 0:
                raise NotFoundError("token", token_id)

    def principal(self, token: str) -> Principal | None:
        """The user an API token belongs to, or None for an unknown token (a read, no audit)."""
        t, u = schema.api_tokens, schema.users
        q = (
            sa.select(t.c.id, u.c.id.label("uid"), u.c.email, u.c.admin_role, u.c.admin_permissions)
            .join(u, u.c.id == t.c.user_id)
            .where(t.c.token_hash == am.token_digest(token))
        )
        with self.store._read() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        rights = am.AdminRights(row.admin_role, frozenset(json.loads(row.admin_permissions)))
        return Principal(row.uid, row.email, rights, row.id)

    def bootstrap_admin(self, email: object) -> tuple[UserRecord, str]:
        """The CLI's first-token path: the user with ``email`` (created without a line when missing)
        becomes super admin and gets a new API token. Only someone with the data directory can do this.

        Raises:
            ModelError: a bad e-mail address.
        """
        user_id = self._bootstrap_super_admin(email)
        _, token = self.create_token("cli", user_id, "bootstrap")
        return self.user(user_id), token

    def bootstrap_web_admin(self, email: object) -> tuple[UserRecord, str]:
        """The CLI's first web-login path: the user with ``email`` (created without a line when missing)
        becomes super admin, may log in to the web admin, and gets a registration token (shown once) to
        set the password with, as an invited user does (``complete_registration``).

        Raises:
            ModelError: a bad e-mail address.
        """
        user_id = self._bootstrap_super_admin(email)
        self.update_user("cli", user_id, {"allow_web_login": True})
        token = self.start_registration("cli", user_id)
        return self.user(user_id), token

    def _bootstrap_super_admin(self, email: object) -> int:
        mail = rules.check_email(email, "email")
        if mail is None:
            raise ModelError("email", "is required")
        u = schema.users
        with self.store._read() as conn:
            row = conn.execute(sa.select(u.c.id).where(sa.func.lower(u.c.email) == mail.lower())).first()
        if row is None:
            local = mail.split("@", 1)[0][:100] or "admin"
            user, _ = self.create_user(
                "cli", {"first_name": local, "last_name": "Admin", "email": mail}, with_line=False
            )
            user_id = user.id
        else:
            user_id = int(row.id)
        self.update_user("cli", user_id, {"admin": {"role": "super_admin", "permissions": []}})
        return user_id

    # -- devices and lines ---------------------------------------------------------------------------------

    def _insert_device(
        self,
        conn: sa.Connection,
        mac: str,
        model: str | None,
        networks: tuple[str, ...],
        location_id: int | None,
        at: str,
    ) -> tuple[int, str]:
        d = schema.devices
        if conn.execute(sa.select(d.c.id).where(d.c.mac == mac)).first() is not None:
            raise ModelError(at, f"a device with MAC {mac} already exists (choose it as an existing device)")
        if location_id is not None:
            self._location_row(conn, location_id)
        password = generate_sip_password()
        device_id = conn.execute(
            sa.insert(d)
            .values(
                mac=mac,
                model=model,
                vendor=None,
                location_id=location_id,
                prov_username=mac,
                prov_password_hash=self._hash(password),
                allowed_networks=json.dumps(list(networks)),
                created_at=self._clock.wall(),
            )
            .returning(d.c.id)
        ).scalar_one()
        return int(device_id), password

    @staticmethod
    def _device_row(conn: sa.Connection, device_id: int) -> sa.Row[Any]:
        row = conn.execute(sa.select(schema.devices).where(schema.devices.c.id == device_id)).first()
        if row is None:
            raise NotFoundError("device", device_id)
        return row

    def create_device(
        self,
        actor: str,
        mac: object,
        model: object = None,
        allowed_networks: object = None,
        location_id: int | None = None,
    ) -> tuple[DeviceRecord, str]:
        """A desk phone by MAC; returns it and its provisioning password (shown once).

        Raises:
            ModelError, NotFoundError (location).
        """
        norm = am.check_mac(mac, "mac")
        label = None if model is None else rules.check_text(model, "model")
        networks = rules.check_networks(allowed_networks, "allowed_networks")
        with self._change(actor, "device.create", f"mac:{norm}") as conn:
            device_id, password = self._insert_device(conn, norm, label, networks, location_id, "mac")
            record = self._devices(conn, device_id)[0]
        return record, password

    def devices(self) -> list[DeviceRecord]:
        with self.store._read() as conn:
            return self._devices(conn, None)

    def device(self, device_id: int) -> DeviceRecord:
        with self.store._read() as conn:
            found = self._devices(conn, device_id)
        if not found:
            raise NotFoundError("device", device_id)
        return found[0]

    @staticmethod
    def _devices(conn: sa.Connection, device_id: int | None) -> list[DeviceRecord]:
        d, ln = schema.devices, schema.lines
        q = sa.select(d).order_by(d.c.id)
        if device_id is not None:
            q = q.where(d.c.id == device_id)
        lines: dict[int, list[int]] = {}
        for r in conn.execute(sa.select(ln.c.id, ln.c.device_id).where(ln.c.device_id.is_not(None))).all():
            lines.setdefault(r.device_id, []).append(r.id)
        return [
            DeviceRecord(
                id=r.id,
                mac=r.mac,
                model=r.model,
                vendor=r.vendor,
                location_id=r.location_id,
                prov_username=r.prov_username,
                allowed_networks=tuple(json.loads(r.allowed_networks)),
                line_ids=tuple(sorted(lines.get(r.id, ()))),
                created_at=float(r.created_at),
                last_provisioned_at=None if r.last_provisioned_at is None else float(r.last_provisioned_at),
            )
            for r in conn.execute(q).all()
        ]

    def update_device(self, actor: str, device_id: int, fields: Mapping[str, object]) -> DeviceRecord:
        """Change a device's model, allowed networks or location.

        Raises:
            ModelError, NotFoundError.
        """
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "model":
                values["model"] = None if value is None else rules.check_text(value, "model")
            elif key == "allowed_networks":
                values["allowed_networks"] = json.dumps(list(rules.check_networks(value, key)))
            elif key == "location_id":
                values["location_id"] = _optional_id(value, key)
            else:
                raise ModelError(key, "unknown field")
        with self._change(actor, "device.update", f"device:{device_id}", {"fields": sorted(fields)}) as conn:
            self._device_row(conn, device_id)
            if values.get("location_id") is not None:
                self._location_row(conn, values["location_id"])
            if values:
                conn.execute(
                    sa.update(schema.devices).where(schema.devices.c.id == device_id).values(**values)
                )
            return self._devices(conn, device_id)[0]

    def delete_device(self, actor: str, device_id: int) -> None:
        """Remove a device; its lines stay, without a desk phone (and without a clear-text password)."""
        ln = schema.lines
        with self._change(actor, "device.delete", f"device:{device_id}") as conn:
            self._device_row(conn, device_id)
            conn.execute(
                sa.update(ln).where(ln.c.device_id == device_id).values(device_id=None, sip_password=None)
            )
            conn.execute(sa.delete(schema.devices).where(schema.devices.c.id == device_id))

    def rotate_device_password(self, actor: str, device_id: int) -> str:
        """A new provisioning password for the device (shown once)."""
        password = generate_sip_password()
        with self._change(actor, "device.rotate_password", f"device:{device_id}") as conn:
            self._device_row(conn, device_id)
            conn.execute(
                sa.update(schema.devices)
                .where(schema.devices.c.id == device_id)
                .values(prov_password_hash=self._hash(password))
            )
        return password

    def lines(self) -> list[LineRecord]:
        with self.store._read() as conn:
            return [
                _line_record(r) for r in conn.execute(sa.select(schema.lines).order_by(schema.lines.c.id))
            ]

    def line(self, line_id: int) -> LineRecord:
        with self.store._read() as conn:
            return _line_record(self._line_row(conn, line_id))

    @staticmethod
    def _line_row(conn: sa.Connection, line_id: int) -> sa.Row[Any]:
        row = conn.execute(sa.select(schema.lines).where(schema.lines.c.id == line_id)).first()
        if row is None:
            raise NotFoundError("line", line_id)
        return row

    def update_line(self, actor: str, line_id: int, fields: Mapping[str, object]) -> LineRecord:
        """Change a line's name, external caller ID (one of the company's numbers), dial permissions,
        options (``find_me_follow_me`` steps, ``voicemail`` settings) or location.

        Raises:
            ModelError, NotFoundError.
        """
        unknown = sorted(set(fields) - _LINE_FIELDS - {"device_id"})
        if unknown:
            raise ModelError(unknown[0], "unknown field")
        values: dict[str, Any] = {}
        if "name" in fields:
            values["name"] = rules.check_text(fields["name"], "name")
        if "external_caller_id" in fields:
            raw = fields["external_caller_id"]
            values["external_caller_id"] = (
                None if raw is None else rules.check_e164(raw, "external_caller_id")
            )
        if "dial_permissions" in fields:
            values["dial_permissions"] = json.dumps(
                rules.format_dial_permissions(rules.check_dial_permissions(fields["dial_permissions"]))
            )
        if "options" in fields:
            values["options"] = json.dumps(check_line_options(fields["options"]), sort_keys=True)
        if "location_id" in fields:
            values["location_id"] = _optional_id(fields["location_id"], "location_id")
        with self._change(actor, "line.update", f"line:{line_id}", {"fields": sorted(fields)}) as conn:
            row = self._line_row(conn, line_id)
            caller_id = values.get("external_caller_id")
            if caller_id is not None and caller_id not in self.company_numbers(conn):
                raise ModelError("external_caller_id", f"{caller_id} is not one of the company's numbers")
            if values.get("location_id") is not None:
                self._location_row(conn, values["location_id"])
            if "device_id" in fields:
                device = _optional_id(fields["device_id"], "device_id")
                if device is not None:
                    self._device_row(conn, device)
                values["device_id"] = device
                if device is None:
                    values["sip_password"] = None
                elif row.sip_password is None:
                    raise ModelError(
                        "device_id", "rotate the line's SIP password when moving it onto a desk phone"
                    )
            if values:
                conn.execute(sa.update(schema.lines).where(schema.lines.c.id == line_id).values(**values))
            return _line_record(self._line_row(conn, line_id))

    def rotate_line_password(self, actor: str, line_id: int, device_id: int | None = None) -> str:
        """A new SIP password for the line (shown once); ``device_id`` also puts the line on that desk
        phone. A line on a desk phone keeps the password for its configuration file."""
        password = generate_sip_password()
        with self._change(actor, "line.rotate_password", f"line:{line_id}") as conn:
            row = self._line_row(conn, line_id)
            if device_id is not None:
                self._device_row(conn, device_id)
            device = device_id if device_id is not None else row.device_id
            md5, sha256 = ha1_pair(row.extension, Store._company(conn).sip_realm, password)
            conn.execute(
                sa.update(schema.lines)
                .where(schema.lines.c.id == line_id)
                .values(
                    ha1_md5=md5,
                    ha1_sha256=sha256,
                    device_id=device,
                    sip_password=password if device is not None else None,
                )
            )
        return password

    # -- provisioning --------------------------------------------------------------------------------------

    def provisioning_data(self, mac: str) -> ProvisioningData | None:
        """What the desk phone with ``mac`` (normalised) gets, or None for an unknown MAC."""
        d, ln = schema.devices, schema.lines
        with self.store._read() as conn:
            row = conn.execute(sa.select(d).where(d.c.mac == mac)).first()
            if row is None:
                return None
            lines = conn.execute(sa.select(ln).where(ln.c.device_id == row.id).order_by(ln.c.id)).all()
            realm = Store._company(conn).sip_realm
        return ProvisioningData(
            device_id=row.id,
            mac=row.mac,
            model=row.model,
            prov_username=row.prov_username,
            prov_password_hash=row.prov_password_hash,
            allowed_networks=tuple(json.loads(row.allowed_networks)),
            realm=realm,
            lines=tuple(ProvisioningLine(r.extension, r.name, r.sip_password) for r in lines),
        )

    def record_provisioned(self, device_id: int, model: str | None, vendor: str) -> None:
        """Note a successful fetch; the model the phone reported fills an empty ``model`` (no bump: the
        routing configuration does not change)."""
        d = schema.devices
        with self.store._write() as conn:
            values: dict[str, Any] = {"last_provisioned_at": self._clock.wall(), "vendor": vendor}
            conn.execute(sa.update(d).where(d.c.id == device_id).values(**values))
            if model:
                conn.execute(
                    sa.update(d).where(d.c.id == device_id, d.c.model.is_(None)).values(model=model[:100])
                )

    # -- numbers -------------------------------------------------------------------------------------------

    def inventory(self) -> list[InventoryNumber]:
        """The pool of available numbers and the company's own, with routed numbers of an imported
        company file listed as owned."""
        inv = schema.number_inventory
        with self.store._read() as conn:
            rows = {
                r.e164: InventoryNumber(r.e164, r.state, r.source, r.order_id)
                for r in conn.execute(sa.select(inv)).all()
            }
            for e164 in conn.execute(sa.select(schema.numbers.c.e164)).scalars():
                rows.setdefault(e164, InventoryNumber(e164, "owned", "imported", None))
        return [rows[k] for k in sorted(rows)]

    def add_to_pool(self, actor: str, numbers: object) -> list[InventoryNumber]:
        """Numbers the carrier holds for the company to order (the carrier team stocks the pool).

        Raises:
            ModelError: a bad number, or one already in the inventory.
        """
        listed = am.check_e164_list(numbers, "numbers")
        inv = schema.number_inventory
        with self._change(actor, "number.pool_add", "inventory", {"numbers": list(listed)}) as conn:
            known = self.company_numbers(conn) | set(conn.execute(sa.select(inv.c.e164)).scalars())
            for i, number in enumerate(listed):
                if number in known:
                    raise ModelError(f"numbers[{i}]", f"{number} is already in the inventory")
            conn.execute(
                sa.insert(inv),
                [{"e164": n, "state": "available", "source": "pool", "order_id": None} for n in listed],
            )
        return [InventoryNumber(n, "available", "pool", None) for n in listed]

    def order_numbers(self, actor: str, quantity: object, prefix: object = None) -> OrderRecord:
        """Order ``quantity`` new numbers starting with ``prefix`` (E.164 digits, optional) from the pool;
        when the pool cannot serve it the order is recorded as a manual order for the carrier team.

        Raises:
            ModelError: a bad quantity or prefix.
        """
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 100:
            raise ModelError("quantity", "must be a number from 1 to 100")
        if prefix is not None and (
            not isinstance(prefix, str)
            or not prefix.startswith("+")
            or not prefix[1:].isdigit()
            or len(prefix) > 16
        ):
            raise ModelError("prefix", "must be a '+' and digits, e.g. '+4930'")
        inv = schema.number_inventory
        now = self._clock.wall()
        with self._change(actor, "number.order", "orders", {"quantity": quantity, "prefix": prefix}) as conn:
            q = sa.select(inv.c.e164).where(inv.c.state == "available").order_by(inv.c.e164)
            if prefix is not None:
                q = q.where(inv.c.e164.startswith(prefix))
            available = list(conn.execute(q.limit(quantity)).scalars())
            complete = len(available) == quantity
            state = "completed" if complete else "manual"
            taken = available if complete else []
            order_id = int(
                conn.execute(
                    sa.insert(schema.number_orders)
                    .values(
                        kind="order",
                        state=state,
                        numbers=json.dumps(taken),
                        detail=json.dumps({"quantity": quantity, "prefix": prefix}),
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(schema.number_orders.c.id)
                ).scalar_one()
            )
            if taken:
                conn.execute(
                    sa.update(inv).where(inv.c.e164.in_(taken)).values(state="owned", order_id=order_id)
                )
            return self._orders(conn, order_id)[0]

    def orders(self) -> list[OrderRecord]:
        with self.store._read() as conn:
            return self._orders(conn, None)

    def order(self, order_id: int) -> OrderRecord:
        with self.store._read() as conn:
            found = self._orders(conn, order_id)
        if not found:
            raise NotFoundError("order", order_id)
        return found[0]

    @staticmethod
    def _orders(conn: sa.Connection, order_id: int | None) -> list[OrderRecord]:
        o = schema.number_orders
        q = sa.select(o).order_by(o.c.id)
        if order_id is not None:
            q = q.where(o.c.id == order_id)
        return [
            OrderRecord(
                r.id,
                r.kind,
                r.state,
                tuple(json.loads(r.numbers)),
                json.loads(r.detail),
                r.foc_date,
                r.reason,
                float(r.created_at),
                float(r.updated_at),
            )
            for r in conn.execute(q).all()
        ]

    def create_port_in(self, actor: str, body: object) -> OrderRecord:
        """A port-in request in state ``draft``.

        Raises:
            ModelError: bad data, or a number that is already the company's.
        """
        spec = am.check_port_request(body)
        now = self._clock.wall()
        with self._change(actor, "port.create", "orders", {"numbers": list(spec.numbers)}) as conn:
            owned = self.company_numbers(conn)
            for i, number in enumerate(spec.numbers):
                if number in owned:
                    raise ModelError(f"numbers[{i}]", f"{number} is already one of the company's numbers")
            order_id = int(
                conn.execute(
                    sa.insert(schema.number_orders)
                    .values(
                        kind="port_in",
                        state="draft",
                        numbers=json.dumps(list(spec.numbers)),
                        detail=json.dumps(_port_detail(spec)),
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(schema.number_orders.c.id)
                ).scalar_one()
            )
            return self._orders(conn, order_id)[0]

    def port_in_action(
        self, actor: str, order_id: int, action: object, foc_date: object = None, reason: object = None
    ) -> OrderRecord:
        """Move a port-in request: ``submit``, ``set_foc`` (with ``foc_date``), ``complete`` (its numbers
        become the company's, routable), ``reject`` (with ``reason``) or ``reopen``.

        Raises:
            ModelError: an action the state does not allow, or a missing date/reason.
            NotFoundError: no such port-in request.
        """
        verb = am.check_choice(action, am.PORT_ACTIONS, "action")
        o, inv = schema.number_orders, schema.number_inventory
        with self._change(actor, f"port.{verb}", f"order:{order_id}") as conn:
            row = conn.execute(sa.select(o).where(o.c.id == order_id, o.c.kind == "port_in")).first()
            if row is None:
                raise NotFoundError("port_in", order_id)
            state = am.port_transition(row.state, verb)
            values: dict[str, Any] = {"state": state, "updated_at": self._clock.wall()}
            if verb == "set_foc":
                if foc_date is None:
                    raise ModelError("foc_date", "is required to set the FOC date")
                values["foc_date"] = am.check_date(foc_date, "foc_date")
            if verb == "reject":
                if reason is None:
                    raise ModelError("reason", "a rejection needs a reason")
                values["reason"] = rules.check_text(reason, "reason", max_len=500)
            if verb == "reopen":
                values.update(reason=None, foc_date=None)
            if verb == "complete":
                numbers = json.loads(row.numbers)
                owned = self.company_numbers(conn)
                clash = [n for n in numbers if n in owned]
                if clash:
                    raise ModelError("numbers", f"{clash[0]} is already one of the company's numbers")
                conn.execute(sa.delete(inv).where(inv.c.e164.in_(numbers)))
                conn.execute(
                    sa.insert(inv),
                    [
                        {"e164": n, "state": "owned", "source": "ported", "order_id": order_id}
                        for n in numbers
                    ],
                )
            conn.execute(sa.update(o).where(o.c.id == order_id).values(**values))
            return self._orders(conn, order_id)[0]

    def route_number(
        self, actor: str, e164: object, kind: object, target: object, validate: Validator | None = None
    ) -> PhoneNumber:
        """Send calls to one of the company's numbers to a destination (go live).

        Raises:
            ModelError: not the company's number, an unknown kind, or a target that does not exist.
        """
        number = rules.check_e164(e164, "number")
        route_kind = rules.check_route_kind(kind, "kind")
        if not isinstance(target, str) or not target.strip():
            raise ModelError("target", "must name the destination")
        goal = target.strip()
        with self._change(actor, "number.route", number, {"kind": route_kind, "target": goal}) as conn:
            owned = self.company_numbers(conn)
            if number not in owned:
                raise ModelError("number", f"{number} is not one of the company's numbers")
            goal = self._check_target(conn, route_kind, goal, owned)
            if goal == number:
                raise ModelError("target", "a number cannot route to itself")
            n = schema.numbers
            conn.execute(sa.delete(n).where(n.c.e164 == number))
            conn.execute(sa.insert(n).values(e164=number, route_kind=route_kind, route_target=goal))
            self._ensure_owned(conn, number)
            if validate is not None:
                validate(self.snapshot(conn))
        return PhoneNumber(number, route_kind, goal)

    @staticmethod
    def _ensure_owned(conn: sa.Connection, number: str) -> None:
        inv = schema.number_inventory
        if conn.execute(sa.select(inv.c.e164).where(inv.c.e164 == number)).first() is None:
            conn.execute(sa.insert(inv).values(e164=number, state="owned", source="imported", order_id=None))

    def _check_target(self, conn: sa.Connection, kind: str, target: str, owned: set[str]) -> str:
        if kind == "extension":
            ext = rules.check_extension(target, "target")
            found = conn.execute(sa.select(schema.lines.c.id).where(schema.lines.c.extension == ext)).first()
            if found is None:
                raise ModelError("target", f"no line has extension {ext}")
            return ext
        if kind == "dial_plan":
            dp = schema.dial_plans
            if conn.execute(sa.select(dp.c.id).where(dp.c.name == target)).first() is None:
                raise ModelError("target", f"no dial plan named {target!r}")
            return target
        if kind == "number":
            other = rules.check_e164(target, "target")
            if other not in owned:
                raise ModelError("target", f"{other} is not one of the company's numbers")
            return other
        ro = schema.routing_objects
        obj_kind = ROUTE_OBJECT_KIND[kind]
        if conn.execute(sa.select(ro.c.id).where(ro.c.kind == obj_kind, ro.c.name == target)).first() is None:
            raise ModelError("target", f"no {kind.replace('_', ' ')} named {target!r}")
        return target

    def unroute_number(self, actor: str, e164: object, validate: Validator | None = None) -> None:
        """Take a number off the air (it stays the company's).

        Raises:
            NotFoundError: the number is not routed.
        """
        number = rules.check_e164(e164, "number")
        with self._change(actor, "number.unroute", number) as conn:
            self._ensure_owned(conn, number)
            n = schema.numbers
            if conn.execute(sa.delete(n).where(n.c.e164 == number)).rowcount == 0:
                raise NotFoundError("route", number)
            if validate is not None:
                validate(self.snapshot(conn))

    # -- routing objects and dial plans ------------------------------------------------------------------

    def objects(self, kind: str) -> list[ObjectRecord]:
        ro = schema.routing_objects
        with self.store._read() as conn:
            rows = conn.execute(sa.select(ro).where(ro.c.kind == kind).order_by(ro.c.id)).all()
        return [ObjectRecord(r.id, r.kind, r.name, json.loads(r.spec)) for r in rows]

    def routing_object(self, kind: str, name: str) -> ObjectRecord:
        ro = schema.routing_objects
        with self.store._read() as conn:
            r = conn.execute(sa.select(ro).where(ro.c.kind == kind, ro.c.name == name)).first()
        if r is None:
            raise NotFoundError(kind.rstrip("s"), name)
        return ObjectRecord(r.id, r.kind, r.name, json.loads(r.spec))

    def save_object(
        self,
        actor: str,
        kind: str,
        spec: object,
        *,
        name: str | None = None,
        validate: Validator | None = None,
    ) -> ObjectRecord:
        """Create (``name`` None) or replace (the object called ``name``) a routing object of ``kind``.

        Raises:
            ModelError: a bad spec, a taken name or extension (and whatever ``validate`` raises).
            NotFoundError: replacing an object that does not exist.
        """
        if kind not in rules.ROUTING_OBJECT_KINDS:
            raise ModelError("kind", f"must be one of {', '.join(rules.ROUTING_OBJECT_KINDS)}")
        body = rules.check_graph(spec, "spec")
        new_name = rules.check_plan_name(body.get("name"), "name")
        ext = body.get("extension")
        if ext is not None:
            if kind not in EXTENSION_OBJECT_KINDS:
                raise ModelError("extension", f"{kind} have no extension")
            body["extension"] = rules.check_extension(ext, "extension")
        ro = schema.routing_objects
        action = "object.create" if name is None else "object.update"
        with self._change(actor, action, f"{kind}:{new_name}") as conn:
            old = None
            if name is not None:
                old = conn.execute(sa.select(ro).where(ro.c.kind == kind, ro.c.name == name)).first()
                if old is None:
                    raise NotFoundError(kind.rstrip("s"), name)
            if new_name != name:
                clash = conn.execute(
                    sa.select(ro.c.id).where(ro.c.kind == kind, ro.c.name == new_name)
                ).first()
                if clash is not None:
                    raise ModelError("name", f"{new_name!r} already exists")
            if ext is not None:
                in_use = self._extensions_in_use(conn)
                old_ext = None if old is None else json.loads(old.spec).get("extension")
                if body["extension"] != old_ext:
                    rules.check_unique_extension(body["extension"], in_use, "extension")
            text = json.dumps(body, sort_keys=True)
            if old is None:
                obj_id = conn.execute(
                    sa.insert(ro).values(kind=kind, name=new_name, spec=text).returning(ro.c.id)
                ).scalar_one()
            else:
                obj_id = old.id
                conn.execute(sa.update(ro).where(ro.c.id == old.id).values(name=new_name, spec=text))
                if name != new_name:
                    self._rename_routes(conn, kind, name or "", new_name)
            if validate is not None:
                validate(self.snapshot(conn))
        return ObjectRecord(int(obj_id), kind, new_name, body)

    def save_sound_clip(
        self, actor: str, name: object, audio: bytes, path: Path, validate: Validator | None = None
    ) -> ObjectRecord:
        """Create or replace sound clip ``name`` with ``audio`` (already 8 kHz 16-bit mono WAV) at ``path``.

        The file is written to a temporary name and fsynced first; it replaces ``path`` inside the store
        transaction, after ``validate`` passed and before the commit. So a crash leaves at worst a file
        without its object (harmless), never a clip object whose file is missing or half written, and a
        refused change leaves the old file in place.

        Raises:
            ModelError: a bad name (field ``name``), or whatever ``validate`` raises.
            OSError: the file cannot be written.
        """
        clip = rules.check_plan_name(name, "name")
        spec = {"name": clip, "file": f"{path.parent.name}/{path.name}"}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{self._token()[:16]}.tmp")
        with open(tmp, "wb") as out:
            out.write(audio)
            out.flush()
            os.fsync(out.fileno())
        ro = schema.routing_objects
        try:
            detail = {"bytes": len(audio)}
            with self._change(actor, "sound_clip.upload", f"sound_clips:{clip}", detail) as conn:
                old = conn.execute(sa.select(ro).where(ro.c.kind == "sound_clips", ro.c.name == clip)).first()
                text = json.dumps(spec, sort_keys=True)
                if old is None:
                    obj_id = conn.execute(
                        sa.insert(ro).values(kind="sound_clips", name=clip, spec=text).returning(ro.c.id)
                    ).scalar_one()
                else:
                    obj_id = old.id
                    conn.execute(sa.update(ro).where(ro.c.id == old.id).values(spec=text))
                if validate is not None:
                    validate(self.snapshot(conn))
                os.replace(tmp, path)
                fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectRecord(int(obj_id), "sound_clips", clip, spec)

    @staticmethod
    def _rename_routes(conn: sa.Connection, kind: str, old: str, new: str) -> None:
        n = schema.numbers
        route_kinds = [k for k, v in ROUTE_OBJECT_KIND.items() if v == kind] or ["dial_plan"]
        conn.execute(
            sa.update(n)
            .where(n.c.route_kind.in_(route_kinds), n.c.route_target == old)
            .values(route_target=new)
        )

    def delete_object(self, actor: str, kind: str, name: str, validate: Validator | None = None) -> None:
        """Raises: NotFoundError; ModelError when a number still routes to it."""
        ro, n = schema.routing_objects, schema.numbers
        with self._change(actor, "object.delete", f"{kind}:{name}") as conn:
            if conn.execute(sa.delete(ro).where(ro.c.kind == kind, ro.c.name == name)).rowcount == 0:
                raise NotFoundError(kind.rstrip("s"), name)
            route_kinds = [k for k, v in ROUTE_OBJECT_KIND.items() if v == kind]
            used = conn.execute(
                sa.select(n.c.e164).where(n.c.route_kind.in_(route_kinds), n.c.route_target == name)
            ).first()
            if used is not None:
                raise ModelError("name", f"{used.e164} routes to {name!r}: route it elsewhere first")
            if validate is not None:
                validate(self.snapshot(conn))

    def plans(self) -> list[PlanRecord]:
        dp = schema.dial_plans
        with self.store._read() as conn:
            return [
                PlanRecord(r.id, r.name, json.loads(r.graph))
                for r in conn.execute(sa.select(dp).order_by(dp.c.id))
            ]

    def plan(self, name: str) -> PlanRecord:
        dp = schema.dial_plans
        with self.store._read() as conn:
            r = conn.execute(sa.select(dp).where(dp.c.name == name)).first()
        if r is None:
            raise NotFoundError("dial_plan", name)
        return PlanRecord(r.id, r.name, json.loads(r.graph))

    def save_plan(
        self,
        actor: str,
        new_name: object,
        graph: object,
        *,
        name: str | None = None,
        validate: Validator | None = None,
    ) -> PlanRecord:
        """Create (``name`` None) or replace a dial plan (its node graph as JSON).

        Raises:
            ModelError: a bad name or graph, a taken name or extension (and what ``validate`` raises).
            NotFoundError: replacing a plan that does not exist.
        """
        plan_name = rules.check_plan_name(new_name, "name")
        body = rules.check_graph(graph, "graph")
        ext = body.get("extension")
        if ext is not None:
            body["extension"] = rules.check_extension(ext, "graph.extension")
        dp = schema.dial_plans
        with self._change(
            actor, "plan.create" if name is None else "plan.update", f"dial_plan:{plan_name}"
        ) as conn:
            old = None
            if name is not None:
                old = conn.execute(sa.select(dp).where(dp.c.name == name)).first()
                if old is None:
                    raise NotFoundError("dial_plan", name)
            if plan_name != name and conn.execute(sa.select(dp.c.id).where(dp.c.name == plan_name)).first():
                raise ModelError("name", f"{plan_name!r} already exists")
            if ext is not None:
                old_ext = None if old is None else json.loads(old.graph).get("extension")
                if body["extension"] != old_ext:
                    rules.check_unique_extension(
                        body["extension"], self._extensions_in_use(conn), "graph.extension"
                    )
            text = json.dumps(body, sort_keys=True)
            if old is None:
                plan_id = conn.execute(
                    sa.insert(dp).values(name=plan_name, graph=text).returning(dp.c.id)
                ).scalar_one()
            else:
                plan_id = old.id
                conn.execute(sa.update(dp).where(dp.c.id == old.id).values(name=plan_name, graph=text))
                if name != plan_name:
                    n = schema.numbers
                    conn.execute(
                        sa.update(n)
                        .where(n.c.route_kind == "dial_plan", n.c.route_target == name)
                        .values(route_target=plan_name)
                    )
            if validate is not None:
                validate(self.snapshot(conn))
        return PlanRecord(int(plan_id), plan_name, body)

    def delete_plan(self, actor: str, name: str, validate: Validator | None = None) -> None:
        """Raises: NotFoundError; ModelError when a number still routes to it."""
        dp, n = schema.dial_plans, schema.numbers
        with self._change(actor, "plan.delete", f"dial_plan:{name}") as conn:
            if conn.execute(sa.delete(dp).where(dp.c.name == name)).rowcount == 0:
                raise NotFoundError("dial_plan", name)
            used = conn.execute(
                sa.select(n.c.e164).where(n.c.route_kind == "dial_plan", n.c.route_target == name)
            ).first()
            if used is not None:
                raise ModelError("name", f"{used.e164} routes to {name!r}: route it elsewhere first")
            if validate is not None:
                validate(self.snapshot(conn))

    # -- locations -----------------------------------------------------------------------------------------

    @staticmethod
    def _location_row(conn: sa.Connection, location_id: int) -> sa.Row[Any]:
        row = conn.execute(sa.select(schema.locations).where(schema.locations.c.id == location_id)).first()
        if row is None:
            raise ModelError("location_id", f"no location {location_id}")
        return row

    def locations(self) -> list[am.Location]:
        loc = schema.locations
        with self.store._read() as conn:
            return [_location(r) for r in conn.execute(sa.select(loc).order_by(loc.c.id)).all()]

    def location(self, location_id: int) -> am.Location:
        loc = schema.locations
        with self.store._read() as conn:
            r = conn.execute(sa.select(loc).where(loc.c.id == location_id)).first()
        if r is None:
            raise NotFoundError("location", location_id)
        return _location(r)

    def save_location(self, actor: str, body: object, location_id: int | None = None) -> am.Location:
        """Create or replace an emergency address (validated and normalised; US and Canada only).

        Raises:
            ModelError, NotFoundError.
        """
        spec = am.check_location(body)
        loc = schema.locations
        values = {
            "name": spec.name,
            "country": spec.country,
            "street": spec.street,
            "city": spec.city,
            "region": spec.region,
            "postal_code": spec.postal_code,
            "verified": True,
        }
        action = "location.create" if location_id is None else "location.update"
        with self._change(actor, action, f"location:{spec.name}") as conn:
            q = sa.select(loc.c.id).where(loc.c.name == spec.name)
            if location_id is not None:
                q = q.where(loc.c.id != location_id)
            if conn.execute(q).first() is not None:
                raise ModelError("name", f"{spec.name!r} already exists")
            if location_id is None:
                location_id = int(
                    conn.execute(sa.insert(loc).values(**values).returning(loc.c.id)).scalar_one()
                )
            elif conn.execute(sa.update(loc).where(loc.c.id == location_id).values(**values)).rowcount == 0:
                raise NotFoundError("location", location_id)
            return _location(conn.execute(sa.select(loc).where(loc.c.id == location_id)).one())

    def delete_location(self, actor: str, location_id: int) -> None:
        """Raises: NotFoundError; ModelError while a device or line uses it."""
        loc, d, ln = schema.locations, schema.devices, schema.lines
        with self._change(actor, "location.delete", f"location:{location_id}") as conn:
            for table, what in ((d, "device"), (ln, "line")):
                user = conn.execute(sa.select(table.c.id).where(table.c.location_id == location_id)).first()
                if user is not None:
                    raise ModelError("id", f"{what} {user.id} uses this location: assign another first")
            if conn.execute(sa.delete(loc).where(loc.c.id == location_id)).rowcount == 0:
                raise NotFoundError("location", location_id)

    # -- audit log and reports ---------------------------------------------------------------------------

    def audit(
        self, limit: int = 100, *, since: float | None = None, action: str | None = None
    ) -> list[AuditRecord]:
        """Audit records, newest first."""
        a = schema.audit_log
        q = sa.select(a).order_by(a.c.id.desc()).limit(max(0, limit))
        if since is not None:
            q = q.where(a.c.at >= since)
        if action is not None:
            q = q.where(a.c.action.startswith(action))
        with self.store._read() as conn:
            return [
                AuditRecord(r.id, float(r.at), r.actor, r.action, r.target, json.loads(r.detail))
                for r in conn.execute(q).all()
            ]

    def cdrs(
        self,
        limit: int = 50,
        *,
        since: float | None = None,
        until: float | None = None,
        direction: str | None = None,
        disposition: str | None = None,
        party: str | None = None,
        queued: bool = False,
    ) -> list[CallRecord]:
        """Call records, newest first, filtered: started in [since, until), direction, disposition,
        ``party`` (an extension or number as caller, callee or DID), and (``queued``) only the calls whose
        callers waited in a call queue."""
        c = schema.cdrs
        q = sa.select(c).order_by(c.c.started_at.desc(), c.c.call_id.desc()).limit(max(0, limit))
        if since is not None:
            q = q.where(c.c.started_at >= since)
        if until is not None:
            q = q.where(c.c.started_at < until)
        if direction is not None:
            q = q.where(c.c.direction == direction)
        if disposition is not None:
            q = q.where(c.c.disposition == disposition)
        if party is not None:
            q = q.where(sa.or_(c.c.caller == party, c.c.callee == party, c.c.did == party))
        if queued:
            q = q.where(c.c.queues != "[]")
        with self.store._read() as conn:
            return [cdr_from_row(r._mapping) for r in conn.execute(q).all()]


def check_line_options(value: object) -> dict[str, Any]:
    """A line's options: ``find_me_follow_me`` (up to 10 steps ``{numbers: [E.164 or extension],
    ring_seconds: 5..120}``), ``voicemail`` (``{enabled, email_notification, greeting}``), and
    ``do_not_disturb``/``forward`` (``engine.model.features``).

    Raises:
        ModelError: naming the option (``options.find_me_follow_me[1].ring_seconds``).
    """
    if not isinstance(value, Mapping):
        raise ModelError("options", "must be a mapping")
    unknown = sorted(set(value) - _LINE_OPTION_KEYS)
    if unknown:
        raise ModelError(f"options.{unknown[0]}", "unknown option")
    out: dict[str, Any] = {}
    steps = value.get("find_me_follow_me")
    if steps is not None:
        if not isinstance(steps, list) or len(steps) > MAX_FIND_ME_STEPS:
            raise ModelError(
                "options.find_me_follow_me", f"must be a list of at most {MAX_FIND_ME_STEPS} steps"
            )
        checked = []
        for i, step in enumerate(steps):
            at = f"options.find_me_follow_me[{i}]"
            if not isinstance(step, Mapping) or set(step) - {"numbers", "ring_seconds"}:
                raise ModelError(at, "must be {numbers, ring_seconds}")
            numbers = step.get("numbers")
            if not isinstance(numbers, list) or not numbers:
                raise ModelError(f"{at}.numbers", "must be a non-empty list")
            targets = [
                rules.check_e164(n, f"{at}.numbers[{j}]")
                if isinstance(n, str) and n.startswith("+")
                else rules.check_extension(n, f"{at}.numbers[{j}]")
                for j, n in enumerate(numbers)
            ]
            ring = step.get("ring_seconds", 20)
            if not isinstance(ring, int) or isinstance(ring, bool) or not 5 <= ring <= 120:
                raise ModelError(f"{at}.ring_seconds", "must be a number of seconds from 5 to 120")
            checked.append({"numbers": targets, "ring_seconds": ring})
        out["find_me_follow_me"] = checked
    vm = value.get("voicemail")
    if vm is not None:
        if not isinstance(vm, Mapping):
            raise ModelError("options.voicemail", "must be a mapping")
        unknown = sorted(set(vm) - _VOICEMAIL_KEYS)
        if unknown:
            raise ModelError(f"options.voicemail.{unknown[0]}", "unknown option")
        settings: dict[str, Any] = {}
        for key in ("enabled", "email_notification"):
            if key in vm:
                settings[key] = rules.check_flag(vm[key], f"options.voicemail.{key}")
        if "greeting" in vm:
            settings["greeting"] = am.check_choice(
                vm["greeting"],
                ("standard", "busy", "unavailable", "extended_absence"),
                "options.voicemail.greeting",
            )
        out["voicemail"] = settings
    out.update(features.check_options(value))
    return out


def _line_record(r: sa.Row[Any]) -> LineRecord:
    return LineRecord(
        id=r.id,
        user_id=r.user_id,
        extension=r.extension,
        name=r.name,
        external_caller_id=r.external_caller_id,
        dial_permissions=json.loads(r.dial_permissions),
        device_id=r.device_id,
        location_id=r.location_id,
        options=json.loads(r.options),
    )


def _location(r: sa.Row[Any]) -> am.Location:
    return am.Location(r.id, r.name, r.country, r.street, r.city, r.region, r.postal_code, bool(r.verified))


def _user_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for validated user fields."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "admin":
            out["admin_role"] = value.role
            out["admin_permissions"] = json.dumps([p for p in am.ADMIN_PERMISSIONS if p in value.permissions])
        elif key == "groups":
            out["groups"] = json.dumps(list(value))
        else:
            out[key] = value
    return out


def _port_detail(spec: am.PortRequestSpec) -> dict[str, Any]:
    """The request's carrier data; the PIN is kept (the carrier needs it) but never shown back whole."""
    return {
        "carrier": spec.carrier,
        "account_name": spec.account_name,
        "account_number": spec.account_number,
        "pin": spec.pin,
        "billing_address": spec.billing_address,
    }


def _optional_id(value: object, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(field, "must be an id (a positive number) or null")
    return value
