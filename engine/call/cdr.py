"""The call detail records of the call layer: one ``CallRecord`` per call, written when its last leg has
its final answer (so a cancelled leg is recorded with its 487), and one per call that routing refused."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from engine.call.legs import Call, CallInfo, CdrSink
from engine.clock import Clock
from engine.model.cdr import CallRecord, Disposition

logger = logging.getLogger(__name__)


class CdrRecorder:
    """Turns calls into records for ``sink`` (the CDR writer); a failing sink never breaks a call."""

    __slots__ = ("clock", "sink")

    def __init__(self, sink: CdrSink, clock: Clock) -> None:
        self.sink = sink
        self.clock = clock

    def wall_of(self, t: float) -> float:
        """A monotonic instant as wall-clock epoch seconds (for records)."""
        return self.clock.wall() - (self.clock.now() - t)

    def call_ended(self, call: Call) -> None:
        wall = self.wall_of
        info = call.info
        ended = call.ended_at if call.ended_at is not None else call.started_at
        self._write(CallRecord(
            call_id=call.id, direction=info.direction, caller=info.caller, caller_name=info.caller_name,
            callee=info.callee, did=info.did, trunk=info.trunk, started_at=wall(call.started_at),
            answered_at=None if call.answered_at is None else wall(call.answered_at), ended_at=wall(ended),
            disposition=call.disposition or Disposition.FAILED, status=call.final_status,
            hangup_cause=call.cause, legs=tuple(leg.record(wall) for leg in call.legs),
            path=call.controller.path() if call.controller is not None else (),
            queues=tuple(replace(v, joined_at=wall(v.joined_at), left_at=wall(v.left_at))
                         for v in call.queue_visits),
        ))

    def refused(self, info: CallInfo, status: int, cause: str, disposition: Disposition, now: float) -> None:
        """A call that routing refused (unknown numbers and forbidden destinations belong in the CDRs)."""
        at = self.wall_of(now)
        self._write(CallRecord(
            call_id=uuid.uuid4().hex, direction=info.direction, caller=info.caller,
            caller_name=info.caller_name, callee=info.callee, did=info.did, trunk=info.trunk, started_at=at,
            answered_at=None, ended_at=at, disposition=disposition, status=status, hangup_cause=cause))

    def _write(self, record: CallRecord) -> None:
        try:
            self.sink(record)
        except Exception:
            logger.exception("call %s: writing the CDR failed", record.call_id)
