"""The admin API's request and response bodies (msgspec structs; they are also the OpenAPI schemas).

Structs check shapes and types (Litestar answers 400 naming the field); values are checked by the model
rules behind the store (422 naming the field). Partial updates use ``msgspec.UNSET`` for "not given", so
``null`` can mean "clear it". Secrets appear only in the ``*Created``/``*Secret`` bodies of the call that
made them.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from engine.model import CallRecord
from engine.model import admin as am
from engine.store.admin import (
    AuditRecord,
    DeviceRecord,
    InventoryNumber,
    LineRecord,
    ObjectRecord,
    OrderRecord,
    PlanRecord,
    TokenRecord,
    UserRecord,
)

DbId = Annotated[int, msgspec.Meta(ge=1, le=2_147_483_647)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class Struct(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Request bodies refuse unknown fields (a typo must not be silently ignored)."""

    def given(self) -> dict[str, Any]:
        """The fields the client sent (not UNSET), by name."""
        out: dict[str, Any] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not UNSET:
                out[name] = msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
        return out


class AdminIn(Struct):
    role: str
    permissions: list[str] = []


class DeskPhoneIn(Struct):
    """A new device (``mac``, optional ``model``) or an existing one (``device_id``)."""

    mac: str | None = None
    model: str | None = None
    device_id: DbId | None = None


class UserCreate(Struct):
    first_name: str
    last_name: str
    email: str | Unset = UNSET
    extension: str | None = None
    softphone: bool | Unset = UNSET
    desk_phone: DeskPhoneIn | None = None
    admin: AdminIn | Unset = UNSET
    allow_web_login: bool | Unset = UNSET
    dial_username: str | Unset | None = UNSET
    dial_password: str | Unset = UNSET
    groups: list[str] | Unset = UNSET
    hot_desking: bool | Unset = UNSET


class UserPatch(Struct):
    first_name: str | Unset = UNSET
    last_name: str | Unset = UNSET
    email: str | Unset | None = UNSET
    admin: AdminIn | Unset = UNSET
    allow_web_login: bool | Unset = UNSET
    dial_username: str | Unset | None = UNSET
    dial_password: str | Unset = UNSET
    groups: list[str] | Unset = UNSET
    hot_desking: bool | Unset = UNSET
    softphone: bool | Unset = UNSET


class BulkRow(UserPatch, kw_only=True):
    id: DbId


class BulkEdit(Struct):
    rows: list[BulkRow]


class AdminOut(msgspec.Struct):
    role: str
    permissions: list[str]


class LineOut(msgspec.Struct):
    id: int
    user_id: int
    extension: str
    name: str
    external_caller_id: str | None
    dial_permissions: list[str]
    device_id: int | None
    location_id: int | None
    options: dict[str, Any]


class UserOut(msgspec.Struct):
    id: int
    first_name: str
    last_name: str
    email: str | None
    admin: AdminOut
    allow_web_login: bool
    registered: bool
    dial_username: str | None
    groups: list[str]
    hot_desking: bool
    softphone: bool
    desk_phone: bool
    lines: list[LineOut]


class UserCreated(msgspec.Struct, omit_defaults=True):
    """The new user and the secrets made for them, shown this once."""

    user: UserOut
    sip_password: str | None = None
    provisioning_password: str | None = None


class BulkRowError(msgspec.Struct):
    row: int
    field: str
    message: str


class ErrorOut(msgspec.Struct):
    detail: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


class InvitationOut(msgspec.Struct):
    user_id: int
    token: str


class RegisterIn(Struct):
    """Completes a web-login invitation: the user's own e-mail and the password they will log in with."""

    token: str
    email: str
    password: str


ShortText = Annotated[str, msgspec.Meta(max_length=1024)]


class LoginIn(Struct):
    email: ShortText
    password: ShortText


class SessionOut(msgspec.Struct):
    """A new session: the cookie carries it; ``csrf_token`` goes in ``X-CSRF-Token`` on changes."""

    user_id: int
    email: str | None
    role: str
    permissions: list[str]
    csrf_token: str
    expires_at: float


class PasswordChangeIn(Struct):
    current_password: ShortText
    new_password: ShortText


class TokenIn(Struct):
    name: str
    user_id: DbId | None = None


class TokenOut(msgspec.Struct):
    id: int
    user_id: int
    name: str
    created_at: float


class TokenCreated(msgspec.Struct):
    token: TokenOut
    secret: str


class MeOut(msgspec.Struct):
    user_id: int
    email: str | None
    role: str
    permissions: list[str]


class DeviceIn(Struct):
    mac: str
    model: str | None = None
    allowed_networks: list[str] = []
    location_id: DbId | None = None


class DevicePatch(Struct):
    model: str | Unset | None = UNSET
    allowed_networks: list[str] | Unset = UNSET
    location_id: DbId | Unset | None = UNSET


class DeviceOut(msgspec.Struct):
    id: int
    mac: str
    model: str | None
    vendor: str | None
    location_id: int | None
    provisioning_username: str
    allowed_networks: list[str]
    line_ids: list[int]
    last_provisioned_at: float | None


class DeviceCreated(msgspec.Struct):
    device: DeviceOut
    provisioning_password: str


class SecretOut(msgspec.Struct):
    """A regenerated secret, shown this once."""

    password: str


class LinePatch(Struct):
    name: str | Unset = UNSET
    external_caller_id: str | Unset | None = UNSET
    dial_permissions: list[str] | Unset = UNSET
    options: dict[str, Any] | Unset = UNSET
    location_id: DbId | Unset | None = UNSET
    device_id: DbId | Unset | None = UNSET


class RotateLineIn(Struct):
    device_id: DbId | None = None


class NumberOut(msgspec.Struct):
    number: str
    state: str
    source: str
    order_id: int | None
    route_kind: str | None = None
    route_target: str | None = None


class PoolIn(Struct):
    numbers: list[str]


class OrderIn(Struct):
    quantity: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
    prefix: str | None = None


class OrderOut(msgspec.Struct):
    id: int
    kind: str
    state: str
    numbers: list[str]
    detail: dict[str, Any]
    foc_date: str | None
    reason: str | None
    created_at: float
    updated_at: float


class PortInIn(Struct):
    numbers: list[str]
    carrier: str
    account_name: str
    account_number: str
    pin: str | None = None
    billing_address: str | None = None


class PortActionIn(Struct):
    action: str
    foc_date: str | None = None
    reason: str | None = None


class RouteIn(Struct):
    kind: str
    target: str


class RouteOut(msgspec.Struct):
    number: str
    kind: str
    target: str


class ObjectOut(msgspec.Struct):
    id: int
    kind: str
    name: str
    spec: dict[str, Any]


class GreetingOut(msgspec.Struct):
    """A line's uploaded voicemail greeting (8 kHz 16-bit mono after conversion)."""

    mailbox: str
    kind: str
    duration_seconds: float
    temporary_active: bool


class SoundClipOut(msgspec.Struct):
    """A stored sound clip: ``file`` is relative to the data directory; the audio is 8 kHz 16-bit mono."""

    name: str
    file: str
    duration_seconds: float
    sample_rate_hz: int
    bytes: int


class PlanIn(Struct):
    name: str
    graph: dict[str, Any]


class PlanOut(msgspec.Struct):
    id: int
    name: str
    graph: dict[str, Any]


class LocationIn(Struct):
    name: str
    country: str
    street: str
    city: str
    region: str
    postal_code: str


class LocationOut(msgspec.Struct):
    id: int
    name: str
    country: str
    street: str
    city: str
    region: str
    postal_code: str
    verified: bool


class AuditOut(msgspec.Struct):
    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class QueueVisitOut(msgspec.Struct):
    """A caller's time in a call queue: how it left (answered, abandoned, timeout, key, full, no_agents),
    the agent who answered and how long it waited (until the agent answered, for an answered call)."""

    queue: str
    joined_at: float
    left_at: float
    outcome: str
    agent: str | None
    waited_seconds: float


class CallOut(msgspec.Struct):
    call_id: str
    direction: str
    caller: str
    caller_name: str
    callee: str
    did: str | None
    trunk: str | None
    started_at: float
    answered_at: float | None
    ended_at: float
    disposition: str
    status: int
    hangup_cause: str
    path: list[str]
    queues: list[QueueVisitOut]


class ExtensionOut(msgspec.Struct):
    extension: str


class InvoiceOut(msgspec.Struct):
    id: int
    amount_cents: int
    currency: str
    paid: bool


class CompanyOut(msgspec.Struct):
    name: str
    sip_realm: str
    timezone: str
    country: str
    first_extension: int
    config_version: int
    hold_clip: str | None = None  # the sound clip callers hear on hold (None: the system music)


# -- conversions ---------------------------------------------------------------------------------------------


def line_out(r: LineRecord) -> LineOut:
    return LineOut(
        r.id,
        r.user_id,
        r.extension,
        r.name,
        r.external_caller_id,
        list(r.dial_permissions),
        r.device_id,
        r.location_id,
        r.options,
    )


def user_out(r: UserRecord) -> UserOut:
    rights = r.admin
    return UserOut(
        id=r.id,
        first_name=r.first_name,
        last_name=r.last_name,
        email=r.email,
        admin=AdminOut(rights.role, [p for p in am.ADMIN_PERMISSIONS if p in rights.permissions]),
        allow_web_login=r.allow_web_login,
        registered=r.registered,
        dial_username=r.dial_username,
        groups=list(r.groups),
        hot_desking=r.hot_desking,
        softphone=r.softphone,
        desk_phone=any(line.device_id is not None for line in r.lines),
        lines=[line_out(line) for line in r.lines],
    )


def device_out(r: DeviceRecord) -> DeviceOut:
    return DeviceOut(
        r.id,
        r.mac,
        r.model,
        r.vendor,
        r.location_id,
        r.prov_username,
        list(r.allowed_networks),
        list(r.line_ids),
        r.last_provisioned_at,
    )


def token_out(r: TokenRecord) -> TokenOut:
    return TokenOut(r.id, r.user_id, r.name, r.created_at)


def order_out(r: OrderRecord) -> OrderOut:
    detail = dict(r.detail)
    if detail.get("pin"):
        detail["pin"] = "***"  # the carrier needs it; nobody needs to read it back
    return OrderOut(
        r.id, r.kind, r.state, list(r.numbers), detail, r.foc_date, r.reason, r.created_at, r.updated_at
    )


def number_out(r: InventoryNumber, routes: dict[str, tuple[str, str]]) -> NumberOut:
    kind, target = routes.get(r.e164, (None, None))
    return NumberOut(r.e164, r.state, r.source, r.order_id, kind, target)


def object_out(r: ObjectRecord) -> ObjectOut:
    return ObjectOut(r.id, r.kind, r.name, r.spec)


def plan_out(r: PlanRecord) -> PlanOut:
    return PlanOut(r.id, r.name, r.graph)


def location_out(r: am.Location) -> LocationOut:
    return LocationOut(r.id, r.name, r.country, r.street, r.city, r.region, r.postal_code, r.verified)


def audit_out(r: AuditRecord) -> AuditOut:
    return AuditOut(r.id, r.at, r.actor, r.action, r.target, r.detail)


def call_out(r: CallRecord) -> CallOut:
    return CallOut(
        r.call_id,
        str(r.direction),
        r.caller,
        r.caller_name,
        r.callee,
        r.did,
        r.trunk,
        r.started_at,
        r.answered_at,
        r.ended_at,
        str(r.disposition),
        r.status,
        r.hangup_cause,
        list(r.path),
        [QueueVisitOut(v.queue, v.joined_at, v.left_at, v.outcome, v.agent, round(v.waited, 1))
         for v in r.queues],
    )
