"""Forking: the state of each branch a call rings, and the best answer when none answers (RFC 3261 §16.7).

A branch (``OutLeg``) is one INVITE client transaction. Its state table says what each response and our
wish to give it up (``CANCEL``) do, and what the manager must do on the move (``LegAction``):

- §9.1: a CANCEL may only go out once a provisional response (100 Trying included) has arrived. Giving up a
  branch before that waits in ``CANCEL_WAIT``; the first provisional sends the CANCEL then. A guard of
  64*T1 (armed with the first wish) ends a branch that never answers the CANCEL.
- 18x while ringing is relayed to the caller (``RELAY``); after the CANCEL it is not.
- A 2xx is ``ANSWER`` when the call still wants this branch, ``LATE`` when it does not (another branch won,
  the caller left, the round ended): the manager ACKs and BYEs it (§13.2.2.4).
- Any other final response, Timer B's 408 or the guard ends the branch (``FINAL``).

Every (state, input) pair is in the table: nothing a branch's peer sends can make it raise, and the
manager's own inputs in a state where they mean nothing are absorbed (a CANCEL for an answered branch).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

from engine.model.cdr import Disposition

#: Final statuses that mean "busy" wherever they come from (§21.4.24, §21.6.1).
BUSY: Final = frozenset({486, 600})


class LegState(enum.Enum):
    CALLING = "calling"  # INVITE sent, nothing back yet
    TRYING = "trying"  # 100 Trying: a CANCEL may go out now
    EARLY = "early"  # 101-199: ringing or early media
    CANCEL_WAIT = "cancel-wait"  # given up before any provisional: the CANCEL waits for one (§9.1)
    CANCELLING = "cancelling"  # CANCEL sent: the 487 (or a crossing 2xx) ends it
    ANSWERED = "answered"  # its 2xx won: the callee side of the call
    ENDED = "ended"  # a final response, a timeout, or a 2xx that came too late


class LegInput(enum.Enum):
    TRYING = "100"
    PROGRESS = "1xx"  # 101-199
    CANCEL = "cancel"  # we give the branch up
    ANSWER = "2xx"  # a 2xx the call still wants
    LATE = "late-2xx"  # a 2xx the call no longer wants
    FINAL = "final"  # 3xx-6xx, Timer B (408), or the CANCEL guard


class LegAction(enum.Enum):
    NONE = "none"
    RELAY = "relay"  # pass the provisional on to the caller
    GUARD = "guard"  # arm the CANCEL guard; the CANCEL itself waits for a provisional
    CANCEL = "cancel"  # send the CANCEL (arming the guard if the wish did not)
    ANSWER = "answer"  # bridge the caller to this branch
    LATE = "late"  # ACK, then BYE
    END = "end"  # the branch is over: stop tracking it


L = LegState
In = LegInput
A = LegAction
_RINGING = (L.CALLING, L.TRYING, L.EARLY)
_GIVEN_UP = (L.CANCEL_WAIT, L.CANCELLING)

#: (state, input) -> (next state, what the manager does).
LEG_TABLE: Final[dict[tuple[LegState, LegInput], tuple[LegState, LegAction]]] = {
    (L.CALLING, In.TRYING): (L.TRYING, A.NONE),
    (L.CALLING, In.PROGRESS): (L.EARLY, A.RELAY),
    (L.CALLING, In.CANCEL): (L.CANCEL_WAIT, A.GUARD),
    (L.TRYING, In.TRYING): (L.TRYING, A.NONE),
    (L.TRYING, In.PROGRESS): (L.EARLY, A.RELAY),
    (L.TRYING, In.CANCEL): (L.CANCELLING, A.CANCEL),
    (L.EARLY, In.TRYING): (L.EARLY, A.NONE),
    (L.EARLY, In.PROGRESS): (L.EARLY, A.RELAY),
    (L.EARLY, In.CANCEL): (L.CANCELLING, A.CANCEL),
    (L.CANCEL_WAIT, In.TRYING): (L.CANCELLING, A.CANCEL),
    (L.CANCEL_WAIT, In.PROGRESS): (L.CANCELLING, A.CANCEL),
    (L.CANCEL_WAIT, In.CANCEL): (L.CANCEL_WAIT, A.NONE),
    (L.CANCELLING, In.TRYING): (L.CANCELLING, A.NONE),
    (L.CANCELLING, In.PROGRESS): (L.CANCELLING, A.NONE),
    (L.CANCELLING, In.CANCEL): (L.CANCELLING, A.NONE),
    **{(state, In.ANSWER): (L.ANSWERED, A.ANSWER) for state in _RINGING},
    **{(state, In.LATE): (L.ENDED, A.LATE) for state in (*_RINGING, *_GIVEN_UP)},
    **{(state, In.FINAL): (L.ENDED, A.END) for state in (*_RINGING, *_GIVEN_UP)},
    # An answered or ended branch has no INVITE transaction left: a wish to cancel it means nothing.
    (L.ANSWERED, In.CANCEL): (L.ANSWERED, A.NONE),
    (L.ENDED, In.CANCEL): (L.ENDED, A.NONE),
    (L.ENDED, In.FINAL): (L.ENDED, A.NONE),
}

#: States in which the branch still waits for its final response.
UNFINISHED: Final = frozenset((*_RINGING, *_GIVEN_UP))


def leg_step(state: LegState, inp: LegInput) -> tuple[LegState, LegAction]:
    """The move of a branch in ``state`` on ``inp``.

    Raises:
        KeyError: an input the manager never gives in that state (a 2xx it wants on a branch it gave up).
    """
    return LEG_TABLE[(state, inp)]


def best_status(statuses: Sequence[int]) -> int:
    """§16.7 step 6, as a PBX reads it: busy anywhere is busy; otherwise the lowest 4xx, then 5xx; a
    branch that timed out counts as no answer (480)."""
    # A B2BUA cannot pass on a redirect (3xx: no Contact) or a challenge meant for itself (401/407).
    finals = [480 if 300 <= s < 400 else 403 if s in (401, 407) else s for s in statuses if s >= 300]
    if not finals:
        return 480
    if any(s in BUSY for s in finals):
        return 486
    for lo, hi in ((600, 700), (400, 500), (500, 600), (300, 400)):
        cls = [s for s in finals if lo <= s < hi and s != 408]
        if cls:
            return min(cls)
    return 480


def disposition_of(status: int) -> Disposition:
    """The CDR disposition of a call that ended with ``status``."""
    if status in BUSY:
        return Disposition.BUSY
    if status == 487:
        return Disposition.CANCELLED
    if status in (408, 480, 603):
        return Disposition.NO_ANSWER
    if status in (404, 484, 604):
        return Disposition.NOT_FOUND
    if status == 403:
        return Disposition.FORBIDDEN
    return Disposition.FAILED
