"""The admin API's endpoints, grouped as the permission matrix sees them.

Every handler declares ``opt={"permission": ...}``: one of ``engine.model.admin.ADMIN_PERMISSIONS``,
``AUTHENTICATED`` (any valid token) or ``PUBLIC`` (no token; registration completion only). The
``principal`` dependency (``engine.api.app``) enforces it before the handler runs; ``create_app`` refuses
to build an app with an undeclared route. Granting admin rights, stocking the number pool and making
tokens for somebody else additionally need a super admin.

Handlers are synchronous and run in Litestar's thread pool: the store blocks on the database.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, ParamSpec, TypeVar

import anyio.to_thread
from litestar import Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter, RawBody

from engine.api import schemas as s
from engine.media.wav import WavError, convert_to_8k_mono16, decode_wav
from engine.model import ModelError, rules
from engine.store import SOUNDS_DIR, sound_clip_path
from engine.store.admin import AdminStore, Principal, Validator
from engine.store.errors import NotFoundError
from engine.voicemail.model import GreetingKind
from engine.voicemail.store import VoicemailStore

P = ParamSpec("P")
R = TypeVar("R")

CONFIGURE: Final = "configure_pbx"
REPORTS: Final = "view_reports"
INVOICES: Final = "view_invoices"
PAY: Final = "pay_invoices"
AUTHENTICATED: Final = "authenticated"
PUBLIC: Final = "public"

Id = Annotated[int, PathParameter(ge=1, le=2_147_483_647)]
Name = FromPath[str]
Limit = Annotated[int, QueryParameter(ge=0, le=10_000)]
EpochSeconds = Annotated[float | None, QueryParameter(ge=0, le=1e11)]
Text = FromQuery[str | None]

_CONFIGURE: Final = {"permission": CONFIGURE}
MAX_CLIP_BYTES: Final = 20 * 1024 * 1024
"""The largest WAV upload (about 2 minutes of 44.1 kHz stereo 16-bit; a clip converted is 16 kB/s)."""
WAV_TYPES: Final = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "application/octet-stream")
Auth = NamedDependency[Principal]
"""The request's authenticated user (``engine.api.app`` provides it after checking the permission)."""
Admin = NamedDependency[AdminStore]


def threaded(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run a blocking handler in a worker thread (the store blocks on the database; the event loop also
    carries SIP). Litestar's own ``sync_to_thread`` wrapped handlers twice when three methods share a
    path (2.25: the GET of ``/api/users/{id}`` returned a coroutine), so handlers are async here."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    return call


def _super_admin(principal: Auth, what: str) -> None:
    if not principal.rights.is_super_admin:
        raise PermissionDeniedException(f"only a super admin may {what}")


# -- me, tokens, web login --------------------------------------------------------------------------------


@get("/api/me", opt={"permission": AUTHENTICATED}, tags=["auth"])
@threaded
def me(principal: Auth) -> s.MeOut:
    """The token's user and effective permissions."""
    return s.MeOut(principal.user_id, principal.email, principal.rights.role, principal.rights.listed())


@get("/api/tokens", opt={"permission": AUTHENTICATED}, tags=["auth"])
@threaded
def list_tokens(principal: Auth, admin: Admin) -> list[s.TokenOut]:
    """Your API tokens (a super admin sees everybody's)."""
    owner = None if principal.rights.is_super_admin else principal.user_id
    return [s.token_out(t) for t in admin.tokens(owner)]


@post("/api/tokens", opt={"permission": AUTHENTICATED}, tags=["auth"])
@threaded
def create_token(principal: Auth, admin: Admin, data: JSONBody[s.TokenIn]) -> s.TokenCreated:
    """A new API token (the secret is shown once); for another user only by a super admin."""
    user_id = principal.user_id if data.user_id is None else data.user_id
    if user_id != principal.user_id:
        _super_admin(principal, "create tokens for other users")
    record, secret = admin.create_token(principal.actor, user_id, data.name)
    return s.TokenCreated(s.token_out(record), secret)


@delete("/api/tokens/{token_id:int}", opt={"permission": AUTHENTICATED}, tags=["auth"])
@threaded
def revoke_token(principal: Auth, admin: Admin, token_id: Id) -> None:
    """Revoke one of your tokens (a super admin: anybody's)."""
    owned = {t.id for t in admin.tokens(None if principal.rights.is_super_admin else principal.user_id)}
    if token_id not in owned:
        raise NotFoundError("token", token_id)
    admin.revoke_token(principal.actor, token_id)


@post("/api/login/register", opt={"permission": PUBLIC}, tags=["auth"])
@threaded
def register(admin: Admin, data: JSONBody[s.RegisterIn]) -> s.UserOut:
    """Complete web-login registration with the invitation token, the user's own e-mail address and the
    password they will log in with (``POST /api/login``)."""
    return s.user_out(admin.complete_registration(data.token, data.email, data.password))


# -- users ------------------------------------------------------------------------------------------------


@get("/api/users", opt=_CONFIGURE, tags=["users"])
@threaded
def list_users(admin: Admin, principal: Auth) -> list[s.UserOut]:
    return [s.user_out(u) for u in admin.users()]


@get("/api/users/next-extension", opt=_CONFIGURE, tags=["users"])
@threaded
def next_extension(admin: Admin, principal: Auth) -> s.ExtensionOut:
    """The extension proposed for the next user (it may be changed)."""
    return s.ExtensionOut(admin.next_free_extension())


@post("/api/users", opt=_CONFIGURE, tags=["users"])
@threaded
def create_user(admin: Admin, principal: Auth, data: JSONBody[s.UserCreate]) -> s.UserCreated:
    """Add a user with a line: with a new desk phone (MAC), an existing device, a softphone, or none."""
    fields = data.given()
    for key in ("extension", "desk_phone"):
        fields.pop(key, None)
    if "admin" in fields:
        _super_admin(principal, "grant admin permissions")
    phone = data.desk_phone
    new_device = None
    device_id = None
    if phone is not None:
        if phone.device_id is not None:
            if phone.mac is not None:
                raise ModelError("desk_phone", "give a MAC for a new device or a device_id, not both")
            device_id = phone.device_id
        else:
            if phone.mac is None:
                raise ModelError("desk_phone.mac", "is required for a new device")
            new_device = {"mac": phone.mac, "model": phone.model}
    record, made = admin.create_user(
        principal.actor, fields, extension=data.extension, new_device=new_device, device_id=device_id
    )
    return s.UserCreated(s.user_out(record), made.get("sip_password"), made.get("provisioning_password"))


@get("/api/users/{user_id:int}", opt=_CONFIGURE, tags=["users"])
@threaded
def get_user(admin: Admin, principal: Auth, user_id: Id) -> s.UserOut:
    return s.user_out(admin.user(user_id))


@patch("/api/users/{user_id:int}", opt=_CONFIGURE, tags=["users"])
@threaded
def update_user(admin: Admin, principal: Auth, user_id: Id, data: JSONBody[s.UserPatch]) -> s.UserOut:
    fields = data.given()
    if "admin" in fields:
        _super_admin(principal, "change admin permissions")
    return s.user_out(admin.update_user(principal.actor, user_id, fields))


@delete("/api/users/{user_id:int}", opt=_CONFIGURE, tags=["users"])
@threaded
def delete_user(admin: Admin, principal: Auth, user_id: Id) -> None:
    target = admin.user(user_id)
    if target.admin.role != "none":
        _super_admin(principal, "delete an administrator")
    admin.delete_user(principal.actor, user_id)


@post("/api/users/bulk", opt=_CONFIGURE, status_code=200, tags=["users"])
@threaded
def bulk_edit(admin: Admin, principal: Auth, data: JSONBody[s.BulkEdit]) -> list[s.UserOut]:
    """Edit many users at once: all rows are applied or none (422 lists every bad row and field)."""
    rows = []
    for row in data.rows:
        fields = row.given()
        if "admin" in fields:
            _super_admin(principal, "change admin permissions")
        rows.append(fields)
    return [s.user_out(u) for u in admin.bulk_update(principal.actor, rows)]


@post("/api/users/{user_id:int}/login-invitation", opt=_CONFIGURE, tags=["users"])
@threaded
def invite(admin: Admin, principal: Auth, user_id: Id) -> s.InvitationOut:
    """A web-login registration token for the user (they complete it with their own e-mail)."""
    return s.InvitationOut(user_id, admin.start_registration(principal.actor, user_id))


# -- devices and lines ------------------------------------------------------------------------------------


@get("/api/devices", opt=_CONFIGURE, tags=["devices"])
@threaded
def list_devices(admin: Admin, principal: Auth) -> list[s.DeviceOut]:
    return [s.device_out(d) for d in admin.devices()]


@post("/api/devices", opt=_CONFIGURE, tags=["devices"])
@threaded
def create_device(admin: Admin, principal: Auth, data: JSONBody[s.DeviceIn]) -> s.DeviceCreated:
    record, password = admin.create_device(
        principal.actor, data.mac, data.model, data.allowed_networks, data.location_id
    )
    return s.DeviceCreated(s.device_out(record), password)


@get("/api/devices/{device_id:int}", opt=_CONFIGURE, tags=["devices"])
@threaded
def get_device(admin: Admin, principal: Auth, device_id: Id) -> s.DeviceOut:
    return s.device_out(admin.device(device_id))


@patch("/api/devices/{device_id:int}", opt=_CONFIGURE, tags=["devices"])
@threaded
def update_device(admin: Admin, principal: Auth, device_id: Id, data: JSONBody[s.DevicePatch]) -> s.DeviceOut:
    return s.device_out(admin.update_device(principal.actor, device_id, data.given()))


@delete("/api/devices/{device_id:int}", opt=_CONFIGURE, tags=["devices"])
@threaded
def delete_device(admin: Admin, principal: Auth, device_id: Id) -> None:
    admin.delete_device(principal.actor, device_id)


@post("/api/devices/{device_id:int}/rotate-password", opt=_CONFIGURE, tags=["devices"])
@threaded
def rotate_device(admin: Admin, principal: Auth, device_id: Id) -> s.SecretOut:
    """A new provisioning password for the device (shown once)."""
    return s.SecretOut(admin.rotate_device_password(principal.actor, device_id))


@get("/api/lines", opt=_CONFIGURE, tags=["lines"])
@threaded
def list_lines(admin: Admin, principal: Auth) -> list[s.LineOut]:
    return [s.line_out(line) for line in admin.lines()]


@get("/api/lines/{line_id:int}", opt=_CONFIGURE, tags=["lines"])
@threaded
def get_line(admin: Admin, principal: Auth, line_id: Id) -> s.LineOut:
    return s.line_out(admin.line(line_id))


@patch("/api/lines/{line_id:int}", opt=_CONFIGURE, tags=["lines"])
@threaded
def update_line(admin: Admin, principal: Auth, line_id: Id, data: JSONBody[s.LinePatch]) -> s.LineOut:
    """Name, external caller ID (one of the company's numbers), dial permissions, options, location."""
    return s.line_out(admin.update_line(principal.actor, line_id, data.given()))


@post("/api/lines/{line_id:int}/rotate-password", opt=_CONFIGURE, tags=["lines"])
@threaded
def rotate_line(admin: Admin, principal: Auth, line_id: Id, data: JSONBody[s.RotateLineIn]) -> s.SecretOut:
    """A new SIP password (shown once); ``device_id`` also moves the line onto that desk phone."""
    return s.SecretOut(admin.rotate_line_password(principal.actor, line_id, data.device_id))


# -- numbers ------------------------------------------------------------------------------------------------


@get("/api/numbers", opt=_CONFIGURE, tags=["numbers"])
@threaded
def list_numbers(admin: Admin, principal: Auth) -> list[s.NumberOut]:
    """The inventory: the company's numbers (with their routes) and the pool available to order."""
    routes = {n.e164: (n.route_kind, n.route_target) for n in admin.store.numbers()}
    return [s.number_out(n, routes) for n in admin.inventory()]


@post("/api/numbers/pool", opt=_CONFIGURE, tags=["numbers"])
@threaded
def add_pool(admin: Admin, principal: Auth, data: JSONBody[s.PoolIn]) -> list[s.NumberOut]:
    """Stock the pool of numbers available to order (the carrier team; super admin)."""
    _super_admin(principal, "stock the number pool")
    return [s.number_out(n, {}) for n in admin.add_to_pool(principal.actor, data.numbers)]


@get("/api/numbers/orders", opt=_CONFIGURE, tags=["numbers"])
@threaded
def list_orders(admin: Admin, principal: Auth) -> list[s.OrderOut]:
    """New-number orders and port-in requests with their status."""
    return [s.order_out(o) for o in admin.orders()]


@post("/api/numbers/orders", opt=_CONFIGURE, tags=["numbers"])
@threaded
def order_numbers(admin: Admin, principal: Auth, data: JSONBody[s.OrderIn]) -> s.OrderOut:
    """Order new numbers from the pool; when it cannot serve the order it is recorded as manual."""
    return s.order_out(admin.order_numbers(principal.actor, data.quantity, data.prefix))


@get("/api/numbers/orders/{order_id:int}", opt=_CONFIGURE, tags=["numbers"])
@threaded
def get_order(admin: Admin, principal: Auth, order_id: Id) -> s.OrderOut:
    return s.order_out(admin.order(order_id))


@post("/api/numbers/port-ins", opt=_CONFIGURE, tags=["numbers"])
@threaded
def create_port_in(admin: Admin, principal: Auth, data: JSONBody[s.PortInIn]) -> s.OrderOut:
    """A port-in request (draft): numbers, current carrier and account data matching its records."""
    body = {k: v for k, v in data.given().items() if v is not None}
    return s.order_out(admin.create_port_in(principal.actor, body))


@post(
    "/api/numbers/port-ins/{order_id:int}/actions",
    opt=_CONFIGURE,
    status_code=200,
    tags=["numbers"],
)
@threaded
def port_in_action(admin: Admin, principal: Auth, order_id: Id, data: JSONBody[s.PortActionIn]) -> s.OrderOut:
    """submit, set_foc (foc_date), complete (the numbers become routable), reject (reason), reopen."""
    return s.order_out(
        admin.port_in_action(principal.actor, order_id, data.action, data.foc_date, data.reason)
    )


@put("/api/numbers/{number:str}/route", opt=_CONFIGURE, tags=["numbers"])
@threaded
def route_number(
    request: Request[Any, Any, Any],
    admin: Admin,
    principal: Auth,
    number: Name,
    data: JSONBody[s.RouteIn],
) -> s.RouteOut:
    """Route one of the company's numbers to a destination (extension, dial_plan, ring_group, queue,
    conference_room, fax_line, mailbox or another number)."""
    routed = admin.route_number(principal.actor, number, data.kind, data.target, _validator(request))
    return s.RouteOut(routed.e164, routed.route_kind, routed.route_target)


@delete("/api/numbers/{number:str}/route", opt=_CONFIGURE, tags=["numbers"])
@threaded
def unroute_number(request: Request[Any, Any, Any], admin: Admin, principal: Auth, number: Name) -> None:
    admin.unroute_number(principal.actor, number, _validator(request))


# -- routing objects and dial plans ---------------------------------------------------------------------


def _validator(request: Request[Any, Any, Any]) -> Validator | None:
    validator: Validator | None = request.app.state.get("validator")
    return validator


def _kind(kind: Name) -> str:
    if kind not in rules.ROUTING_OBJECT_KINDS:
        raise NotFoundException(
            f"unknown routing object kind {kind!r} ({', '.join(rules.ROUTING_OBJECT_KINDS)})"
        )
    return kind


@get("/api/routing/{kind:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def list_objects(admin: Admin, principal: Auth, kind: Name) -> list[s.ObjectOut]:
    """Ring groups, schedules, sound clips, mailboxes, queues, conference rooms or fax lines."""
    return [s.object_out(o) for o in admin.objects(_kind(kind))]


@post("/api/routing/{kind:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def create_object(
    request: Request[Any, Any, Any],
    admin: Admin,
    principal: Auth,
    kind: Name,
    data: JSONBody[dict[str, object]],
) -> s.ObjectOut:
    """Create a routing object from its JSON spec (``name`` required; see engine.dialplan.schema)."""
    return s.object_out(admin.save_object(principal.actor, _kind(kind), data, validate=_validator(request)))


@get("/api/routing/{kind:str}/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def get_object(admin: Admin, principal: Auth, kind: Name, name: Name) -> s.ObjectOut:
    return s.object_out(admin.routing_object(_kind(kind), name))


@put("/api/routing/{kind:str}/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def replace_object(
    request: Request[Any, Any, Any],
    admin: Admin,
    principal: Auth,
    kind: Name,
    name: Name,
    data: JSONBody[dict[str, object]],
) -> s.ObjectOut:
    return s.object_out(
        admin.save_object(principal.actor, _kind(kind), data, name=name, validate=_validator(request))
    )


@delete("/api/routing/{kind:str}/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def delete_object(
    request: Request[Any, Any, Any], admin: Admin, principal: Auth, kind: Name, name: Name
) -> None:
    """Delete a routing object (a sound clip's audio file goes with it)."""
    admin.delete_object(principal.actor, _kind(kind), name, _validator(request))
    if kind == "sound_clips" and rules.PLAN_NAME_RE.fullmatch(name):
        sound_clip_path(admin.store.data_dir, name).unlink(missing_ok=True)


# -- sound clips -----------------------------------------------------------------------------------------


def _check_wav_type(request: Request[Any, Any, Any]) -> None:
    """A WAV upload's Content-Type is one of ``WAV_TYPES`` (checked before the body is converted)."""
    kind = request.headers.get("content-type", "audio/wav").split(";", 1)[0].strip().lower()
    if kind not in WAV_TYPES:
        raise ModelError("content-type", f"must be one of {', '.join(WAV_TYPES)}, not {kind!r}")


def _convert_wav(body: bytes) -> bytes:
    """An uploaded WAV as 8 kHz 16-bit mono; a file that is no readable WAV is a 422 naming the part."""
    try:
        return convert_to_8k_mono16(body)
    except WavError as exc:
        raise ModelError(f"file.{exc.field}", f"not a WAV file we can read: {exc.reason}") from None


def _clip_out(name: str, audio: bytes) -> s.SoundClipOut:
    wav = decode_wav(audio)
    return s.SoundClipOut(
        name, f"{SOUNDS_DIR}/{name}.wav", round(wav.duration_s, 3), wav.sample_rate_hz, len(audio)
    )


@dataclass
class _WavUpload(Operation):
    """The OpenAPI operation of a WAV upload: the raw body is the file (Litestar documents no raw body)."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={
                t: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))
                for t in WAV_TYPES
            },
            required=True,
            description="a WAV file: any sample rate and channel count; PCM, float, µ-law or A-law",
        )


@put(
    "/api/sound-clips/{name:str}",
    opt=_CONFIGURE,
    status_code=200,
    tags=["routing"],
    request_max_body_size=MAX_CLIP_BYTES,
    operation_class=_WavUpload,
)
async def upload_clip(
    request: Request[Any, Any, Any],
    admin: Admin,
    principal: Auth,
    name: Name,
    body: RawBody,
) -> s.SoundClipOut:
    """Upload (create or replace) a sound clip: a WAV file of any sample rate and channel count, PCM, float,
    µ-law or A-law, converted to 8 kHz 16-bit mono and stored for the dial plans (``play_clip``,
    ``auto_attendant`` name it). A file that is no readable WAV is refused with 422 naming the part."""
    clip = rules.check_plan_name(name, "name")
    _check_wav_type(request)
    validator = _validator(request)

    def work() -> s.SoundClipOut:
        audio = _convert_wav(body)
        path = sound_clip_path(admin.store.data_dir, clip)
        admin.save_sound_clip(principal.actor, clip, audio, path, validator)
        return _clip_out(clip, audio)

    return await anyio.to_thread.run_sync(work)


@get("/api/sound-clips/{name:str}", opt=_CONFIGURE, tags=["routing"], media_type="audio/wav")
@threaded
def download_clip(admin: Admin, principal: Auth, name: Name) -> Response[bytes]:
    """The stored (converted) audio of a sound clip, 8 kHz 16-bit mono WAV."""
    admin.routing_object("sound_clips", name)  # 404 when there is no such clip
    try:
        audio = sound_clip_path(admin.store.data_dir, name).read_bytes()
    except FileNotFoundError:
        raise NotFoundError("sound clip audio", name) from None
    return Response(audio, media_type="audio/wav")


# -- voicemail greetings -------------------------------------------------------------------------------------

GREETING_KINDS: Final = ("unavailable", "busy", "temporary")


def _greeting_kind(kind: str) -> GreetingKind:
    if kind not in GREETING_KINDS:
        raise ModelError("kind", f"must be one of {', '.join(GREETING_KINDS)}, not {kind!r}")
    return GreetingKind(kind)


def save_greeting(admin: AdminStore, actor: str, store: VoicemailStore, mailbox: str, kind: str, body: bytes,
                  target: str) -> s.GreetingOut:
    """Convert an uploaded WAV and store it as ``mailbox``'s greeting of ``kind`` (audited on ``target``).

    Raises:
        ModelError: an unknown kind, or a file that is no readable WAV.
    """
    which = _greeting_kind(kind)
    audio = _convert_wav(body)
    store.ensure_mailbox(mailbox)
    box = store.set_greeting_audio(mailbox, which, audio)
    admin.record_event(actor, "voicemail.greeting_set", target, {"kind": kind})
    return s.GreetingOut(mailbox, kind, round(decode_wav(audio).duration_s, 3), box.temporary_active)


def read_greeting(store: VoicemailStore, mailbox: str, kind: str) -> Response[bytes]:
    """``mailbox``'s greeting of ``kind`` as stored (8 kHz 16-bit mono WAV).

    Raises:
        ModelError: an unknown kind. NotFoundError: no such mailbox or greeting.
    """
    which = _greeting_kind(kind)
    box = store.mailbox(mailbox)
    path = None if box is None else box.greetings.get(which)
    try:
        audio = Path(path).read_bytes() if path else None
    except FileNotFoundError:
        audio = None
    if audio is None:
        raise NotFoundError(f"{kind} greeting of mailbox", mailbox)
    return Response(audio, media_type="audio/wav")


def remove_greeting(admin: AdminStore, actor: str, store: VoicemailStore, mailbox: str, kind: str,
                    target: str) -> None:
    """Remove ``mailbox``'s greeting of ``kind`` (audited on ``target``).

    Raises:
        ModelError: an unknown kind. NotFoundError: no such mailbox.
    """
    which = _greeting_kind(kind)
    if store.mailbox(mailbox) is None:
        raise NotFoundError("mailbox", mailbox)
    store.clear_greeting(mailbox, which)
    admin.record_event(actor, "voicemail.greeting_cleared", target, {"kind": kind})


@put(
    "/api/lines/{line_id:int}/voicemail/greetings/{kind:str}",
    opt=_CONFIGURE,
    status_code=200,
    tags=["lines"],
    request_max_body_size=MAX_CLIP_BYTES,
    operation_class=_WavUpload,
)
async def upload_greeting(
    request: Request[Any, Any, Any], admin: Admin, principal: Auth, line_id: Id, kind: Name, body: RawBody
) -> s.GreetingOut:
    """Upload a pre-recorded voicemail greeting for a line's mailbox (seed: the admin assigns a greeting
    file): unavailable, busy (used only when a dial plan reaches the line busy) or temporary (overrides
    both while switched on; uploading one does not switch it on). Any WAV rate and channel count, converted
    to 8 kHz 16-bit mono; a running engine picks it up at the next call."""
    _greeting_kind(kind)
    _check_wav_type(request)

    def work() -> s.GreetingOut:
        line = admin.line(line_id)  # 404 when there is no such line
        store = VoicemailStore.open(admin.store.data_dir, recover=False)
        return save_greeting(admin, principal.actor, store, line.extension, kind, body, f"line:{line_id}")

    return await anyio.to_thread.run_sync(work)


@get(
    "/api/lines/{line_id:int}/voicemail/greetings/{kind:str}",
    opt=_CONFIGURE,
    tags=["lines"],
    media_type="audio/wav",
)
@threaded
def download_greeting(admin: Admin, principal: Auth, line_id: Id, kind: Name) -> Response[bytes]:
    """A line's greeting of that kind as stored (8 kHz 16-bit mono WAV), for the admin to listen to;
    404 when the line has no mailbox or no such greeting."""
    _greeting_kind(kind)
    line = admin.line(line_id)
    return read_greeting(VoicemailStore.open(admin.store.data_dir, recover=False), line.extension, kind)


@delete("/api/lines/{line_id:int}/voicemail/greetings/{kind:str}", opt=_CONFIGURE, tags=["lines"])
@threaded
def delete_greeting(admin: Admin, principal: Auth, line_id: Id, kind: Name) -> None:
    """Remove a line's greeting of that kind: callers then hear the next one by precedence (the system
    default says the extension)."""
    _greeting_kind(kind)
    line = admin.line(line_id)
    store = VoicemailStore.open(admin.store.data_dir, recover=False)
    remove_greeting(admin, principal.actor, store, line.extension, kind, f"line:{line_id}")


@get("/api/dial-plans", opt=_CONFIGURE, tags=["routing"])
@threaded
def list_plans(admin: Admin, principal: Auth) -> list[s.PlanOut]:
    return [s.plan_out(p) for p in admin.plans()]


@post("/api/dial-plans", opt=_CONFIGURE, tags=["routing"])
@threaded
def create_plan(
    request: Request[Any, Any, Any], admin: Admin, principal: Auth, data: JSONBody[s.PlanIn]
) -> s.PlanOut:
    """Save a dial plan (its node graph); the compiler's errors come back as 422 with node ids."""
    return s.plan_out(admin.save_plan(principal.actor, data.name, data.graph, validate=_validator(request)))


@get("/api/dial-plans/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def get_plan(admin: Admin, principal: Auth, name: Name) -> s.PlanOut:
    return s.plan_out(admin.plan(name))


@put("/api/dial-plans/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def replace_plan(
    request: Request[Any, Any, Any],
    admin: Admin,
    principal: Auth,
    name: Name,
    data: JSONBody[s.PlanIn],
) -> s.PlanOut:
    return s.plan_out(
        admin.save_plan(principal.actor, data.name, data.graph, name=name, validate=_validator(request))
    )


@delete("/api/dial-plans/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def delete_plan(request: Request[Any, Any, Any], admin: Admin, principal: Auth, name: Name) -> None:
    admin.delete_plan(principal.actor, name, _validator(request))


# -- locations ---------------------------------------------------------------------------------------


@get("/api/locations", opt=_CONFIGURE, tags=["locations"])
@threaded
def list_locations(admin: Admin, principal: Auth) -> list[s.LocationOut]:
    return [s.location_out(loc) for loc in admin.locations()]


@post("/api/locations", opt=_CONFIGURE, tags=["locations"])
@threaded
def create_location(admin: Admin, principal: Auth, data: JSONBody[s.LocationIn]) -> s.LocationOut:
    """An emergency address (US and Canada; the street is normalised: "South" -> "S")."""
    return s.location_out(admin.save_location(principal.actor, data.given()))


@get("/api/locations/{location_id:int}", opt=_CONFIGURE, tags=["locations"])
@threaded
def get_location(admin: Admin, principal: Auth, location_id: Id) -> s.LocationOut:
    return s.location_out(admin.location(location_id))


@put("/api/locations/{location_id:int}", opt=_CONFIGURE, tags=["locations"])
@threaded
def replace_location(
    admin: Admin, principal: Auth, location_id: Id, data: JSONBody[s.LocationIn]
) -> s.LocationOut:
    return s.location_out(admin.save_location(principal.actor, data.given(), location_id))


@delete("/api/locations/{location_id:int}", opt=_CONFIGURE, tags=["locations"])
@threaded
def delete_location(admin: Admin, principal: Auth, location_id: Id) -> None:
    admin.delete_location(principal.actor, location_id)


# -- company, reports, audit, invoices -----------------------------------------------------------------------


@get("/api/company", opt=_CONFIGURE, tags=["company"])
@threaded
def company(admin: Admin, principal: Auth) -> s.CompanyOut:
    c = admin.store.company()
    return s.CompanyOut(
        c.name, c.sip_realm, c.timezone, c.country, c.first_extension, admin.store.config_version(),
        c.hold_clip,
    )


@get("/api/reports/calls", opt={"permission": REPORTS}, tags=["reports"])
@threaded
def call_report(
    admin: Admin,
    principal: Auth,
    limit: Limit = 100,
    since: EpochSeconds = None,
    until: EpochSeconds = None,
    direction: Text = None,
    disposition: Text = None,
    party: Text = None,
) -> list[s.CallOut]:
    """Call history from the CDRs, newest first: started in [since, until), direction, disposition, and
    a party (extension or number as caller, callee or DID)."""
    records = admin.cdrs(
        limit, since=since, until=until, direction=direction, disposition=disposition, party=party
    )
    return [s.call_out(r) for r in records]


@get("/api/audit", opt=_CONFIGURE, tags=["audit"])
@threaded
def audit(
    admin: Admin,
    principal: Auth,
    limit: Limit = 100,
    since: EpochSeconds = None,
    action: Text = None,
) -> list[s.AuditOut]:
    """Who changed what, when (newest first); ``action`` is a prefix such as ``user.``."""
    return [s.audit_out(a) for a in admin.audit(limit, since=since, action=action)]


@get("/api/invoices", opt={"permission": INVOICES}, tags=["billing"])
@threaded
def invoices(principal: Auth) -> list[s.InvoiceOut]:
    """Invoices (billing is not part of the engine yet: always empty)."""
    return []


@post("/api/invoices/{invoice_id:int}/pay", opt={"permission": PAY}, tags=["billing"])
@threaded
def pay_invoice(principal: Auth, invoice_id: Id) -> Response[s.InvoiceOut]:
    """Pay an invoice (billing is not part of the engine yet: there are none)."""
    raise NotFoundError("invoice", invoice_id)


ROUTES: Final = [
    me,
    list_tokens,
    create_token,
    revoke_token,
    register,
    list_users,
    next_extension,
    create_user,
    get_user,
    update_user,
    delete_user,
    bulk_edit,
    invite,
    list_devices,
    create_device,
    get_device,
    update_device,
    delete_device,
    rotate_device,
    list_lines,
    get_line,
    update_line,
    rotate_line,
    list_numbers,
    add_pool,
    list_orders,
    order_numbers,
    get_order,
    create_port_in,
    port_in_action,
    route_number,
    unroute_number,
    list_objects,
    create_object,
    get_object,
    replace_object,
    delete_object,
    upload_clip,
    download_clip,
    upload_greeting,
    download_greeting,
    delete_greeting,
    list_plans,
    create_plan,
    get_plan,
    replace_plan,
    delete_plan,
    list_locations,
    create_location,
    get_location,
    replace_location,
    delete_location,
    company,
    call_report,
    audit,
    invoices,
    pay_invoice,
]
