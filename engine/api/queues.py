"""Call queues over the admin API (issue 12 part 5): the live view and the report.

``GET /api/queues/{name}/live`` shows the queue as the engine runs it: the callers waiting (place, who,
how long, which agents ring for them) and every agent's state (logged out, paused, available, ringing, on a
call, wrap-up). It is read on the engine's loop (``engine.api.live``); an app without the call engine
answers 503. ``GET /api/reports/queues`` gives each queue's figures for a period from the CDRs
(``engine.model.queue_report``: offered, answered, abandoned and after how long, exits, average and longest
wait, service level, and per agent the calls answered and their talk time), so they survive restarts.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from litestar import Request, get
from litestar.exceptions import ServiceUnavailableException
from litestar.params import FromPath

from engine.api.features import spec_agents
from engine.api.live import Live
from engine.api.routes import CONFIGURE, REPORTS, Admin, Auth, EpochSeconds, threaded
from engine.call.queue import AgentInfo, QueueService, WaitingInfo
from engine.dialplan.plan import DEFAULT_SERVICE_LEVEL_S
from engine.model.queue_report import QueueFigures, queue_figures


class LiveQueues(Live[QueueService]):
    """The engine's call queues and the loop they live on."""

    __slots__ = ()

MAX_REPORT_CALLS: Final = 100_000
"""The most queue calls one report reads (a period with more is cut to its newest calls)."""


class WaitingOut(msgspec.Struct):
    position: int
    caller: str
    caller_name: str
    waiting_seconds: float
    ringing: list[str]  # the agents ringing for this caller now


class AgentStateOut(msgspec.Struct):
    line: str
    state: str  # logged_out, paused, available, ringing, on_call, wrap_up
    logged_in: bool
    paused: bool
    calls: int  # queue calls answered since the engine started


class QueueLiveOut(msgspec.Struct):
    name: str
    waiting: list[WaitingOut]
    agents: list[AgentStateOut]


class AgentFiguresOut(msgspec.Struct):
    line: str
    calls: int
    talk_seconds: float


class QueueReportOut(msgspec.Struct):
    """A queue's figures for the period (waits in seconds; None where nothing was counted)."""

    queue: str
    offered: int
    answered: int
    abandoned: int
    exits: dict[str, int]  # timeout, key, full, no_agents
    average_wait_seconds: float | None
    longest_wait_seconds: float
    average_abandoned_after_seconds: float | None
    service_level_seconds: float
    service_level_percent: float | None
    agents: list[AgentFiguresOut]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _report_out(f: QueueFigures) -> QueueReportOut:
    return QueueReportOut(
        f.queue, f.offered, f.answered, f.abandoned, dict(sorted(f.exits.items())), _round(f.average_wait),
        round(f.longest_wait, 1), _round(f.average_abandoned_after), f.service_level_seconds,
        _round(f.service_level),
        [AgentFiguresOut(line, a.calls, round(a.talk_seconds, 1)) for line, a in sorted(f.agents.items())],
    )


def _service_level(spec: dict[str, Any]) -> float:
    value = spec.get("service_level_seconds", DEFAULT_SERVICE_LEVEL_S)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_SERVICE_LEVEL_S
    return float(value)


@get("/api/reports/queues", opt={"permission": REPORTS}, tags=["reports"])
@threaded
def queue_report(admin: Admin, principal: Auth, since: EpochSeconds = None,
                 until: EpochSeconds = None) -> list[QueueReportOut]:
    """Each call queue's figures for the calls that started in [since, until) (all time by default)."""
    levels = {o.name: _service_level(o.spec) for o in admin.objects("queues")}
    records = admin.cdrs(MAX_REPORT_CALLS, since=since, until=until, queued=True)
    figures = queue_figures(records, levels, DEFAULT_SERVICE_LEVEL_S)
    return [_report_out(f) for _, f in sorted(figures.items())]


def _waiting_out(w: WaitingInfo, now: float) -> WaitingOut:
    waited = round(max(0.0, now - w.joined_at), 1)
    return WaitingOut(w.position, w.caller, w.caller_name, waited, list(w.ringing))


def _agent_out(a: AgentInfo) -> AgentStateOut:
    return AgentStateOut(a.line, a.state, a.logged_in, a.paused, a.calls)


@get("/api/queues/{name:str}/live", opt={"permission": CONFIGURE}, tags=["routing"])
@threaded
def queue_live(request: Request[Any, Any, Any], admin: Admin, principal: Auth,
               name: FromPath[str]) -> QueueLiveOut:
    """Queue ``name`` as it runs: who waits (first to be served first) and each agent's state."""
    spec = admin.routing_object("queues", name).spec  # 404 when there is no such queue
    agents = spec_agents(spec)
    live: LiveQueues | None = request.app.state.get("queues")
    if live is None:
        raise ServiceUnavailableException("no call engine runs in this process: no live queues")

    def read(service: QueueService) -> QueueLiveOut:
        now = service.clock.now()
        return QueueLiveOut(name, [_waiting_out(w, now) for w in service.waiting_info(name)],
                            [_agent_out(a) for a in service.agent_info(name, agents)])

    return live.call(read)


QUEUE_ROUTES: Final = [queue_report, queue_live]
