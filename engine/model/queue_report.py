"""Call queue statistics over the CDRs (issue 12 part 5): what the queue report shows for a period.

Each CDR lists the queues its caller waited in (``CallRecord.queues``). Per queue the report counts the
callers *offered* (every visit, including those turned away at once because the queue was full or nobody
could take calls), *answered*, *abandoned* (hung up while waiting, and after how long on average) and those
who took the queue's exit (maximum wait, exit key, full, no agents); the average and longest wait of the
answered callers; and the **service level**: the share of the callers who waited (all but the turned-away)
that an agent answered within the queue's service-level time. That is the "answered within N s out of all
who called and waited" definition (Asterisk's second service-level figure counts abandoned calls the same
way; counting only answered calls would hide the callers who gave up). Per agent: the calls it answered and
their talk time (from the agent's answer to the end of the call).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.model.cdr import CallRecord

TURNED_AWAY = frozenset({"full", "no_agents"})
"""Outcomes of callers who never waited: the queue sent them to its exit as they came."""


@dataclass(slots=True)
class AgentFigures:
    calls: int = 0
    talk_seconds: float = 0.0


@dataclass(slots=True)
class QueueFigures:
    """One queue's figures for a period (see the module docstring); waits in seconds."""

    queue: str
    service_level_seconds: float
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    exits: dict[str, int] = field(default_factory=dict)  # timeout, key, full, no_agents -> count
    answered_within_level: int = 0
    wait_answered_total: float = 0.0
    longest_wait: float = 0.0
    abandoned_wait_total: float = 0.0
    agents: dict[str, AgentFigures] = field(default_factory=dict)

    @property
    def waited(self) -> int:
        """The callers who waited (answered, abandoned, or left by the maximum wait or the exit key)."""
        return self.offered - sum(n for how, n in self.exits.items() if how in TURNED_AWAY)

    @property
    def average_wait(self) -> float | None:
        return None if not self.answered else self.wait_answered_total / self.answered

    @property
    def average_abandoned_after(self) -> float | None:
        return None if not self.abandoned else self.abandoned_wait_total / self.abandoned

    @property
    def service_level(self) -> float | None:
        """Percent of the callers who waited that were answered within the service-level time (None: nobody
        waited)."""
        return None if not self.waited else 100.0 * self.answered_within_level / self.waited


def queue_figures(records: Iterable[CallRecord], service_levels: Mapping[str, float],
                  default_level_s: float) -> dict[str, QueueFigures]:
    """Every queue's figures from ``records``: the queues of ``service_levels`` (name -> seconds; shown
    even when idle) and any other queue the records name (a queue since deleted keeps its history; it
    gets ``default_level_s``)."""
    out = {name: QueueFigures(name, level) for name, level in service_levels.items()}
    for record in records:
        for visit in record.queues:
            figures = out.get(visit.queue)
            if figures is None:
                figures = out[visit.queue] = QueueFigures(visit.queue, default_level_s)
            figures.offered += 1
            waited = visit.waited
            if visit.outcome == "answered":
                figures.answered += 1
                figures.wait_answered_total += waited
                figures.longest_wait = max(figures.longest_wait, waited)
                if waited <= figures.service_level_seconds:
                    figures.answered_within_level += 1
                if visit.agent is not None:
                    agent = figures.agents.setdefault(visit.agent, AgentFigures())
                    agent.calls += 1
                    agent.talk_seconds += max(0.0, record.ended_at - visit.left_at)
            elif visit.outcome == "abandoned":
                figures.abandoned += 1
                figures.abandoned_wait_total += waited
            else:
                figures.exits[visit.outcome] = figures.exits.get(visit.outcome, 0) + 1
    return out
