"""Live conference rooms over the admin API (issue 13): who is in a room while it runs, removing one, and
locking the room.

The rooms live on the engine's event loop (``engine.call.conference.ConferenceService``: no locks, only
the loop touches them), while the API's handlers run in worker threads: each request hands one function to
the loop and waits for its answer (``engine.api.live``: a loop that does not answer in time is a 503, and
a function it has not started by then is cancelled, so a late removal never happens behind a 503).

An app built without the call engine (``create_app(conferences=None)``: the CLI's tools, the API tests)
answers 503 for these routes; the room must exist as a routing object either way (404 otherwise).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, delete, get, put
from litestar.exceptions import ClientException, ServiceUnavailableException
from litestar.params import FromPath, JSONBody

from engine.api.live import Live
from engine.api.routes import CONFIGURE, Admin, Auth, Id, threaded
from engine.call.conference import ConferenceService, SeatInfo
from engine.store.errors import NotFoundError

_CONFIGURE: Final = {"permission": CONFIGURE}


class ParticipantOut(msgspec.Struct):
    """One participant of a running room: ``id`` names it for removal; ``waiting`` while the room's
    waiting room holds it (no host yet); ``in_room_seconds`` since it joined."""

    id: int
    caller: str
    host: bool
    muted: bool
    waiting: bool
    in_room_seconds: float


class RoomOut(msgspec.Struct):
    """A room as it runs: ``running`` while someone is in it (only a running room can be locked)."""

    name: str
    running: bool
    locked: bool
    participants: list[ParticipantOut]


class LockIn(msgspec.Struct, forbid_unknown_fields=True):
    locked: bool


class LiveConferences(Live[ConferenceService]):
    """The engine's conference rooms and the loop they live on (``engine.api.live``)."""

    __slots__ = ()


def _live(request: Request[Any, Any, Any], admin: Admin, name: str) -> LiveConferences:
    admin.routing_object("conference_rooms", name)  # 404 when there is no such room
    live: LiveConferences | None = request.app.state.get("conferences")
    if live is None:
        raise ServiceUnavailableException("no call engine runs in this process: live rooms are not available")
    return live


def _out(info: SeatInfo, now: float) -> ParticipantOut:
    return ParticipantOut(
        info.id, info.caller, info.host, info.muted, info.waiting, round(max(0.0, now - info.joined_at), 1)
    )


@get("/api/conferences/{name:str}/participants", opt=_CONFIGURE, tags=["routing"])
@threaded
def list_participants(
    request: Request[Any, Any, Any], admin: Admin, principal: Auth, name: FromPath[str]
) -> list[ParticipantOut]:
    """Who is in conference room ``name`` now, in the order they joined (empty when nobody is)."""
    live = _live(request, admin, name)
    return live.call(lambda service: [_out(i, service.now()) for i in service.participants(name)])


def _room(name: str, service: ConferenceService) -> RoomOut:
    locked = service.locked(name)
    now = service.now()
    return RoomOut(name, locked is not None, bool(locked), [_out(i, now) for i in service.participants(name)])


@get("/api/conferences/{name:str}", opt=_CONFIGURE, tags=["routing"])
@threaded
def get_room(request: Request[Any, Any, Any], admin: Admin, principal: Auth, name: FromPath[str]) -> RoomOut:
    """Conference room ``name`` as it runs: whether it is running and locked, and who is in it."""
    live = _live(request, admin, name)
    return live.call(lambda service: _room(name, service))


@put("/api/conferences/{name:str}/lock", opt=_CONFIGURE, tags=["routing"])
@threaded
def lock_room(
    request: Request[Any, Any, Any],
    admin: Admin,
    principal: Auth,
    name: FromPath[str],
    data: JSONBody[LockIn],
) -> RoomOut:
    """Lock a running room (new callers are kept out, as a host's *2 does) or unlock it; 409 when nobody
    is in the room (a room runs, and can be locked, only while someone is in it)."""
    live = _live(request, admin, name)

    def lock(service: ConferenceService) -> RoomOut | None:
        return _room(name, service) if service.lock(name, data.locked) else None

    room = live.call(lock)
    if room is None:
        raise ClientException(f"nobody is in conference room {name}: only a running room can be locked",
                              status_code=409)
    admin.record_event(principal.actor, "conference.locked" if data.locked else "conference.unlocked",
                       f"conference_room:{name}", {})
    return room


@delete("/api/conferences/{name:str}/participants/{participant_id:int}", opt=_CONFIGURE, tags=["routing"])
@threaded
def remove_participant(
    request: Request[Any, Any, Any], admin: Admin, principal: Auth, name: FromPath[str], participant_id: Id
) -> None:
    """Remove a participant from a running room: it hears nothing more and is hung up (404 when the room
    has no such participant)."""
    live = _live(request, admin, name)

    def remove(service: ConferenceService) -> SeatInfo | None:
        seat = next((i for i in service.participants(name) if i.id == participant_id), None)
        return seat if seat is not None and service.remove(name, participant_id) else None

    removed = live.call(remove)
    if removed is None:
        raise NotFoundError(f"participant of conference room {name}", participant_id)
    admin.record_event(
        principal.actor,
        "conference.participant_removed",
        f"conference_room:{name}",
        {"participant": participant_id, "caller": removed.caller, "host": removed.host},
    )


CONFERENCE_ROUTES: Final = [get_room, lock_room, list_participants, remove_participant]
