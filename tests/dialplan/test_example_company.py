"""config/example-company.yaml compiles with the dial-plan compiler and its main plan behaves as the issue
asks: open hours -> menu (1 sales, 2 support, 0 operator, extension dialling); closed -> clip -> mailbox.

The company document parser (engine.model.document) is not involved: this reads the YAML directly, so the
plan is checked even before the store learns the routing-object keys."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from engine.dialplan.compiler import ConfigInputs, compile_config
from engine.dialplan.evaluate import (
    CallFacts,
    LeaveVoicemail,
    PlanRun,
    Ring,
    RingResult,
    RingState,
    RingTarget,
)
from engine.dialplan.plan import CompiledConfig
from engine.dialplan.schema import OBJECT_KINDS
from engine.model.entities import Company, DialPlan, Line, PhoneNumber, User
from engine.script import Answer, Answered, Collect, Collected, File, Play, Played

from .helpers import BERLIN

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example-company.yaml"
DID = "+493023125100"


def example_inputs() -> ConfigInputs:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    c = doc["company"]
    users, lines = [], []
    for i, u in enumerate(doc["users"], start=1):
        users.append(User(i, u["first_name"], u["last_name"]))
        lines.append(Line(i, i, u["extension"], u.get("line_name", ""), None, "x", "y"))
    numbers = [
        PhoneNumber(n["number"].replace(" ", ""), n["route"]["kind"], n["route"]["target"])
        for n in doc["numbers"]
    ]
    plans = [DialPlan(i, p["name"], p["graph"]) for i, p in enumerate(doc["dial_plans"])]
    objects = {kind: doc.get(kind, []) for kind in OBJECT_KINDS}
    return ConfigInputs(
        Company(c["name"], timezone=c["timezone"], country=c["country"]),
        users,
        lines,
        numbers,
        plans,
        objects,
    )


def compiled() -> CompiledConfig:
    result = compile_config(example_inputs())
    assert result.errors == (), [str(e) for e in result.errors]
    assert result.config is not None
    return result.config


def test_example_compiles_and_declares_every_object_kind() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert set(OBJECT_KINDS) <= set(doc)
    result = compile_config(example_inputs())
    assert result.ok
    # no option hides an extension: the menu waits after a 2, which begins the extensions 201-205
    assert [str(w) for w in result.warnings] == []
    config = compiled()
    entry = config.route(DID)
    assert entry is not None and (entry.kind, entry.name) == ("dial_plan", "main")
    assert config.route("+493023125204") is not None
    assert {"300", "301", "500", "800"} <= set(config.routes)


def start(now: datetime) -> tuple[PlanRun, Any]:
    config = compiled()
    entry = config.route(DID)
    assert entry is not None
    run = PlanRun(config, entry, CallFacts("+4917600000001", None, DID), RingState())
    return run, run.start(now)


def test_open_hours_menu_option_1_rings_sales() -> None:
    now = datetime(2026, 3, 11, 10, 0, tzinfo=BERLIN)
    run, first = start(now)
    assert first == Answer()
    play = run.resume(Answered(), now)
    assert play == Play((File("sounds/main-menu.wav"),), barge_in=True)
    run.resume(Played(), now)
    assert run.resume(Collected("1", "max"), now) == Ring(
        (RingTarget("line", "202"), RingTarget("line", "203")), 30.0
    )
    assert run.resume(RingResult(False), now) == LeaveVoicemail("800", "unavailable")


def menu(now: datetime) -> PlanRun:
    run, first = start(now)
    assert first == Answer()
    assert run.resume(Answered(), now) == Play((File("sounds/main-menu.wav"),), barge_in=True)
    run.resume(Played(), now)
    return run


def test_open_hours_menu_dials_an_extension_beginning_with_option_2() -> None:
    """The README: "press 2 for support ... or dial an extension" from 500. Option 2 used to win at once,
    so 202 could not be dialled from the menu."""
    now = datetime(2026, 3, 11, 10, 0, tzinfo=BERLIN)
    run = menu(now)
    assert run.resume(Collected("2", "max"), now) == Collect(1, "", 2.0, 2.0)
    assert run.resume(Collected("0", "max"), now) == Collect(1, "", 2.0, 2.0)
    assert run.resume(Collected("2", "max"), now) == Ring((RingTarget("line", "202"),), 20.0)


def test_open_hours_menu_a_lone_2_rings_support_after_the_pause() -> None:
    now = datetime(2026, 3, 11, 10, 0, tzinfo=BERLIN)
    run = menu(now)
    assert run.resume(Collected("2", "max"), now) == Collect(1, "", 2.0, 2.0)
    ring = run.resume(Collected("", "timeout"), now)
    assert isinstance(ring, Ring)
    assert ring.targets[0] in (RingTarget("line", "204"), RingTarget("line", "205"))  # support, round robin


def test_closed_hours_and_holidays_go_to_the_office_mailbox() -> None:
    for now in (
        datetime(2026, 3, 11, 19, 0, tzinfo=BERLIN),  # evening
        datetime(2026, 12, 28, 10, 0, tzinfo=BERLIN),  # Monday in the company holidays
        datetime(2027, 3, 8, 10, 0, tzinfo=BERLIN),  # Women's Day, a Berlin public holiday (Monday)
    ):
        run, _first = start(now)
        assert run.resume(Answered(), now) == Play((File("sounds/closed.wav"),), barge_in=False)
        assert run.resume(Played(), now) == LeaveVoicemail("800", "unavailable")
        assert run.path[0] == "main/office_hours:closed"
