"""Call park (issue 19 part 3): a phone parks the call it is on by a blind transfer to the park extension,
and any phone takes it back by dialling its orbit.

The park extension is the company's ``park`` code (``engine.dialplan.starcodes``, default ``70``, as in
FreePBX; its orbits are ``71``-``79``, and the compiler refuses a configuration where the code or an
orbit is an extension). B, in a call with A, transfers A blind (REFER) to ``70``:

- A gets the first free orbit, leaves B's bridge and hears the company's hold music (as a transferee does
  while its target rings). Every orbit taken: B is NOTIFYed ``486 Busy Here`` and A stays with B.
- B is NOTIFYed ``100 Trying``, hears the orbit spoken out of its relay side ("parked on seven one",
  in the plans' language), then gets NOTIFY ``200 OK`` and a BYE (a phone that hangs up first just ends).
- A phone that dials the orbit (an authenticated INVITE to ``71``) is answered on a new call bridged to A
  (``TransferService.connect``, as an INVITE with Replaces is). An empty orbit answers ``404 Nothing parked
  on 71``.
- Nobody took A back within the park timeout (``pbx serve --park-timeout``, default 60 s, counted from B's
  release): B's line is rung
  for A, as a failed blind transfer's transferrer is (``BlindTransfer`` in its calling-back state): answered,
  A is moved to that call; unanswered, A is hung up (the fallback; A heard the music all along).
- A hanging up while parked frees the orbit; its call ends as any call with its last leg.

The state of one parked call is ``PARK_TABLE``: (state, input) -> (action, next state); a missing pair is a
``KeyError`` (an input given once the call left its orbit). ``ParkService.parked`` is the orbit -> call
table that ``/metrics`` counts (``pbx_parked_calls``); it is empty again after every path above.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from engine.call.b2bua import CallManager
from engine.call.indialog import InDialog
from engine.call.legs import CallInfo, Side, TimerHandle
from engine.call.transfer import BlindTransfer, TransferInput, TransferService, TransferState
from engine.clock import Clock
from engine.dialplan.starcodes import DEFAULT_TABLE, Feature, StarCodeTable
from engine.media.io import RelayMusic, RelaySide
from engine.model.cdr import Direction, Disposition
from engine.sip.message import Request
from engine.sip.refer import ReferTo
from engine.sip.transaction import Peer, ServerTransaction

logger = logging.getLogger(__name__)

DEFAULT_PARK_TIMEOUT_S: Final = 60.0
PARKED_ON: Final = "park-parked-on"
"""The prompt before the orbit's digits."""

Announcer = Callable[[RelaySide, bytes, tuple[str, ...]], tuple[RelayMusic, float] | None]
"""Speaks prompts out of a relay side (``FlowShell.announce``): the sender and how long it speaks."""


class ParkState(enum.Enum):
    PARKED = "parked"  # on its orbit, hearing hold music
    RETRIEVED = "retrieved"  # a phone dialled the orbit and is bridged to it
    CALLED_BACK = "called-back"  # the timeout passed: the parker's line rings for it (a ``BlindTransfer``)
    GONE = "gone"  # it hung up while parked


class ParkInput(enum.Enum):
    RETRIEVE = "retrieve"  # an INVITE to its orbit
    TIMEOUT = "timeout"  # the park timeout passed
    HANG_UP = "hang-up"  # its leg ended


class ParkAction(enum.Enum):
    BRIDGE = "bridge"  # answer the retriever and bridge it to the parked leg
    CALL_BACK = "call-back"  # ring the parker's line for the parked leg
    FREE = "free"  # nothing left to do but free the orbit


P = ParkState
PIn = ParkInput
PA = ParkAction

#: (state, input) -> (what the service does, next state). Every action frees the orbit.
PARK_TABLE: Final[dict[tuple[ParkState, ParkInput], tuple[ParkAction, ParkState]]] = {
    (P.PARKED, PIn.RETRIEVE): (PA.BRIDGE, P.RETRIEVED),
    (P.PARKED, PIn.TIMEOUT): (PA.CALL_BACK, P.CALLED_BACK),
    (P.PARKED, PIn.HANG_UP): (PA.FREE, P.GONE),
}


def park_step(state: ParkState, inp: ParkInput) -> tuple[ParkAction, ParkState]:
    """The move of a parked call in ``state`` on ``inp``.

    Raises:
        KeyError: an input the service never gives in that state (anything once the call left its orbit).
    """
    return PARK_TABLE[(state, inp)]


def free_orbit(slots: tuple[str, ...], taken: dict[str, ParkedCall] | set[str]) -> str | None:
    """The first of ``slots`` not ``taken``; None when every orbit is."""
    return next((slot for slot in slots if slot not in taken), None)


@dataclass(eq=False, slots=True)
class ParkedCall:
    """One call on an orbit."""

    orbit: str
    side: Side  # the parked leg
    parker: str  # the line that parked it (rung back after the timeout)
    refer: ServerTransaction  # the parking REFER's transaction (the call-back's ``Call.tx``)
    parked_at: float
    state: ParkState = ParkState.PARKED
    timer: TimerHandle | None = None


class ParkService:
    """Parks and retrieves calls (see the module docstring).

    Args:
        transfers: the engine's transfers (NOTIFYs, the retriever's call, the call-back).
        clock: the engine's clock (timers read it when they fire).
        timeout_s: how long a call stays parked before its parker's line rings.
        announce: speaks the orbit to the parker (None: the parker is just told 200 and released).
    """

    def __init__(self, transfers: TransferService, clock: Clock, timeout_s: float = DEFAULT_PARK_TIMEOUT_S,
                 announce: Announcer | None = None) -> None:
        self.transfers = transfers
        self.manager: CallManager = transfers.manager
        self.clock = clock
        self.timeout_s = timeout_s
        self.announce = announce
        self.parked: dict[str, ParkedCall] = {}
        self.stats: dict[str, int] = {"parked": 0, "retrieved": 0, "called_back": 0, "hung_up": 0}
        transfers.park = self.park

    def table(self) -> StarCodeTable:
        plan = self.transfers.config.snapshot.plan
        return plan.star_codes if plan is not None else DEFAULT_TABLE

    # -- parking (TransferService.park) ------------------------------------------------------------------
    def park(self, parker: Side, side: Side, refer: ServerTransaction, line: str, target: ReferTo,
             now: float) -> bool:
        """A blind transfer of ``side`` by ``parker`` (its REFER answered 202): park it when the target
        is the park extension (True), else leave it to the transfer (False)."""
        table = self.table()
        if (target.uri.user_decoded or "") != table.code(Feature.PARK):
            return False
        transfers = self.transfers
        orbit = free_orbit(table.park_slots(), self.parked)
        if orbit is None:
            logger.info("park from %s: every orbit is taken", line)
            transfers.notify(parker, 486, "Busy Here", now, final=True)
            return True
        manager = self.manager
        side.line = side.line if side.line is not None else (transfers.line_of(side) or "")
        parked = ParkedCall(orbit, side, line, refer, now)
        self.parked[orbit] = parked
        self.stats["parked"] += 1
        manager.bridging.unbridge(side)
        music = manager.sides.music
        if music is not None and side.media is not None:
            side.music = music(side.call, side.media, side.last_sdp)
        side.on_end = lambda when: self._input(parked, PIn.HANG_UP, when)
        logger.info("line %s parked %s on %s", line, side.dialog.call_id, orbit)
        transfers.notify(parker, 100, "Trying", now, final=False)
        spoken = self._tell_orbit(parker, orbit, now)
        # The timeout runs from the parker's release: its line is never rung back while it still listens.
        parked.timer = manager.scheduler.call_at(now + spoken + self.timeout_s,
                                                 lambda: self._timed(parked, PIn.TIMEOUT))
        return True

    def _tell_orbit(self, parker: Side, orbit: str, now: float) -> float:
        """Speak the orbit to the parker, then NOTIFY it 200 and release it; how long that takes."""
        spoken = None
        if self.announce is not None and parker.media is not None:
            keys = (PARKED_ON, *(f"digit-{d}" for d in orbit if d.isdigit()))
            spoken = self.announce(parker.media, parker.last_sdp, keys)
        if spoken is None:
            self._release_parker(parker, now)
            return 0.0
        sender, seconds = spoken
        parker.music = sender  # stopped with the leg (``InDialog.end_side``)
        self.manager.scheduler.call_at(now + seconds + 0.3, lambda: self._timed_release(parker))
        return seconds + 0.3

    def _timed_release(self, parker: Side) -> None:
        self._run(lambda now: self._release_parker(parker, now))

    def _release_parker(self, parker: Side, now: float) -> None:
        if parker.ended:
            return
        InDialog.stop_music(parker)
        self.transfers.notify(parker, 200, "OK", now, final=True)
        self.manager.hang_up_leg(parker, now, "parked the call")

    # -- retrieving (SipApplication._invite) ---------------------------------------------------------------
    def retrieve(self, req: Request, tx: ServerTransaction, peer: Peer, line: str, now: float) -> bool:
        """An authenticated INVITE from ``line``: when it dials an orbit (True), answer it on the parked
        call, or ``404`` for an empty orbit; False when it dials anything else."""
        dialled = req.request_uri.user_decoded or ""
        if dialled not in self.table().park_slots():
            return False
        parked = self.parked.get(dialled)
        if parked is None:
            info = CallInfo(Direction.INTERNAL, caller=line, caller_name=line, callee=dialled)
            self.manager.refuse(req, tx, 404, f"Nothing parked on {dialled}", Disposition.NOT_FOUND, info,
                                now)
            return True
        self._input(parked, PIn.RETRIEVE, now, (req, tx, peer, line))
        return True

    # -- the table's shell -----------------------------------------------------------------------------------
    def _input(self, parked: ParkedCall, inp: ParkInput, now: float,
               retriever: tuple[Request, ServerTransaction, Peer, str] | None = None) -> None:
        action, new = park_step(parked.state, inp)
        logger.info("parked call on %s: %s -> %s (%s)", parked.orbit, parked.state.value, new.value,
                    inp.value)
        parked.state = new
        self.parked.pop(parked.orbit, None)
        timer = parked.timer
        if timer is not None:
            timer.cancel()
        parked.timer = None
        side = parked.side
        side.on_end = None
        if action is PA.FREE:
            self.stats["hung_up"] += 1
        elif action is PA.BRIDGE:
            assert retriever is not None
            self.stats["retrieved"] += 1
            req, tx, peer, line = retriever
            if not self.transfers.connect(req, tx, peer, line, side, side.line or parked.parker, now):
                # The retriever could not be answered (no audio it shares, no relay port): park on.
                self._repark(parked, now)
        elif action is PA.CALL_BACK:
            self.stats["called_back"] += 1
            transfers = self.transfers
            callback = BlindTransfer(transfers, None, side, parked.refer, parked.parker)
            callback.state = TransferState.CALLING_BACK
            realm = transfers.config.snapshot.routing.company.sip_realm
            if not transfers.dial(callback, f"sip:{parked.parker}@{realm}", now):
                callback.input(TransferInput.FAILED, now)  # nobody to ring: hung up

    def _repark(self, parked: ParkedCall, now: float) -> None:
        if parked.side.ended or parked.orbit in self.parked:
            return
        parked.state = ParkState.PARKED
        self.parked[parked.orbit] = parked
        parked.side.on_end = lambda when: self._input(parked, PIn.HANG_UP, when)
        parked.timer = self.manager.scheduler.call_at(now + self.timeout_s,
                                                      lambda: self._timed(parked, PIn.TIMEOUT))

    def _timed(self, parked: ParkedCall, inp: ParkInput) -> None:
        if parked.state is ParkState.PARKED:
            self._run(lambda now: self._input(parked, inp, now))

    def _run(self, action: Callable[[float], None]) -> None:
        """A timer's action with the current time, then what it queued sent (``CallManager._timer``)."""
        try:
            action(self.clock.now())
        except Exception:
            self.manager.stats["internal_errors"] += 1
            logger.exception("internal error in a park timer")
        self.manager.flush()
