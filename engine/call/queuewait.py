"""A caller waiting in a call queue, on its own media endpoint: the welcome clip, the shared hold stream,
the queue's announcements (its place in line, the estimated wait, a periodic clip), the exit key, the
agents' offers rung as ring rounds of the call, and the way out (``engine.call.queue`` decides who is
offered and when; this is what the caller hears and does meanwhile).

One media action runs at a time on the caller's endpoint: the welcome ``Play``, then ``Collect``s of one
key while the hold stream plays underneath (the endpoint sends the stream whenever no prompt plays), each
lasting until the next announcement is due; an announcement is a ``Play`` with barge-in, so the exit key
works during it too (the key stays buffered and the next ``Collect`` reads it). Leaving interrupts the
running action; the plan run is resumed once it has returned.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.call.fork import LegState
from engine.call.queue import QueueService, Ticket
from engine.dialplan.evaluate import Enqueue, QueueExit, QueueResult
from engine.dialplan.plan import Queue, RingTarget
from engine.media.prompts import say_count, say_number
from engine.model.cdr import QueueOutcome, QueueVisit
from engine.script import Collect, Collected, File, HungUp, Play, PromptItem, Sound

if TYPE_CHECKING:
    from engine.call.b2bua import Call, Destination
    from engine.call.flows import FlowController, MediaRequest, MediaResult

MAX_SPOKEN: int = 999
"""Places in line and minutes beyond this are not said (``say_number``'s range)."""


def announcement(queue: Queue, place: int, wait_s: float | None, language: str,
                 periodic: bool) -> tuple[PromptItem, ...]:
    """What a waiting caller hears now: on the periodic beat the queue's own clip first, then its place in
    line ("you are next in line" / "you are caller number 3") and the estimated wait ("about 2 minutes",
    "less than a minute"; nothing before the queue has an estimate), each when the queue announces it.
    Empty when there is nothing to say."""
    items: list[PromptItem] = []
    if periodic and queue.announce_clip is not None:
        items.append(File(queue.announce_clip))
    said = False
    if queue.announce_position and 1 <= place <= MAX_SPOKEN:
        said = True
        if place == 1:
            items.append(Sound("queue-position-first"))
        else:
            items.extend((Sound("queue-position"), *say_number(place, language)))
    if queue.announce_wait and wait_s is not None:
        said = True
        minutes = math.ceil(wait_s / 60.0)
        if minutes <= 1 and wait_s < 60.0:
            items.append(Sound("queue-wait-short"))
        elif minutes <= MAX_SPOKEN:
            spoken = say_count(minutes, "queue-minute", "queue-minutes", language)
            items.extend((Sound("queue-wait"), *spoken))
    if said:
        items.append(Sound("queue-thanks"))
    return tuple(items)


class QueueWait:
    """A caller waiting in a queue (the ``Member`` of its ``Ticket``; see the module docstring)."""

    def __init__(self, flow: FlowController, queues: QueueService, action: Enqueue) -> None:
        self.flow = flow
        self.queues = queues
        self.queue = action.queue
        self.ringing = False
        self.branches: dict[str, str] = {}  # branch URI -> agent extension, of the offer ringing
        self.exit: QueueExit | None = None  # decided: the outcome to resume the run with
        self.media_busy = False
        self.connected = False  # bridged to an agent: only the caller's hang-up is still ours (wrap-up)
        self.ticket: Ticket | None = None
        self.next_announcement = 0.0  # when the periodic announcement is due (monotonic)
        self.welcomed = False  # the welcome clip (if any) and the first announcement are over
        flow.queued = self
        info = flow.call.info if flow.call is not None else None
        joined = queues.join(self.queue, self, "" if info is None else info.caller,
                             "" if info is None else info.caller_name)
        if not isinstance(joined, Ticket):
            now = self._now()
            self._visit(now, now, joined)
            flow.queued = None
            flow._step(QueueResult(joined))
            return
        self.ticket = joined
        if self.exit is not None or self.flow.queued is not self:
            return  # answered or left while joining
        self.next_announcement = joined.joined_at + self.queue.announce_every_s
        if self.queue.welcome_clip is not None:
            self._run(Play((File(self.queue.welcome_clip),), barge_in=True))
        else:
            self._welcomed()

    # -- Member ----------------------------------------------------------------------------------------
    def offer(self, agents: tuple[str, ...], ring_s: float) -> bool:
        flow = self.flow
        call = flow.call
        assert call is not None
        prefix = flow.run.caller_name_prefix if flow.run is not None else ""
        found: Destination | None = None
        branches = []
        self.branches = {}
        for ext in agents:
            dest = flow.services.destination(call, flow.config, (RingTarget("line", ext),), ring_s, prefix)
            if dest is None:
                continue
            found = found or dest
            for branch in dest.branches:
                self.branches[branch.uri] = ext
                branches.append(branch)
        if found is None:
            return False
        self.ringing = True
        manager = flow.services.manager
        manager.ring(call, replace(found, branches=tuple(branches), ring_timeout=ring_s), manager.clock.now())
        flow.services.flush()
        return True

    def stop_offer(self) -> None:
        self.ringing = False
        call = self.flow.call
        assert call is not None
        manager = self.flow.services.manager
        manager.stop_ring(call, manager.clock.now())

    def left(self, how: QueueExit) -> None:
        if self.ticket is not None:
            self._visit(self.ticket.joined_at, self._now(), how)
        self._decide(how)

    # -- the call ----------------------------------------------------------------------------------------
    def offer_over(self, agent: str | None) -> None:
        self.ringing = False
        if self.ticket is not None:
            self.queues.offer_ended(self.ticket, agent)

    def answered(self, call: Call) -> None:
        """An agent answered: the call layer has bridged the caller to the agent's leg."""
        leg = next((leg for leg in call.legs if leg.state is LegState.ANSWERED), None)
        agent = None if leg is None else self.branches.get(leg.branch.uri)
        self.offer_over(agent)
        if self.ticket is not None:
            self._visit(self.ticket.joined_at, self._now(), "answered", agent)
        self.flow._steps.append(f"queue:{self.queue.name}:agent {agent}")
        self.connected = True
        media = self.flow.media
        if media is not None:
            media.hold = None
        self.flow._close_media()
        self.flow._step(QueueResult("answered"))

    def caller_gone(self) -> None:
        """The call is over: an agent it was bridged to goes into wrap-up; a waiting caller abandoned."""
        ticket = self.ticket
        if ticket is not None:
            if not self.connected and not ticket.gone:
                self._visit(ticket.joined_at, self._now(), "abandoned")
            self.queues.hung_up(ticket)

    def _now(self) -> float:
        return self.flow.services.manager.clock.now()

    def _visit(self, joined: float, left: float, outcome: QueueOutcome, agent: str | None = None) -> None:
        """Record the caller's time in the queue on its call, for the CDR (the queue reports read it)."""
        call = self.flow.call
        if call is not None:
            call.queue_visits.append(QueueVisit(self.queue.name, joined, left, outcome, agent))

    # -- media -------------------------------------------------------------------------------------------
    def _welcomed(self) -> None:
        """The welcome clip is over: the first announcement (place and wait only), then the hold music."""
        self.welcomed = True
        if not self._announce(periodic=False):
            self._hold()

    def _announce(self, periodic: bool) -> bool:
        """Play the queue's announcement now (False: it has nothing to say, nothing was started)."""
        media = self.flow.media
        ticket = self.ticket
        if media is None or ticket is None or not self.queue.announces:
            return False
        items = announcement(self.queue, self.queues.position(ticket), self.queues.estimated_wait(ticket),
                             media.language, periodic)
        if not items:
            return False
        self._run(Play(items, barge_in=True))
        return True

    def _hold(self) -> None:
        media = self.flow.media
        if media is None:
            return
        media.hold = self.flow.services.hold_stream(self.queue.hold_clip)
        wait_s = 3600.0
        if self.queue.announces:
            wait_s = max(0.5, self.next_announcement - self._now())
        self._run(Collect(max_digits=1, first_timeout_s=wait_s, inter_digit_timeout_s=wait_s))

    def _run(self, action: MediaRequest) -> None:
        media = self.flow.media
        assert media is not None
        self.media_busy = True
        self.flow.services.run_media(media, action, self._media_done)

    def _media_done(self, result: MediaResult) -> None:
        self.media_busy = False
        if self.flow.queued is not self or self.connected:
            return
        if self.flow.hung_up:
            self.flow.queued = None
            self.flow._step(HungUp())
            return
        if self.exit is not None:
            self._resume()
            return
        if isinstance(result, Collected) and result.digits and result.digits == self.queue.exit_key:
            if self.ticket is not None:
                self.queues.leave(self.ticket, "key")
            return
        if not self.welcomed:
            self._welcomed()
            return
        now = self._now()
        if isinstance(result, Collected) and self.queue.announces and now >= self.next_announcement - 0.25:
            self.next_announcement = now + self.queue.announce_every_s
            if self._announce(periodic=True):
                return
        self._hold()

    def _decide(self, how: QueueExit) -> None:
        self.exit = how
        media = self.flow.media
        if media is not None:
            media.hold = None
            if self.media_busy:
                media.interrupt()  # its outcome resumes the run
                return
        self._resume()

    def _resume(self) -> None:
        assert self.exit is not None
        self.flow.queued = None
        self.flow._step(QueueResult(self.exit))
