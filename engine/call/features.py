"""Phone features by star code (issues 19 and 12): DND, call forwarding, queue agents' login and pause.

A line that dials one of the company's star codes (``engine.dialplan.starcodes``; routing gives a
``FeatureCall``) is answered by the engine, the change is made, and a prompt in the plans' language says
what happened; then the engine hangs up. ``FeatureFlow`` is that call's flow (the ``FlowController``
runs it like the voicemail menu): ``Answer``, then the ``ApplyFeature`` effect, which the engine's
``FeatureService`` carries out and answers with ``FeatureApplied`` (the prompts to play), then ``Play``
and ``Hangup``.

What each code does (``FeatureService.decide``):

- DND on/off and forward always/busy/no answer on (followed by the target) and off change the line's
  options in the store (``engine.store.features``): the configuration version moves and the engine
  reloads, as after an API change, so phone and API share one state and it survives a restart. A forward
  target is a line or a number the line may dial itself (``engine.dialplan.linefeatures``); anything else
  is refused ("not allowed", "not a valid number"); a forward code without a number asks for one.
- queue login/logout followed by a queue's extension acts on that queue (refused when there is no such
  queue, or the line is none of its agents); without, on every queue the line is an agent of (refused
  when there is none); pause toggles the agent's pause in every queue it is logged in to (refused when it
  is logged in nowhere): paused everywhere if it was working anywhere, else back to work everywhere. The
  queues' live state changes at once (``QueueService.set_presence``) and is written to the store before
  the confirmation plays.

A change that cannot be written is logged and the caller hears that it did not work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from engine.call.config import EngineConfig
from engine.call.queue import QueueService
from engine.call.routing import FeatureCall
from engine.clock import Clock
from engine.dialplan.linefeatures import forward_target
from engine.dialplan.plan import Queue
from engine.dialplan.starcodes import Feature, StarCode
from engine.model.features import with_forward
from engine.script import Answer, Answered, Hangup, Play, Sound
from engine.store import Store
from engine.store.features import AgentRecord, change_line_options, save_queue_agents

logger = logging.getLogger(__name__)

_FORWARDS: Final = {
    Feature.FORWARD_ALWAYS_ON: ("always", True), Feature.FORWARD_ALWAYS_OFF: ("always", False),
    Feature.FORWARD_BUSY_ON: ("busy", True), Feature.FORWARD_BUSY_OFF: ("busy", False),
    Feature.FORWARD_NO_ANSWER_ON: ("no_answer", True), Feature.FORWARD_NO_ANSWER_OFF: ("no_answer", False),
}
"""Forward codes: (kind, on)."""
_FORWARD_PROMPT: Final = {"always": "star-forward-always", "busy": "star-forward-busy",
                          "no_answer": "star-forward-no-answer"}
FAILED: Final = "star-failed"
"""The prompt of a change that could not be written."""

OptionsChange = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ApplyFeature:
    """The effect of a star code call: carry out ``star`` for line ``extension``."""

    star: StarCode
    extension: str


@dataclass(frozen=True, slots=True)
class FeatureApplied:
    """The effect's outcome: the prompts that say what happened."""

    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a star code does: the prompts, a change of the line's options, agent states to set."""

    prompts: tuple[str, ...]
    options: OptionsChange | None = None
    agents: tuple[AgentRecord, ...] = field(default=())


class FeatureFlow:
    """The flow of a star code call (see the module docstring)."""

    def __init__(self, routed: FeatureCall) -> None:
        self.effect = ApplyFeature(routed.star, routed.extension)
        self.prompts: tuple[str, ...] = ()

    def start(self) -> Answer:
        return Answer()

    def resume(self, outcome: object) -> ApplyFeature | Play | Hangup:
        if isinstance(outcome, Answered):
            return self.effect
        if isinstance(outcome, FeatureApplied):
            self.prompts = outcome.prompts
            return Play(tuple(Sound(key) for key in outcome.prompts), barge_in=False)
        return Hangup()


class FeatureService:
    """Carries out star codes for the engine (see the module docstring).

    Args:
        loop: the event loop (store writes run in its executor).
        queues: the engine's call queues.
        store: where the changes are kept (None: in memory only, for tests of the call flow).
        clock: the wall time of audit entries.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, queues: QueueService, store: Store | None,
                 clock: Clock) -> None:
        self.loop = loop
        self.queues = queues
        self.store = store
        self.clock = clock

    def restore(self, records: list[AgentRecord]) -> None:
        """Agents' login and pause as stored (at start-up)."""
        for r in records:
            self.queues.presence[(r.queue, r.extension)] = (r.logged_in, r.paused)

    def apply(self, effect: ApplyFeature, config: EngineConfig,
              done: Callable[[FeatureApplied], None]) -> None:
        """Carry out ``effect`` under ``config``; ``done`` gets the prompts once the change is kept."""
        decision = self.decide(effect, config)
        plan = config.plan
        for r in decision.agents:
            queue = plan.queues.get(r.queue) if plan is not None else None
            if queue is not None:
                self.queues.set_presence(queue, r.extension, r.logged_in, r.paused)
        store = self.store
        if store is None or (decision.options is None and not decision.agents):
            done(FeatureApplied(decision.prompts))
            return
        wall = self.clock.wall()

        def write() -> None:
            if decision.options is not None:
                change_line_options(store, effect.extension, decision.options, wall)
            if decision.agents:
                save_queue_agents(store, list(decision.agents))

        def written(f: asyncio.Future[None]) -> None:
            try:
                f.result()
            except Exception:
                logger.exception("star code %s of line %s: the change was not stored", effect.star.code,
                                 effect.extension)
                done(FeatureApplied((FAILED,)))
                return
            done(FeatureApplied(decision.prompts))

        self.loop.run_in_executor(None, write).add_done_callback(written)

    def decide(self, effect: ApplyFeature, config: EngineConfig) -> Decision:
        """What ``effect`` does for its line under ``config`` (no change made here)."""
        star, ext = effect.star, effect.extension
        feature = star.feature
        if feature is Feature.DND_ON or feature is Feature.DND_OFF:
            on = feature is Feature.DND_ON
            return Decision((f"star-dnd-{'on' if on else 'off'}",), lambda o: _with_dnd(o, on))
        forward = _FORWARDS.get(feature)
        if forward is not None:
            return self._forward(ext, forward[0], forward[1], star.argument, config)
        if feature is Feature.QUEUE_PAUSE:
            return self._pause(ext, config)
        if feature is Feature.QUEUE_LOGIN or feature is Feature.QUEUE_LOGOUT:
            return self._login(ext, feature is Feature.QUEUE_LOGIN, star.argument, config)
        return Decision(("feature-unavailable",))  # the voicemail codes never come here (routing)

    def _forward(self, ext: str, kind: str, on: bool, digits: str, config: EngineConfig) -> Decision:
        prompt = _FORWARD_PROMPT[kind]
        if not on:
            return Decision((f"{prompt}-off",), lambda o: with_forward(o, kind, None))
        if not digits:
            return Decision(("star-need-number",))
        lines = config.routing.lines
        target = forward_target(digits, lines[ext], lines, config.routing.company)
        if target == "invalid":
            return Decision(("star-invalid-number",))
        if target == "not_allowed":
            return Decision(("star-not-allowed",))
        return Decision((f"{prompt}-on",), lambda o: with_forward(o, kind, target))

    def _login(self, ext: str, login: bool, digits: str, config: EngineConfig) -> Decision:
        queues = _queues_of(ext, config)
        if digits:
            plan = config.plan
            entry = plan.route(digits) if plan is not None else None
            if entry is None or entry.kind != "queue" or plan is None:
                return Decision(("star-unknown-queue",))
            queues = [q for q in queues if q.name == entry.name]
            if not queues:
                return Decision(("star-not-an-agent",))
        elif not queues:
            return Decision(("star-no-queues",))
        agents = tuple(AgentRecord(q.name, ext, login, False) for q in queues)  # a login starts unpaused
        return Decision((f"star-agent-logged-{'in' if login else 'out'}",), agents=agents)

    def _pause(self, ext: str, config: EngineConfig) -> Decision:
        queues = [q for q in _queues_of(ext, config) if self.queues.logged_in(q, ext)]
        if not queues:
            return Decision(("star-not-logged-in",))
        pause = any(not self.queues.paused(q, ext) for q in queues)
        agents = tuple(AgentRecord(q.name, ext, True, pause) for q in queues)
        return Decision((f"star-agent-{'paused' if pause else 'unpaused'}",), agents=agents)


def _queues_of(ext: str, config: EngineConfig) -> list[Queue]:
    """The queues line ``ext`` is a possible agent of, by name."""
    plan = config.plan
    if plan is None:
        return []
    return [q for _, q in sorted(plan.queues.items()) if ext in q.agents]


def _with_dnd(options: dict[str, Any], on: bool) -> dict[str, Any]:
    out = dict(options)
    if on:
        out["do_not_disturb"] = True
    else:
        out.pop("do_not_disturb", None)
    return out
