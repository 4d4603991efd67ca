"""Star codes carried out (engine.call.features) on a real SQLite store: each code's change kept in the
store (the configuration version moves and a re-read snapshot has it), each refusal with its prompt and
nothing changed, queue login/pause in the live queue state and at rest. The SIP side is in
tests/integration/test_star_codes.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.call.b2bua import CallInfo
from engine.call.config import EngineConfig, read_engine_config
from engine.call.features import ApplyFeature, FeatureApplied, FeatureFlow, FeatureService
from engine.call.queue import QueueService
from engine.call.routing import FeatureCall
from engine.clock import FakeClock
from engine.dialplan.starcodes import DEFAULT_TABLE
from engine.model.cdr import Direction
from engine.model.features import LineFeatures
from engine.script import Answer, Answered, Hangup, Play, Played, Sound
from engine.store import Store
from engine.store.features import AgentRecord, queue_agents

DOC: dict[str, Any] = {
    "version": 1,
    "company": {"name": "Star GmbH", "sip_realm": "pbx.test", "country": "DE", "area_code": "30"},
    "users": [
        {"first_name": "A", "last_name": "One", "extension": "201", "sip_password": "secret-201"},
        {"first_name": "B", "last_name": "Two", "extension": "202", "sip_password": "secret-202"},
        {"first_name": "C", "last_name": "Three", "extension": "203", "sip_password": "secret-203",
         "voicemail": False},
    ],
    "queues": [
        {"name": "support", "extension": "410",
         "agents": [{"line": "202", "dynamic": True}, {"line": "203"}]},
        {"name": "sales", "extension": "411", "agents": [{"line": "203"}]},
    ],
}


class Engine:
    def __init__(self, store: Store, tmp: Path) -> None:
        self.store = store
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.queues = QueueService(_NoTimers(), self.clock)
        self.service = FeatureService(self.loop, self.queues, store, self.clock)

    def config(self) -> EngineConfig:
        return read_engine_config(self.store, self.tmp, ring_timeout=20.0, resolve=lambda hosts: {})

    def dial(self, ext: str, dialled: str) -> tuple[str, ...]:
        """What line ``ext`` hears after dialling ``dialled`` (the change is kept before it returns)."""
        star = DEFAULT_TABLE.match(dialled)
        assert star is not None, dialled
        got: list[FeatureApplied] = []
        fut: asyncio.Future[None] = self.loop.create_future()

        def done(applied: FeatureApplied) -> None:
            got.append(applied)
            fut.set_result(None)

        self.service.apply(ApplyFeature(star, ext), self.config(), done)
        self.loop.run_until_complete(asyncio.wait_for(fut, 10))
        return got[0].prompts

    def features(self, ext: str) -> LineFeatures | None:
        plan = self.config().plan
        assert plan is not None
        return plan.line_features.get(ext)


class _NoTimers:
    def call_at(self, when: float, action: Any) -> Any:
        raise AssertionError("no queue timer expected")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = Store.open(tmp_path)
    store.import_company(DOC)
    eng = Engine(store, tmp_path)
    try:
        yield eng
    finally:
        eng.loop.close()
        store.close()


def test_dnd_and_forwarding_are_kept_in_the_line_options(engine: Engine) -> None:
    before = engine.store.config_version()
    assert engine.dial("202", "*78") == ("star-dnd-on",)
    assert engine.store.config_version() == before + 1
    assert engine.features("202") == LineFeatures(dnd=True)
    assert engine.dial("202", "*72203") == ("star-forward-always-on",)
    assert engine.dial("202", "*92015112345678") == ("star-forward-no-answer-on",)
    assert engine.dial("202", "*9023125100") == ("star-forward-busy-on",)
    assert engine.features("202") == LineFeatures(
        dnd=True, forward_always="203", forward_busy="+493023125100", forward_no_answer="+4915112345678")
    assert engine.dial("202", "*79") == ("star-dnd-off",)
    assert engine.dial("202", "*73") == ("star-forward-always-off",)
    assert engine.dial("202", "*91") == ("star-forward-busy-off",)
    assert engine.dial("202", "*93") == ("star-forward-no-answer-off",)
    assert engine.features("202") is None


def test_forward_refusals_change_nothing(engine: Engine) -> None:
    version = engine.store.config_version()
    assert engine.dial("202", "*72") == ("star-need-number",)
    assert engine.dial("202", "*72202") == ("star-not-allowed",)  # itself
    assert engine.dial("202", "*7200442071234567") == ("star-not-allowed",)  # international
    assert engine.dial("202", "*72110") == ("star-not-allowed",)  # emergency
    assert engine.dial("202", "*720") == ("star-invalid-number",)
    assert engine.store.config_version() == version
    assert engine.features("202") is None


def test_queue_login_logout_and_pause(engine: Engine) -> None:
    plan = engine.config().plan
    assert plan is not None
    support, sales = plan.queues["support"], plan.queues["sales"]
    assert not engine.queues.logged_in(support, "202")  # dynamic: out until it logs in
    assert engine.queues.logged_in(support, "203")  # static: in until it logs out
    assert engine.dial("202", "*45410") == ("star-agent-logged-in",)
    assert engine.queues.logged_in(support, "202")
    assert queue_agents(engine.store) == [AgentRecord("support", "202", True, False)]
    assert engine.dial("203", "*47") == ("star-agent-paused",)  # both of its queues
    assert engine.queues.paused(support, "203") and engine.queues.paused(sales, "203")
    assert engine.dial("203", "*46411") == ("star-agent-logged-out",)  # sales only
    assert engine.dial("203", "*47") == ("star-agent-unpaused",)  # where it is still logged in
    assert not engine.queues.paused(support, "203") and not engine.queues.logged_in(sales, "203")
    assert engine.dial("203", "*46") == ("star-agent-logged-out",)  # every queue
    assert engine.dial("203", "*47") == ("star-not-logged-in",)
    assert engine.dial("203", "*45") == ("star-agent-logged-in",)
    assert engine.queues.logged_in(support, "203") and engine.queues.logged_in(sales, "203")
    # a restart: the stored states come back
    again = QueueService(_NoTimers(), engine.clock)
    FeatureService(engine.loop, again, engine.store, engine.clock).restore(queue_agents(engine.store))
    assert again.presence == engine.queues.presence


def test_queue_refusals(engine: Engine) -> None:
    assert engine.dial("202", "*45999") == ("star-unknown-queue",)
    assert engine.dial("202", "*45201") == ("star-unknown-queue",)  # a line, not a queue
    assert engine.dial("202", "*45411") == ("star-not-an-agent",)
    assert engine.dial("201", "*45") == ("star-no-queues",)
    assert engine.dial("201", "*46") == ("star-no-queues",)
    assert engine.dial("201", "*47") == ("star-not-logged-in",)
    assert engine.dial("202", "*47") == ("star-not-logged-in",)  # dynamic, never logged in
    assert queue_agents(engine.store) == []


def test_the_flow_answers_applies_plays_and_hangs_up() -> None:
    star = DEFAULT_TABLE.match("*78")
    assert star is not None
    flow = FeatureFlow(FeatureCall(star, "202", CallInfo(Direction.INTERNAL, "202", "B", "*78")))
    assert flow.start() == Answer()
    assert flow.resume(Answered()) == ApplyFeature(star, "202")
    assert flow.resume(FeatureApplied(("star-dnd-on",))) == Play((Sound("star-dnd-on"),), barge_in=False)
    assert flow.resume(Played()) == Hangup()
