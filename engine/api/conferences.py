"""Live conference rooms over the admin API (issue 13): who is in a room while it runs, removing one, and
locking the room.

The rooms live on the engine's event loop (``engine.call.conference.ConferenceService``: no locks, only
the loop touches them), while the API's handlers run in worker threads. So each request hands one function
to the loop (``loop.call_soon_threadsafe``) and waits for its result on a ``concurrent.futures.Future``
for at most ``LIVE_TIMEOUT_S``: the loop never waits for the API, and a loop that does not answer in time
(stopped, or stalled) is a 503, not a hung request. A function the loop has not started when the wait
ends is cancelled, so a late removal never happens behind a 503.

An app built without the call engine (``create_app(conferences=None)``: the CLI's tools, the API tests)
answers 503 for these routes; the room must exist as a routing object either way (404 otherwise).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
from litestar import Request, delete, get, put
from litestar.exceptions import ClientException, ServiceUnavailableException
from litestar.params import FromPath, JSONBody

from engine.api.routes import CONFIGURE, Admin, Auth, Id, threaded
from engine.call.conference import ConferenceService, SeatInfo
from engine.store.errors import NotFoundError

R = TypeVar("R")

LIVE_TIMEOUT_S: Final = 2.0
"""How long a request waits for the event loop's answer."""
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


@dataclass(frozen=True, slots=True)
class LiveConferences:
    """The engine's ``ConferenceService`` and the loop it lives on, reached from worker threads."""

    loop: asyncio.AbstractEventLoop
    service: ConferenceService
    timeout_s: float = LIVE_TIMEOUT_S

    def call(self, fn: Callable[[ConferenceService], R]) -> R:
        """``fn(service)`` run on the loop; its result or its exception, here.

        Raises:
            ServiceUnavailableException: the loop is closed or did not run ``fn`` within ``timeout_s``.
        """
        done: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            if not done.set_running_or_notify_cancel():
                return  # the request gave up waiting: do nothing behind its back
            try:
                done.set_result(fn(self.service))
            except Exception as exc:  # handed to the waiting thread, which raises it
                done.set_exception(exc)

        try:
            self.loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed (the engine is stopping)
            raise ServiceUnavailableException("the call engine is stopping") from None
        try:
            return done.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            if done.cancel():
                raise ServiceUnavailableException(
                    f"the call engine did not answer within {self.timeout_s:g} s; retry"
                ) from None
            return done.result()  # it started just now: its answer follows at once


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
