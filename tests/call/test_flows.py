"""The flow controller on the in-memory network: a compiled dial plan run against the CallManager, with a
scripted media port standing in for the RTP endpoint (which is tested on real sockets in tests/media and
end to end with pjsua2 in the integration suite)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.call.b2bua import Branch, Call, CallInfo, CallManager, Destination
from engine.call.config import EngineConfig
from engine.call.flows import FlowController, FlowFactory, FlowServices, MediaRequest, MediaResult
from engine.call.routing import MailboxMenu, RoutingConfig
from engine.dialplan.compiler import compile_config
from engine.dialplan.evaluate import CallFacts, PlanRun, RingState
from engine.dialplan.plan import CompiledConfig, RingTarget
from engine.dialplan.schema import ConfigInputs
from engine.model.cdr import CallRecord, Direction, Disposition
from engine.model.entities import Company, DialPlan, Line, PhoneNumber, User
from engine.script import (
    Answer,
    Collect,
    Collected,
    Hangup,
    Play,
    Played,
    Record,
    Recorded,
    Sound,
)
from engine.sip.events import Event, RequestReceived
from engine.sip.sdp import SessionDescription
from tests.call.phone import Phone
from tests.call.test_b2bua import NetClock
from tests.call.test_b2bua_controlled import ENGINE_SDP
from tests.sip.harness import Network, Node

DID = "+493023125100"
NOON = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # a Wednesday, 12:00 in Berlin


def _config(graph: dict[str, Any], strategy: str = "ring_all") -> CompiledConfig:
    users = [User(i, f"U{i}", f"L{i}") for i in (1, 2, 3)]
    lines = [Line(i, i, ext, f"U{i}", None, "", "") for i, ext in ((1, "201"), (2, "202"), (3, "203"))]
    objects = {
        "ring_groups": [{"name": "sales", "strategy": strategy, "members": [{"line": "202"}, {"line": "203"}],
                         "member_ring_seconds": 10, "ring_seconds": 60}],
        "sound_clips": [{"name": "menu", "file": "/nonexistent/menu.wav"}],
    }
    result = compile_config(ConfigInputs(Company("Test GmbH"), users, lines,
                                         [PhoneNumber(DID, "dial_plan", "main")],
                                         [DialPlan(1, "main", graph)], objects))
    assert result.config is not None, result.errors
    return result.config


MENU = {"start": "menu", "nodes": {
    "menu": {"type": "auto_attendant", "clip": "menu", "options": {"1": "sales"}, "retries": 1,
             "next": {"timeout": "bye", "invalid": "bye"}},
    "sales": {"type": "ring_group", "ring_group": "sales", "next": {"no_answer": "bye"}},
    "bye": {"type": "hangup"},
}}
DIRECT = {"start": "sales", "nodes": {
    "sales": {"type": "ring_group", "ring_group": "sales", "next": {"no_answer": "vm"}},
    "vm": {"type": "voicemail", "mailbox": "201"},
}}


@dataclass(eq=False)
class FakeMedia:
    """A media port: plays take 1 s, collects return the scripted digits."""

    net: Network
    digits: list[str]
    language: str = "de"
    ran: list[MediaRequest] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    closed: bool = False
    hung_up: bool = False
    hold: Any = None
    interrupted: int = 0

    def interrupt(self) -> None:
        self.interrupted += 1

    def run(self, action: MediaRequest, done: Callable[[MediaResult], None]) -> None:
        self.ran.append(action)
        self.languages.append(self.language)
        result: MediaResult
        if isinstance(action, Play):
            result = Played(False)
        elif isinstance(action, Collect):
            result = Collected(self.digits.pop(0), "max") if self.digits else Collected("", "timeout")
        else:
            assert isinstance(action, Record)
            result = Recorded(action.path, 3.0, "key", "#")
        self.net.call_at(self.net.now + 1.0, lambda: done(result))

    def push_digit(self, key: str) -> None:
        self.digits.append(key)

    def hangup(self) -> None:
        self.hung_up = True

    def close(self) -> None:
        self.closed = True


class Rig:
    def __init__(self, config: CompiledConfig, modes: tuple[str, ...], digits: list[str]) -> None:
        self.net = net = Network()
        self.cdrs: list[CallRecord] = []
        self.alice = Phone(net, net.add_endpoint("alice", "10.0.0.1", 5060, seed=1))
        self.pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2)
        self.bobs = {ext: Phone(net, net.add_endpoint(f"bob{ext}", f"10.0.0.{i + 3}", 5060, seed=i + 3),
                                mode=mode)
                     for i, (ext, mode) in enumerate(zip(("202", "203"), modes, strict=False))}
        self.manager = CallManager(self.pbx.endpoint, net, lambda: None, None, "10.0.0.2", self.cdrs.append,
                                   NetClock(net))
        self.media = FakeMedia(net, digits)
        self.deposits: list[tuple[str, str]] = []
        self.config = config
        self.snapshot = EngineConfig(1, {}, RoutingConfig(Company("Test GmbH"), plan=config))
        self.services = FlowServices(
            manager=self.manager, open_media=self._open_media,
            run_media=lambda port, action, done: self.media.run(action, done),
            destination=self._destination, deposit=self._deposit, apply_effect=lambda e, config, done: None,
            wall=lambda: NOON, flush=lambda: None)
        self.controllers: list[FlowController] = []
        #: builds the controller of the next incoming call (default: a run of the plan at DID)
        self.controller_for: Callable[[], FlowController] | None = None
        self.pbx.tu = self._pbx_tu

    def _open_media(self, call: Call, offer: SessionDescription) -> tuple[FakeMedia, bytes]:
        return self.media, ENGINE_SDP

    def _destination(self, call: Call, config: EngineConfig, targets: tuple[RingTarget, ...], timeout: float,
                     prefix: str) -> Destination | None:
        branches = tuple(Branch(f"sip:{t.value}@{self.bobs[t.value].node.host}", self.bobs[t.value].node.peer)
                         for t in targets if t.value in self.bobs)
        if not branches:
            return None
        return Destination(branches, f'"{prefix}Alice" <sip:alice@pbx.test>', "<sip:sales@pbx.test>",
                           ring_timeout=timeout)

    def _deposit(self, mailbox: str, reason: str, call: Call, config: EngineConfig) -> None:
        self.deposits.append((mailbox, reason))
        return None

    def _pbx_tu(self, node: Node, event: Event) -> None:
        if self.manager.handle(event, self.net.now):
            return
        if isinstance(event, RequestReceived) and event.transaction is not None \
                and event.request.method == "INVITE":
            entry = self.config.route(DID)
            assert entry is not None
            run = PlanRun(self.config, entry, CallFacts("alice", "Alice", DID), RingState())
            controller = (self.controller_for() if self.controller_for is not None
                          else FlowController(self.services, run=run, config=self.snapshot))
            self.controllers.append(controller)
            info = CallInfo(Direction.INBOUND, caller="alice", caller_name="Alice", callee="main", did=DID)
            call = self.manager.start_controlled(event.request, event.transaction, event.peer, info,
                                                 controller, self.net.now)
            assert call is not None
            controller.begin(call)

    def assert_clean(self) -> None:
        m = self.manager
        assert m.calls == {} and m.legs == {} and m.dialogs == {} and m.by_invite == {}
        assert m.sides.pending == {}
        assert self.net.pending_timers() == 0


def test_auto_attendant_answers_plays_collects_and_the_ring_group_member_is_bridged() -> None:
    rig = Rig(_config(MENU), ("ring", "answer"), ["1"])
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    rig.net.call_at(20.0, rig.alice.bye)
    rig.net.run(until=90.0)
    kinds = [type(a).__name__ for a in rig.media.ran]
    assert kinds[:2] == ["Play", "Collect"]  # the menu, then the caller's choice
    assert rig.alice.bodies[0] == ENGINE_SDP  # answered by the engine's own media first
    assert [r.method for r in rig.alice.requests] == ["INVITE", "ACK"]  # re-INVITEd onto the member
    assert rig.media.closed
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED
    assert sorted(leg.status for leg in cdr.legs) == [200, 487]  # ring all: 203 won, 202 cancelled
    assert any("menu" in step for step in cdr.path) and any("sales" in step for step in cdr.path)
    rig.assert_clean()


class SayGoodbye:
    """A flow without a plan run (as the *98/*99 menu): answer, say goodbye, hang up."""

    def start(self) -> Any:
        return Answer()

    def resume(self, outcome: Any) -> Any:
        return Play((Sound("goodbye"),)) if not isinstance(outcome, Played) else Hangup()


def test_the_mailbox_menu_speaks_the_companys_language() -> None:
    # A flow without a plan run used to keep the media port's default language (English), so a German
    # company's *99 menu spoke English prompts around German numbers.
    config = _config(MENU)
    assert config.default_language == "de"
    rig = Rig(config, (), [])
    rig.media.language = "en"
    info = CallInfo(Direction.INTERNAL, caller="201", caller_name="U1", callee="*99")
    factory = FlowFactory(rig.services, RingState(), lambda routed, config: SayGoodbye())
    built: list[FlowController] = []

    def menu_controller() -> FlowController:
        controller = factory.controller(MailboxMenu("201", info), rig.snapshot)
        assert controller is not None
        built.append(controller)
        return controller

    rig.controller_for = menu_controller
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    rig.net.run(until=30.0)
    assert built and built[0].language == "de"
    assert [type(a).__name__ for a in rig.media.ran] == ["Play"]
    assert rig.media.language == "de"
    assert [r.method for r in rig.alice.requests] == ["BYE"]
    rig.assert_clean()


def test_nobody_in_the_group_answers_and_the_plan_goes_to_voicemail_without_answering_first() -> None:
    rig = Rig(_config(DIRECT), ("busy", "busy"), [])
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    rig.net.run(until=90.0)
    assert rig.deposits == [("201", "unavailable")]  # the node's reason (busy only when it says so)
    # No voicemail service in this rig: the call ends unanswered, with the busy the group gave.
    assert rig.alice.statuses[-1] == 486
    assert rig.media.ran == []
    (cdr,) = rig.cdrs
    assert "voicemail:201:unavailable" in cdr.path
    rig.assert_clean()


def test_the_caller_hangs_up_during_the_menu() -> None:
    rig = Rig(_config(MENU), (), [])
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    rig.net.call_at(1.5, rig.alice.bye)
    rig.net.run(until=90.0)
    assert rig.media.hung_up and rig.media.closed
    assert rig.controllers[0].finished
    (cdr,) = rig.cdrs
    assert cdr.hangup_cause == "caller hung up"
    rig.assert_clean()


def test_the_menu_times_out_and_the_plan_hangs_up() -> None:
    rig = Rig(_config(MENU), (), [])
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    rig.net.run(until=90.0)
    assert [r.method for r in rig.alice.requests] == ["BYE"]  # answered, so the hangup is a BYE
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED and cdr.hangup_cause == "dial plan hung up"
    rig.assert_clean()


def test_a_set_language_node_switches_the_prompts_of_the_following_steps() -> None:
    english = {"start": "menu", "nodes": {
        "menu": {"type": "auto_attendant", "clip": "menu", "options": {"9": "english"}, "retries": 0,
                 "next": {"timeout": "bye", "invalid": "bye"}},
        "english": {"type": "set_language", "language": "en", "next": {"next": "menu2"}},
        "menu2": {"type": "play_clip", "clip": "menu", "next": {"next": "bye"}},
        "bye": {"type": "hangup"},
    }}
    rig = Rig(_config(english), (), ["9"])
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    rig.net.run(until=90.0)
    kinds = [type(a).__name__ for a in rig.media.ran]
    assert kinds[:3] == ["Play", "Collect", "Play"]
    assert rig.media.languages[:3] == ["de", "de", "en"]  # the company is German; 9 switched to English
    rig.assert_clean()
