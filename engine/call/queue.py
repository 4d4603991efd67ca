"""Call queues (ACD): who waits, which agent is offered the next call, and every agent's state.

A caller routed to a queue (``engine.dialplan.evaluate.Enqueue``) joins it as a ``Ticket``; its flow
controller (``engine.call.flows``) answers it, plays the welcome clip and the queue's shared hold stream,
and listens for the exit key. The ``QueueService`` hands calls out first come, first served: the first
waiting caller without an offer is offered to the agents the queue's strategy picks among the free ones
(ring all: every free agent at once; round robin: the next after the one offered last, with memory across
calls; least recent: the one whose last queue call ended longest ago; fewest calls: the one who answered
fewest; linear: the first in the list; random). An offer rings for the queue's agent ring time; an agent
who does not answer is not offered that caller again until every free agent was tried. When an agent
answers, the caller's leg is bridged to the agent's (the call layer does it: ``CallManager.ring`` on a
call the engine serves re-INVITEs the caller onto the relay and ``Bridging.bridge`` joins the legs). When
that call ends the agent is in wrap-up for the queue's wrap-up time, then free again. A caller leaves
without an agent on the maximum wait, the exit key, a full queue, or no free agent when the queue does
not let callers join then; one who hangs up while waiting is counted abandoned.

Agents are lines; one line in two queues is one agent with one state. Apart from that state, each agent
is logged in or out of each of its queues and paused or not there (``presence``, changed by the star codes
of ``engine.call.features`` and kept at rest by them): only logged-in agents who are not paused are
offered calls. An agent the queue lists as ``dynamic`` is logged out until it logs in; the others are
logged in until they log out. The agent state
machine is a table (``TRANSITIONS``): a pair that is not in it raises ``QueueError`` (our own misuse).
Agents on a call that is not a queue call are skipped when the queue says so (``busy``, the call layer's
view of the line). Everything runs on the event loop; timers go through the injected scheduler.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from engine.call.legs import CallState, Scheduler, TimerHandle
from engine.clock import Clock
from engine.dialplan.evaluate import QueueExit
from engine.dialplan.plan import Queue

if TYPE_CHECKING:
    from engine.call.b2bua import CallManager

logger = logging.getLogger(__name__)

BUSY_RETRY_S: Final = 2.0
"""How soon a waiting caller is offered again when the only agents who could take it are on other calls."""
WAIT_WEIGHT: Final = 0.25
"""The weight of the latest answered caller's wait in a queue's running average (Asterisk's holdtime:
three parts the old average, one part the new wait), the base of the estimated wait callers hear."""


class QueueError(Exception):
    """An agent event its state does not allow: our own misuse (a bug), never a caller's doing."""


class AgentState(enum.Enum):
    AVAILABLE = "available"
    RINGING = "ringing"  # offered a queue call
    ON_CALL = "on_call"  # talking to a queue caller
    WRAP_UP = "wrap_up"  # after a queue call, for the queue's wrap-up time


class AgentEvent(enum.Enum):
    OFFER = "offer"  # a queue call rings the agent
    NO_ANSWER = "no_answer"  # the offer ended unanswered (ring time over, refused, the caller left)
    ANSWER = "answer"  # the agent answered: bridged to the caller
    HANG_UP = "hang_up"  # the queue call ended
    WRAP_DONE = "wrap_done"  # the wrap-up time is over


TRANSITIONS: Final[dict[tuple[AgentState, AgentEvent], AgentState]] = {
    (AgentState.AVAILABLE, AgentEvent.OFFER): AgentState.RINGING,
    (AgentState.RINGING, AgentEvent.NO_ANSWER): AgentState.AVAILABLE,
    (AgentState.RINGING, AgentEvent.ANSWER): AgentState.ON_CALL,
    (AgentState.ON_CALL, AgentEvent.HANG_UP): AgentState.WRAP_UP,
    (AgentState.WRAP_UP, AgentEvent.WRAP_DONE): AgentState.AVAILABLE,
}
"""The agent state machine: (state, event) -> next state; any other pair is refused."""


def agent_step(state: AgentState, event: AgentEvent) -> AgentState:
    """The state after ``event``.

    Raises:
        QueueError: the table has no move for (``state``, ``event``).
    """
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise QueueError(f"agent event {event.value} in state {state.value}") from None


@dataclass(eq=False, slots=True)
class Agent:
    """One line as a queue agent: its state, the queue calls it answered and when the last one ended."""

    extension: str
    state: AgentState = AgentState.AVAILABLE
    calls: int = 0
    last_call_ended: float = float("-inf")
    wrap_timer: TimerHandle | None = None

    def move(self, event: AgentEvent) -> None:
        before = self.state
        self.state = agent_step(before, event)
        logger.debug("agent %s: %s -> %s", self.extension, before.value, self.state.value)


class Member(Protocol):
    """What a waiting caller's flow does for the queue (``engine.call.flows.FlowController``)."""

    def offer(self, agents: tuple[str, ...], ring_s: float) -> bool:
        """Ring ``agents`` (in parallel) for ``ring_s``; False when none of them can be rung (no phone)."""

    def stop_offer(self) -> None:
        """Give the ringing offer up (the caller leaves): CANCEL the agents' legs."""

    def left(self, how: QueueExit) -> None:
        """The caller leaves the queue without an agent (``timeout``, ``key``...): take the exit."""


@dataclass(eq=False, slots=True)
class Ticket:
    """A caller in a queue: waiting (``offered``: the agents ringing for it now), then connected."""

    queue: Queue
    member: Member
    joined_at: float
    caller: str = ""  # who waits (number or extension, and name), for the live view
    caller_name: str = ""
    offered: tuple[str, ...] = ()
    tried: set[str] = field(default_factory=set)
    connected: str | None = None
    gone: bool = False
    timer: TimerHandle | None = None  # the maximum wait
    retry: TimerHandle | None = None  # no agent could be rung: try again


@dataclass(frozen=True, slots=True)
class WaitingInfo:
    """A waiting caller as the live view shows it: its place, who it is, since when, who rings for it."""

    position: int
    caller: str
    caller_name: str
    joined_at: float
    ringing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An agent as the live view shows it: ``state`` is ``logged_out``, ``paused`` or the agent state
    (``available``, ``ringing``, ``on_call``, ``wrap_up``); ``calls``: queue calls answered since start."""

    line: str
    state: str
    logged_in: bool
    paused: bool
    calls: int


@dataclass(slots=True)
class QueueStats:
    """Counts since the engine started (statistics over the CDRs are for later)."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    exited: int = 0


class QueueService:
    """Every queue's waiting callers and every agent's state (see the module docstring).

    Args:
        scheduler: timers (max wait, wrap-up), like the call manager's.
        clock: monotonic time.
        busy: whether a line is on a call that is not a queue call (skipped when the queue says so).
        rng: the random strategy's choice (seed it in tests).
    """

    def __init__(self, scheduler: Scheduler, clock: Clock, busy: Callable[[str], bool] = lambda ext: False,
                 rng: random.Random | None = None, flush: Callable[[], None] = lambda: None,
                 away: Callable[[str], bool] = lambda ext: False) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.flush = flush
        self.busy = busy
        #: an agent line in do-not-disturb: never offered a call (whatever ``skip_busy`` says)
        self.away = away
        self.rng = rng if rng is not None else random.Random()
        self.agents: dict[str, Agent] = {}
        self.waiting: dict[str, deque[Ticket]] = {}
        self.stats: dict[str, QueueStats] = {}
        self._last_offered: dict[str, str] = {}  # round robin's memory, by queue name
        #: (queue name, extension) -> (logged in, paused), for agents who changed it from their phone
        self.presence: dict[tuple[str, str], tuple[bool, bool]] = {}
        self._queues: dict[str, Queue] = {}  # the latest snapshot of each queue seen
        self._avg_wait: dict[str, float] = {}  # by queue name: how long answered callers waited (WAIT_WEIGHT)

    # -- callers -------------------------------------------------------------------------------------

    def join(self, queue: Queue, member: Member, caller: str = "",
             caller_name: str = "") -> Ticket | QueueExit:
        """A caller joins ``queue``: its ticket, or why it may not (``full``, ``no_agents``); ``caller``
        and ``caller_name`` are for the live view."""
        self._queues[queue.name] = queue
        stats = self.stats.setdefault(queue.name, QueueStats())
        waiting = self.waiting.setdefault(queue.name, deque())
        if queue.max_callers and len(waiting) >= queue.max_callers:
            stats.exited += 1
            return "full"
        if not queue.join_empty and not self._free(queue, set()):
            stats.exited += 1
            return "no_agents"
        now = self.clock.now()
        ticket = Ticket(queue, member, now, caller, caller_name)
        waiting.append(ticket)
        if queue.max_wait_s is not None:
            ticket.timer = self._at(now + queue.max_wait_s, lambda: self._leave(ticket, "timeout"))
        self.dispatch()
        return ticket

    def leave(self, ticket: Ticket, how: QueueExit) -> None:
        """The caller leaves while waiting (``key``: the exit key): the offer is given up, the exit taken."""
        self._leave(ticket, how)

    def offer_ended(self, ticket: Ticket, answered_by: str | None) -> None:
        """The ring round of ``ticket``'s offer ended: answered by ``answered_by``, or nobody."""
        offered, ticket.offered = ticket.offered, ()
        for ext in offered:
            agent = self._agent(ext)
            if ext == answered_by and not ticket.gone:
                agent.move(AgentEvent.ANSWER)
                agent.calls += 1
            elif agent.state is AgentState.RINGING:
                agent.move(AgentEvent.NO_ANSWER)
            ticket.tried.add(ext)
        if answered_by is not None and not ticket.gone:
            ticket.connected = answered_by
            self._remove(ticket)
            name = ticket.queue.name
            self.stats[name].answered += 1
            waited = self.clock.now() - ticket.joined_at
            old = self._avg_wait.get(name)
            self._avg_wait[name] = waited if old is None else old + WAIT_WEIGHT * (waited - old)
        self.dispatch()

    def hung_up(self, ticket: Ticket) -> None:
        """The caller's call is over: an agent it talked to goes into wrap-up; a waiting caller abandoned."""
        if ticket.connected is not None:
            agent = self._agent(ticket.connected)
            ticket.connected = None
            if agent.state is AgentState.ON_CALL:
                agent.move(AgentEvent.HANG_UP)
                agent.last_call_ended = self.clock.now()
                wrap = ticket.queue.wrap_up_s
                if wrap > 0:
                    agent.wrap_timer = self._at(self.clock.now() + wrap, lambda: self._wrapped(agent))
                else:
                    self._wrapped(agent)
            return
        if not ticket.gone:
            self.stats[ticket.queue.name].abandoned += 1
            self._leave(ticket, None)

    def logged_in(self, queue: Queue, ext: str) -> bool:
        """Whether agent ``ext`` is logged in to ``queue`` (see the module docstring)."""
        return self._presence(queue.name, ext, ext in queue.dynamic)[0]

    def paused(self, queue: Queue, ext: str) -> bool:
        return self._presence(queue.name, ext, ext in queue.dynamic)[1]

    def _presence(self, name: str, ext: str, dynamic: bool) -> tuple[bool, bool]:
        """(logged in, paused) of agent ``ext`` in queue ``name``: as set from its phone, else the
        queue's rule (a dynamic agent is logged out until it logs in), never paused."""
        return self.presence.get((name, ext), (not dynamic, False))

    def set_presence(self, queue: Queue, ext: str, logged_in: bool, paused: bool) -> None:
        """Log agent ``ext`` in or out of ``queue`` and pause or unpause it there; a waiting caller may
        now be offered to it."""
        self.presence[(queue.name, ext)] = (logged_in, paused)
        logger.info("agent %s in queue %s: %s%s", ext, queue.name, "logged in" if logged_in else "logged out",
                    ", paused" if paused else "")
        self._queues.setdefault(queue.name, queue)
        self.dispatch()

    def waiting_callers(self, name: str) -> int:
        return len(self.waiting.get(name, ()))

    def waiting_info(self, name: str) -> list[WaitingInfo]:
        """The callers waiting in queue ``name`` now, first to be served first."""
        return [WaitingInfo(place, t.caller, t.caller_name, t.joined_at, t.offered)
                for place, t in enumerate(self.waiting.get(name, ()), 1)]

    def agent_info(self, name: str, agents: list[tuple[str, bool]]) -> list[AgentInfo]:
        """``agents`` (extension, dynamic) of queue ``name`` as they are now (the caller passes the queue's
        agents from the configuration: a queue no caller has reached yet is not known here)."""
        out = []
        for ext, dynamic in agents:
            logged_in, paused = self._presence(name, ext, dynamic)
            agent = self.agents.get(ext)
            state = AgentState.AVAILABLE if agent is None else agent.state
            shown = state.value
            if state is AgentState.AVAILABLE:
                shown = "logged_out" if not logged_in else "paused" if paused else shown
            out.append(AgentInfo(ext, shown, logged_in, paused, 0 if agent is None else agent.calls))
        return out

    def position(self, ticket: Ticket) -> int:
        """``ticket``'s place in its queue's line, 1 for the next caller to be served (0: not waiting)."""
        for place, other in enumerate(self.waiting.get(ticket.queue.name, ()), 1):
            if other is ticket:
                return place
        return 0

    def estimated_wait(self, ticket: Ticket) -> float | None:
        """How much longer ``ticket`` may expect to wait, in seconds: the queue's running average wait of
        answered callers less what this caller has waited, never below 0 (as Asterisk's announce-holdtime
        does); None before the queue answered a caller (nothing to estimate from)."""
        average = self._avg_wait.get(ticket.queue.name)
        if average is None:
            return None
        return max(0.0, average - (self.clock.now() - ticket.joined_at))

    # -- handing calls out -----------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Offer waiting callers, first come first served, to the agents their queue's strategy picks."""
        for waiting in list(self.waiting.values()):
            for ticket in list(waiting):
                if ticket.gone or ticket.connected is not None:
                    continue
                if ticket.offered:
                    if ticket.queue.strategy == "ring_all":
                        break  # the first caller rings everyone free; the next ones wait behind it
                    continue
                if not self._offer(ticket):
                    break  # nobody free for this caller: nobody for those behind it either

    def _offer(self, ticket: Ticket) -> bool:
        """Ring the next agents for ``ticket``; False when none can be rung now. Agents whose phones
        cannot be rung (not registered) count as tried; when every free agent failed so, the caller
        waits and the queue tries again after the agent ring time (a phone may register meanwhile)."""
        queue = ticket.queue
        started_over = False
        while True:
            free = self._free(queue, ticket.tried)
            if not free and ticket.tried and not started_over:
                ticket.tried.clear()  # every free agent was tried once: start over
                started_over = True
                free = self._free(queue, ticket.tried)
            if not free:
                if ticket.retry is None and (started_over or self._busy_elsewhere(queue)):
                    # An agent on another call frees up without telling the queue: look again soon.
                    wait = queue.agent_ring_s if started_over else BUSY_RETRY_S
                    ticket.retry = self._at(self.clock.now() + wait, lambda: self._retry(ticket))
                return False
            agents = self._pick(ticket, free)
            for ext in agents:
                self._agent(ext).move(AgentEvent.OFFER)
            ticket.offered = agents
            if queue.strategy == "round_robin":
                self._last_offered[queue.name] = agents[0]
            if ticket.member.offer(agents, queue.agent_ring_s):
                self.stats[queue.name].offered += 1
                return True
            ticket.offered = ()
            for ext in agents:  # no phone to ring: the next agent
                self._agent(ext).move(AgentEvent.NO_ANSWER)
                ticket.tried.add(ext)

    def _retry(self, ticket: Ticket) -> None:
        ticket.retry = None
        self.dispatch()

    def _pick(self, ticket: Ticket, free: list[str]) -> tuple[str, ...]:
        """The agents of ``free`` (the queue's order) the strategy offers ``ticket`` to."""
        queue = ticket.queue
        strategy = queue.strategy
        if strategy == "ring_all":
            return tuple(free)
        if strategy == "linear":
            return (free[0],)
        if strategy == "round_robin":
            last = self._last_offered.get(queue.name)
            order = list(queue.agents)
            start = order.index(last) + 1 if last in order else 0
            rotated = order[start:] + order[:start]
            return (next(ext for ext in rotated if ext in free),)
        if strategy == "least_recent":
            return (min(free, key=lambda ext: self._agent(ext).last_call_ended),)
        if strategy == "fewest_calls":
            return (min(free, key=lambda ext: self._agent(ext).calls),)
        return (self.rng.choice(free),)

    def _busy_elsewhere(self, queue: Queue) -> bool:
        """Whether an agent who could take a call now is only kept from it by a call that is not the
        queue's (skipped as busy): the call layer does not tell the queue when such a call ends."""
        return any(
            self._agent(ext).state is AgentState.AVAILABLE and self.logged_in(queue, ext)
            and not self.paused(queue, ext) and ((queue.skip_busy and self.busy(ext)) or self.away(ext))
            for ext in queue.agents)

    def _free(self, queue: Queue, tried: set[str]) -> list[str]:
        """The queue's agents who may be offered a call now, in the queue's order."""
        return [ext for ext in queue.agents
                if ext not in tried and self._agent(ext).state is AgentState.AVAILABLE
                and self.logged_in(queue, ext) and not self.paused(queue, ext)
                and not (queue.skip_busy and self.busy(ext)) and not self.away(ext)]

    # -- helpers ---------------------------------------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> TimerHandle:
        """A timer whose action runs outside any SIP event: what it queued is sent after it."""

        def run() -> None:
            try:
                action()
            except Exception:
                logger.exception("queue timer failed")
            self.flush()

        return self.scheduler.call_at(when, run)

    def _agent(self, ext: str) -> Agent:
        agent = self.agents.get(ext)
        if agent is None:
            agent = self.agents[ext] = Agent(ext)
        return agent

    def _wrapped(self, agent: Agent) -> None:
        agent.wrap_timer = None
        if agent.state is AgentState.WRAP_UP:
            agent.move(AgentEvent.WRAP_DONE)
        self.dispatch()

    def _remove(self, ticket: Ticket) -> None:
        for handle in (ticket.timer, ticket.retry):
            if handle is not None:
                handle.cancel()
        ticket.timer = ticket.retry = None
        waiting = self.waiting.get(ticket.queue.name)
        if waiting is not None and ticket in waiting:
            waiting.remove(ticket)

    def _leave(self, ticket: Ticket, how: QueueExit | None) -> None:
        """``ticket`` leaves without an agent (``how``: the exit it takes; None: it hung up)."""
        if ticket.gone or ticket.connected is not None:
            return
        ticket.gone = True
        self._remove(ticket)
        if ticket.offered:
            ticket.member.stop_offer()
            self.offer_ended(ticket, None)
        if how is not None:
            self.stats[ticket.queue.name].exited += 1
            ticket.member.left(how)
        self.dispatch()


def line_on_call(manager: CallManager, extension: str) -> bool:
    """Whether line ``extension`` takes part in a call that is not over: it called, or it was called and
    answered (its own extension dialled). Queue calls are known by the agents' states; this is for the
    others ("skip agents on a call"). A scan of the calls: cheap next to ringing a phone."""
    for call in manager.calls.values():
        if call.state is CallState.ENDED:
            continue
        info = call.info
        if info.caller == extension or (info.callee == extension and call.state is CallState.ANSWERED):
            return True
    return False
