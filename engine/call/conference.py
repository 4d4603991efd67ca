"""Conference rooms on calls (issue 13): the live rooms of the engine and each caller's seat in one.

A caller whose dial plan reaches a room has been answered by the engine and passed its PIN
(``engine.dialplan.evaluate``: ``JoinConference``); the call's ``FlowController`` then hands it a ``Seat``.
The seat plugs the caller's media session into the room's mixer (``engine.media.mixer``): the session
sends the caller's mix on every media clock tick (``MediaSession.hold``, the same hook that plays queue
hold music) and hands the caller's audio to its ``Participant`` (``MediaSession.sink``). While seated the
seat listens for ``*``, the in-call menu, as one-key ``Collect``s on the session (one media action at a
time, as a queue caller's exit key is listened for).

``ConferenceService`` keeps the live rooms by name (a room exists while someone is in it): who is in it in
the order they joined (for "eject the last joiner" and the API's list), which are hosts, whether it is
locked. Rules:

- a locked room keeps new callers out (they hear "locked" and goodbye);
- a room with a waiting room connects nobody until a host is there: the others hear the system hold music
  (after "the conference will begin when the host joins") and are mixed in when a host joins;
- a room that ends with its last host removes everyone when the last host leaves ("the conference has
  ended");
- participants of a room that enters muted join muted (hosts never do).

The in-call menu (``*`` then one key; the menu stays open until 8 or a 10 s pause): 1 mute/unmute, 2
lock/unlock (hosts), 3 remove the last person who joined (hosts), 4/6 listen softer/louder, 7/9 talk
softer/louder, 8 leave the menu. Each key is confirmed by a prompt in the caller's language.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from engine.dialplan.evaluate import ConferenceExit, ConferenceResult, JoinConference
from engine.dialplan.plan import ConferenceRoom
from engine.media.hold import FrameSource
from engine.media.mixer import Participant, Room
from engine.script import Collect, Collected, HungUp, Play, Played, Sound

if TYPE_CHECKING:
    from engine.call.flows import FlowController, MediaResult

logger = logging.getLogger(__name__)

MENU_KEY: Final = "*"
MENU_TIMEOUT_S: Final = 10.0
"""The in-call menu closes after this long without a key."""
_LISTEN: Final = Collect(max_digits=1, first_timeout_s=3600.0, inter_digit_timeout_s=3600.0)
_MENU_KEY: Final = Collect(max_digits=1, first_timeout_s=MENU_TIMEOUT_S, inter_digit_timeout_s=MENU_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class SeatInfo:
    """One participant as the API lists it."""

    id: int
    caller: str
    host: bool
    muted: bool
    waiting: bool
    joined_at: float


class LiveRoom:
    """A room while someone is in it: its mixer, its seats in join order, and its lock."""

    def __init__(self, room: ConferenceRoom) -> None:
        self.room = room
        self.mixer = Room()
        self.seats: list[Seat] = []
        self.locked = False

    @property
    def has_host(self) -> bool:
        return any(seat.host for seat in self.seats)

    @property
    def open(self) -> bool:
        """Participants are connected (no waiting room, or a host is there)."""
        return not self.room.waiting_room or self.has_host


class ConferenceService:
    """The engine's live conference rooms (see the module docstring).

    Args:
        hold_stream: the system hold music (for waiting rooms).
        now: the loop's clock (join times).
    """

    def __init__(self, hold_stream: Callable[[], FrameSource | None], now: Callable[[], float]) -> None:
        self.hold_stream = hold_stream
        self.now = now
        self.rooms: dict[str, LiveRoom] = {}
        self._next_id = 1

    # -- the API's view ------------------------------------------------------------------------------

    def participants(self, name: str) -> list[SeatInfo]:
        """The participants of room ``name`` in join order (empty when nobody is in it)."""
        live = self.rooms.get(name)
        if live is None:
            return []
        return [seat.info() for seat in live.seats]

    def remove(self, name: str, seat_id: int) -> bool:
        """Remove participant ``seat_id`` from room ``name`` (it hears nothing more and is hung up);
        False when there is no such participant."""
        live = self.rooms.get(name)
        seat = None if live is None else next((s for s in live.seats if s.id == seat_id), None)
        if seat is None:
            return False
        seat.leave("removed")
        return True

    def locked(self, name: str) -> bool | None:
        """Whether room ``name`` is locked; None when nobody is in it (a room runs while someone is)."""
        live = self.rooms.get(name)
        return None if live is None else live.locked

    def lock(self, name: str, locked: bool) -> bool:
        """Lock or unlock room ``name`` as a host's ``*2`` does (a locked room keeps new callers out);
        False when nobody is in it."""
        live = self.rooms.get(name)
        if live is None:
            return False
        live.locked = locked
        logger.info("conference %s: %s over the API", name, "locked" if locked else "unlocked")
        return True

    # -- seats ---------------------------------------------------------------------------------------

    def seat(self, flow: FlowController, action: JoinConference) -> None:
        """Seat the caller of ``flow`` in ``action.room`` (or resume its run with "locked")."""
        live = self.rooms.get(action.room.name)
        if live is None:
            live = self.rooms[action.room.name] = LiveRoom(action.room)
        if live.locked:
            flow._step(ConferenceResult("locked"))
            return
        seat_id = self._next_id
        self._next_id += 1
        Seat(self, live, flow, action.host, seat_id)

    def _left(self, live: LiveRoom, seat: Seat) -> None:
        if seat in live.seats:
            live.seats.remove(seat)
        if seat.host and live.room.end_with_last_host and not live.has_host:
            for other in list(live.seats):
                other.leave("ended")
        if not live.seats and self.rooms.get(live.room.name) is live:
            del self.rooms[live.room.name]


class Seat:
    """One caller in a live room: its mixer participant, the in-call menu, and the way out."""

    def __init__(self, service: ConferenceService, live: LiveRoom, flow: FlowController, host: bool,
                 seat_id: int) -> None:
        media = flow.media
        assert media is not None and flow.call is not None
        self.service = service
        self.live = live
        self.flow = flow
        self.host = host
        self.id = seat_id
        self.caller = flow.call.info.caller
        self.joined_at = service.now()
        self.participant = Participant(media.codec, muted=live.room.enter_muted and not host)
        self.exit: ConferenceExit | None = None
        self.media_busy = False
        self.in_menu = False
        self.connected = False
        flow.seat = self
        flow._steps.append(f"conference:{live.room.name}:joined{' as host' if host else ''}")
        live.seats.append(self)
        media.sink = self.participant
        if live.open:
            for seat in live.seats:
                seat._connect()
        else:
            media.hold = service.hold_stream()
            self._run(Play((Sound("conference-waiting"),), barge_in=False))
            return
        self._run(_LISTEN)

    def info(self) -> SeatInfo:
        return SeatInfo(self.id, self.caller, self.host, self.participant.muted, not self.connected,
                         self.joined_at)

    # -- the room ----------------------------------------------------------------------------------------

    def _connect(self) -> None:
        """Into the mixer (on joining an open room, or when a host opens a waiting room)."""
        if self.connected or self.exit is not None:
            return
        self.connected = True
        self.live.mixer.add(self.participant)
        media = self.flow.media
        if media is not None:
            media.hold = self.participant

    def leave(self, how: ConferenceExit) -> None:
        """Out of the room (removed, or the conference ended): the run resumes with ``how`` once the
        running media action has returned."""
        if self.exit is not None:
            return
        self.exit = how
        self._detach()
        media = self.flow.media
        if self.media_busy and media is not None:
            media.interrupt()
            return
        self._resume()

    def caller_gone(self) -> None:
        """The caller hung up."""
        if self.exit is None:
            self.exit = "left"
            self._detach()

    def _detach(self) -> None:
        self.live.mixer.remove(self.participant)
        self.connected = False
        media = self.flow.media
        if media is not None:
            media.hold = None
            media.sink = None
        self.service._left(self.live, self)

    def _resume(self) -> None:
        assert self.exit is not None
        self.flow.seat = None
        self.flow._step(HungUp() if self.flow.hung_up else ConferenceResult(self.exit))

    # -- media and the in-call menu ----------------------------------------------------------------------

    def _run(self, action: Play | Collect) -> None:
        media = self.flow.media
        assert media is not None
        self.media_busy = True
        self.flow.services.run_media(media, action, self._media_done)

    def _say(self, key: str) -> None:
        self._run(Play((Sound(key),), barge_in=True))

    def _media_done(self, result: MediaResult) -> None:
        self.media_busy = False
        if self.flow.hung_up:
            if self.flow.seat is self:
                self.flow.seat = None
                self.flow._step(HungUp())
            return
        if self.exit is not None:
            self._resume()
            return
        if isinstance(result, Played):
            self._run(_MENU_KEY if self.in_menu else _LISTEN)
            return
        if not isinstance(result, Collected):
            self._run(_LISTEN)
            return
        key = result.digits
        if not self.in_menu:
            if key == MENU_KEY:
                self.in_menu = True
                self._say("conference-menu")
            else:
                self._run(_LISTEN)
            return
        if not key or key == "8":
            self.in_menu = False
            self._run(_LISTEN)
            return
        self._menu(key)

    def _menu(self, key: str) -> None:
        """One key of the in-call menu (see the module docstring)."""
        p = self.participant
        if key == "1":
            p.muted = not p.muted
            self._say("conference-muted" if p.muted else "conference-unmuted")
        elif key == "2":
            if not self.host:
                self._say("conference-hosts-only")
                return
            self.live.locked = not self.live.locked
            self._say("conference-now-locked" if self.live.locked else "conference-now-unlocked")
        elif key == "3":
            if not self.host:
                self._say("conference-hosts-only")
                return
            last = next((s for s in reversed(self.live.seats) if s is not self), None)
            if last is not None:
                room = self.live.room.name
                logger.info("conference %s: host %s removed %s", room, self.caller, last.caller)
                last.leave("removed")
            self._say("conference-removed-last")
        elif key in "46":
            p.change_listen(-1 if key == "4" else 1)
            self._say("conference-softer" if key == "4" else "conference-louder")
        elif key in "79":
            p.change_talk(-1 if key == "7" else 1)
            self._say("conference-softer" if key == "7" else "conference-louder")
        else:
            self._say("invalid-option")
