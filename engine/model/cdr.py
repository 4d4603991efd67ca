"""Call detail records: one frozen record per call, written by the call layer, stored by ``engine.store``.

Times are wall-clock epoch seconds. ``disposition`` says how the call ended for the caller; ``hangup_cause``
says who or what ended it, in words an administrator reads in ``pbx cdr list``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class Disposition(enum.StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"                  # every branch answered busy (486/600)
    NO_ANSWER = "no_answer"        # ring timeout, or the callee declined without busy
    CANCELLED = "cancelled"        # the caller hung up before an answer
    UNAVAILABLE = "unavailable"    # the line exists but has no registered contact (480)
    NOT_FOUND = "not_found"        # no such extension or number (404)
    FORBIDDEN = "forbidden"        # dialling permissions, unknown source (403)
    FAILED = "failed"              # anything else: 4xx/5xx/6xx from the far end, timeouts, internal errors


class Direction(enum.StrEnum):
    INTERNAL = "internal"          # line to line
    INBOUND = "inbound"            # carrier trunk to a DID
    OUTBOUND = "outbound"          # line to an external number through a trunk


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One outbound leg (a branch that was rung): where it went and how it ended."""

    target: str                    # the Request-URI the leg was sent to
    started_at: float
    answered_at: float | None
    ended_at: float
    status: int                    # the final SIP status the leg got (200 when answered; 487 when cancelled)


QueueOutcome = Literal["answered", "abandoned", "timeout", "key", "full", "no_agents"]
"""How a caller left a queue: an agent answered, it hung up waiting, or it took the queue's exit (the
maximum wait, the exit key, a full queue, no agent when the queue lets nobody join then)."""


@dataclass(frozen=True, slots=True)
class QueueVisit:
    """One caller's time in one call queue (issue 12's reports): joined and left (wall-clock epoch
    seconds; for ``answered`` the moment the agent answered), how it left, and the agent who answered."""

    queue: str
    joined_at: float
    left_at: float
    outcome: QueueOutcome
    agent: str | None = None

    @property
    def waited(self) -> float:
        return max(0.0, self.left_at - self.joined_at)


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str                   # our own id for the call (not a SIP Call-ID: a B2BUA call has several)
    direction: Direction
    caller: str                    # the caller's number or extension as we identified it
    caller_name: str
    callee: str                    # what was dialled (extension, E.164 for external numbers)
    did: str | None                # the DID an inbound call arrived on (E.164)
    trunk: str | None              # the trunk an inbound/outbound call used
    started_at: float
    answered_at: float | None
    ended_at: float
    disposition: Disposition
    status: int                    # the final status the caller got (200 when answered)
    hangup_cause: str              # e.g. "caller hung up", "callee hung up", "486 Busy Here", "ring timeout"
    legs: tuple[LegRecord, ...] = ()
    path: tuple[str, ...] = ()     # dial-plan steps taken ("main/hours:open", "main/menu:1", "sales:ring")
    queues: tuple[QueueVisit, ...] = ()  # the call queues the caller waited in, in order

    @property
    def duration(self) -> float:
        """Talk time in seconds (0 for an unanswered call)."""
        return 0.0 if self.answered_at is None else max(0.0, self.ended_at - self.answered_at)
