"""Builders for dial-plan tests: a small company, its inputs, and a driver that feeds outcomes to a run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from engine.dialplan.compiler import CompileResult, ConfigInputs, compile_config
from engine.dialplan.evaluate import Action, CallFacts, Outcome, PlanRun, RingState
from engine.dialplan.plan import CompiledConfig
from engine.model.entities import Company, DialPlan, Line, PhoneNumber, User

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
# Wednesday 2026-03-11 10:00 in Berlin: a working day, open hours.
OPEN_TIME = datetime(2026, 3, 11, 10, 0, tzinfo=BERLIN)
CLOSED_TIME = datetime(2026, 3, 11, 20, 0, tzinfo=BERLIN)

COMPANY = Company(name="Beispiel GmbH", timezone="Europe/Berlin", country="DE")
USERS = (
    User(1, "Anna", "Schmidt"),
    User(2, "Jonas", "Becker"),
    User(3, "Leonie", "Wagner"),
    User(4, "Mehmet", "Y\u0131lmaz"),
    User(5, "Sophie", "Müller"),
    User(6, "Sven", "Schneider"),
)
LINES = tuple(
    Line(i, u.id, str(200 + i), u.display_name, None, "x", "y") for i, u in enumerate(USERS, start=1)
)
"""Extensions 201-206; Schmidt and Schneider share the keypad key 724."""

BASE_OBJECTS: dict[str, list[dict[str, Any]]] = {
    "sound_clips": [
        {"name": "main-menu", "file": "/data/clips/main-menu.wav"},
        {"name": "closed", "file": "/data/clips/closed.wav"},
    ],
    "schedules": [
        {
            "name": "office",
            "open": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00"}],
        }
    ],
    "ring_groups": [
        {
            "name": "sales",
            "extension": "300",
            "strategy": "ring_all",
            "members": [{"line": "202"}, {"line": "203"}],
        },
        {
            "name": "support",
            "strategy": "round_robin",
            "members": [{"line": "204"}, {"line": "205"}, {"number": "+4915112345678"}],
            "member_ring_seconds": 15,
            "ring_seconds": 60,
        },
    ],
    "mailboxes": [{"name": "office", "number": "800"}],
    "queues": [{"name": "hotline", "extension": "400"}],
    "conference_rooms": [{"name": "board", "extension": "401"}],
    "fax_lines": [{"name": "fax", "extension": "402"}],
}


def main_graph() -> dict[str, Any]:
    """The example company's main plan."""
    return {
        "start": "office_hours",
        "extension": "500",
        "nodes": {
            "office_hours": {
                "type": "schedule",
                "schedule": "office",
                "next": {"open": "menu", "closed": "closed"},
            },
            "menu": {
                "type": "auto_attendant",
                "clip": "main-menu",
                "options": {"1": "sales", "2": "support", "0": "operator"},
                "allow_extension_dialling": True,
                "next": {"timeout": "operator", "invalid": "operator"},
            },
            "sales": {"type": "ring_group", "ring_group": "sales", "next": {"no_answer": "mailbox"}},
            "support": {"type": "ring_group", "ring_group": "support", "next": {"no_answer": "mailbox"}},
            "operator": {"type": "line_voicemail", "line": "201"},
            "closed": {"type": "play_clip", "clip": "closed", "next": {"next": "mailbox"}},
            "mailbox": {"type": "voicemail", "mailbox": "office"},
        },
    }


def inputs(
    plans: Mapping[str, Mapping[str, Any]] | None = None,
    objects: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    numbers: Sequence[PhoneNumber] = (PhoneNumber("+493023125100", "dial_plan", "main"),),
    *,
    company: Company = COMPANY,
    lines: Sequence[Line] = LINES,
) -> ConfigInputs:
    plans = {"main": main_graph()} if plans is None else plans
    return ConfigInputs(
        company=company,
        users=USERS,
        lines=lines,
        numbers=numbers,
        dial_plans=tuple(
            DialPlan(i, name, graph)  # type: ignore[arg-type]  # graphs may be junk on purpose
            for i, (name, graph) in enumerate(plans.items())
        ),
        objects=BASE_OBJECTS if objects is None else objects,
    )


def compile_ok(*args: Any, **kwargs: Any) -> CompiledConfig:
    result = compile_config(inputs(*args, **kwargs))
    assert result.errors == (), [str(e) for e in result.errors]
    assert result.config is not None
    return result.config


def compile_errors(*args: Any, **kwargs: Any) -> CompileResult:
    result = compile_config(inputs(*args, **kwargs))
    assert result.config is None
    assert result.errors
    return result


def paths(result: CompileResult) -> list[str]:
    return [e.path for e in result.errors]


def start_run(
    config: CompiledConfig,
    called: str,
    now: datetime = OPEN_TIME,
    ring_state: RingState | None = None,
    caller: str = "+4917600000001",
) -> tuple[PlanRun, Action]:
    entry = config.route(called)
    assert entry is not None, called
    run = PlanRun(config, entry, CallFacts(caller, None, called), ring_state or RingState())
    return run, run.start(now)


def drive(
    run: PlanRun, first: Action, outcomes: Iterable[Outcome], now: datetime = OPEN_TIME
) -> list[Action]:
    """Feed ``outcomes`` one by one; returns every action (the first included)."""
    actions = [first]
    for outcome in outcomes:
        actions.append(run.resume(outcome, now))
    return actions
