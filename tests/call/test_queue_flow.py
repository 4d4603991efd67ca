"""Call queues on the in-memory network: callers answered by the engine wait on the queue's hold stream, are
handed out first come first served to agents (real SIP phones on the pair harness) by the strategy, the
agent's leg bridged to the caller's; wrap-up, skip-busy, maximum wait to voicemail, the exit key and
abandoned callers (the media port is the scripted one of test_flows; the RTP side is tested in tests/media
and end to end in the integration suite)."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.call.queue import AgentState, QueueService
from engine.dialplan.compiler import compile_config
from engine.dialplan.plan import CompiledConfig
from engine.dialplan.schema import ConfigInputs
from engine.model.cdr import Disposition
from engine.model.entities import Company, Line, PhoneNumber, User
from engine.sip.events import Event, RequestReceived
from tests.call.phone import Phone
from tests.call.test_b2bua import NetClock
from tests.call.test_flows import DID, Rig
from tests.sip.harness import Node

QUEUE: dict[str, Any] = {"name": "q", "agents": [{"line": "202"}, {"line": "203"}], "agent_ring_seconds": 10,
                         "exit": {"kind": "voicemail", "target": "201"}}


def _config(**queue: Any) -> CompiledConfig:
    users = [User(i, f"U{i}", f"L{i}") for i in (1, 2, 3)]
    lines = [Line(i, i, ext, f"U{i}", None, "", "") for i, ext in ((1, "201"), (2, "202"), (3, "203"))]
    objects = {"queues": [{**QUEUE, **queue}], "sound_clips": [{"name": "hi", "file": "/nonexistent/hi.wav"}]}
    result = compile_config(ConfigInputs(Company("Test GmbH"), users, lines, [PhoneNumber(DID, "queue", "q")],
                                         [], objects))
    assert result.config is not None, result.errors
    return result.config


class QueueRig(Rig):
    """The flows' rig with the queue service, three callers and when each agent was offered a call."""

    def __init__(self, config: CompiledConfig, modes: tuple[str, str] = ("answer", "answer"),
                 digits: list[str] | None = None) -> None:
        super().__init__(config, modes, digits or [])
        self.queues = QueueService(self.net, NetClock(self.net))
        self.streams: list[str | None] = []  # the hold stream asked for each time a caller goes on hold
        self.services = dataclasses.replace(self.services, queues=self.queues, hold_stream=self._stream)
        self.callers = [self.alice] + [Phone(self.net, self.net.add_endpoint(f"c{i}", f"10.0.1.{i}", 5060,
                                                                             seed=10 + i)) for i in (1, 2)]
        self.offers: list[tuple[float, str]] = []
        for ext, bob in self.bobs.items():
            tu = bob.node.tu

            def logged(node: Node, event: Event, ext: str = ext, tu: Any = tu) -> None:
                if isinstance(event, RequestReceived) and event.request.method == "INVITE" \
                        and event.request.to.tag is None:
                    self.offers.append((self.net.now, ext))
                tu(node, event)

            bob.node.tu = logged

    def _stream(self, path: str | None) -> None:
        self.streams.append(path)

    def call_at(self, when: float, caller: int) -> None:
        self.net.call_at(when, lambda: self.callers[caller].call(f"sip:{DID}@10.0.0.2", self.pbx))

    def hang_up_at(self, when: float, phone: Phone) -> None:
        self.net.call_at(when, phone.bye)


def test_round_robin_hands_calls_out_in_turn_and_respects_wrap_up() -> None:
    rig = QueueRig(_config(strategy="round_robin", wrap_up_seconds=5))
    rig.call_at(0.0, 0)  # -> 202 (first in the list)
    rig.call_at(0.5, 1)  # -> 203 (the next in turn)
    rig.call_at(0.7, 2)  # nobody free: waits
    rig.hang_up_at(10.0, rig.callers[0])  # 202 in wrap-up until 15
    rig.hang_up_at(12.0, rig.callers[1])  # 203 in wrap-up until 17
    rig.net.run(until=16.9)
    assert [ext for _, ext in rig.offers] == ["202", "203", "202"]
    assert rig.offers[2][0] >= 15.0  # not before 202's wrap-up was over
    assert rig.queues.agents["202"].state is AgentState.ON_CALL
    assert rig.queues.agents["203"].state is AgentState.WRAP_UP
    assert rig.streams and set(rig.streams) == {None}  # the system hold music while they waited
    rig.hang_up_at(20.0, rig.callers[2])
    rig.net.run(until=90.0)
    assert all(a.state is AgentState.AVAILABLE for a in rig.queues.agents.values())
    assert [c.disposition for c in rig.cdrs] == [Disposition.ANSWERED] * 3
    assert all(any(step.startswith("queue:q:agent") for step in c.path) for c in rig.cdrs)
    stats = rig.queues.stats["q"]
    assert (stats.answered, stats.abandoned) == (3, 0)
    rig.assert_clean()


def test_least_recent_offers_the_agent_idle_longest() -> None:
    rig = QueueRig(_config(strategy="least_recent"))
    rig.call_at(0.0, 0)  # 202 (both idle since ever: list order)
    rig.hang_up_at(5.0, rig.callers[0])  # 202's last call ended at 5
    rig.call_at(8.0, 1)  # 203 has never had one: it is the least recent
    rig.hang_up_at(12.0, rig.callers[1])
    rig.call_at(15.0, 2)  # 202 (ended at 5) before 203 (ended at 12)
    rig.hang_up_at(20.0, rig.callers[2])
    rig.net.run(until=90.0)
    assert [ext for _, ext in rig.offers] == ["202", "203", "202"]
    rig.assert_clean()


def test_an_agent_on_another_call_is_skipped() -> None:
    rig = QueueRig(_config(strategy="linear"))
    rig.queues.busy = lambda ext: ext == "202"
    rig.call_at(0.0, 0)
    rig.hang_up_at(5.0, rig.callers[0])
    rig.net.run(until=60.0)
    assert [ext for _, ext in rig.offers] == ["203"]
    rig.assert_clean()


def test_an_agent_who_does_not_answer_is_passed_over_then_max_wait_sends_to_voicemail() -> None:
    rig = QueueRig(_config(strategy="linear", max_wait_seconds=25), modes=("ring", "ring"))
    rig.call_at(0.0, 0)
    rig.net.run(until=60.0)
    # 202 rings 10 s, then 203 10 s, then 202 again until the maximum wait
    assert [ext for _, ext in rig.offers] == ["202", "203", "202"]
    assert rig.deposits == [("201", "unavailable")]
    assert rig.bobs["202"].statuses == [] and rig.queues.agents["202"].state is AgentState.AVAILABLE
    stats = rig.queues.stats["q"]
    assert (stats.answered, stats.exited, stats.abandoned) == (0, 1, 0)
    assert rig.queues.waiting_callers("q") == 0


def test_the_exit_key_leaves_for_the_exit() -> None:
    rig = QueueRig(_config(exit_key="0", hold_clip="hi"), modes=("ring", "ring"), digits=["5", "0"])
    rig.call_at(0.0, 0)
    rig.net.run(until=60.0)
    assert rig.deposits == [("201", "unavailable")]
    assert rig.streams == ["/nonexistent/hi.wav"] * 2  # another key than the exit key: still on hold
    assert rig.queues.stats["q"].exited == 1
    assert all(a.state is AgentState.AVAILABLE for a in rig.queues.agents.values())


def test_a_caller_who_hangs_up_while_waiting_is_abandoned() -> None:
    rig = QueueRig(_config(), modes=("ring", "ring"))
    rig.call_at(0.0, 0)
    rig.hang_up_at(4.0, rig.callers[0])
    rig.net.run(until=60.0)
    assert rig.queues.stats["q"].abandoned == 1
    assert rig.queues.waiting_callers("q") == 0
    assert all(a.state is AgentState.AVAILABLE for a in rig.queues.agents.values())
    assert [c.disposition for c in rig.cdrs] == [Disposition.ANSWERED]  # the engine answered it
    rig.assert_clean()


def test_a_full_queue_and_no_agents_take_the_exit_at_once() -> None:
    rig = QueueRig(_config(when_no_agents="leave", agents=[]))
    rig.call_at(0.0, 0)
    rig.net.run(until=30.0)
    assert rig.deposits == [("201", "unavailable")] and rig.offers == []
    rig = QueueRig(_config(max_callers=1), modes=("ring", "ring"))
    rig.call_at(0.0, 0)
    rig.call_at(1.0, 1)
    rig.net.run(until=5.0)
    assert rig.deposits == [("201", "unavailable")]
    assert rig.queues.waiting_callers("q") == 1


def test_agents_without_a_phone_are_retried_until_the_maximum_wait() -> None:
    rig = QueueRig(_config(agents=[{"line": "201"}], max_wait_seconds=35))  # 201 has no phone in the rig
    rig.call_at(0.0, 0)
    rig.net.run(until=30.0)
    assert rig.queues.waiting_callers("q") == 1 and rig.deposits == []  # still waiting, nothing rang
    rig.net.run(until=60.0)
    assert rig.deposits == [("201", "unavailable")]
    assert rig.queues.agents["201"].state is AgentState.AVAILABLE
    rig.assert_clean()  # the retry timer went with the caller


def test_a_dynamic_agent_gets_calls_only_while_logged_in_and_not_paused() -> None:
    config = _config(strategy="linear", agents=[{"line": "202", "dynamic": True}, {"line": "203"}])
    queue = config.queues["q"]
    rig = QueueRig(config)
    rig.net.call_at(0.0, lambda: rig.queues.set_presence(queue, "203", True, True))  # 203 pauses
    rig.call_at(1.0, 0)  # nobody may take it: 202 is logged out, 203 paused
    rig.net.call_at(5.0, lambda: rig.queues.set_presence(queue, "202", True, False))  # 202 logs in
    rig.hang_up_at(10.0, rig.callers[0])
    rig.net.call_at(11.0, lambda: rig.queues.set_presence(queue, "202", False, False))  # 202 logs out
    rig.net.call_at(12.0, lambda: rig.queues.set_presence(queue, "203", True, False))  # 203 back
    rig.call_at(13.0, 1)
    rig.hang_up_at(20.0, rig.callers[1])
    rig.net.run(until=60.0)
    assert [(when >= 5.0, ext) for when, ext in rig.offers] == [(True, "202"), (True, "203")]
    assert rig.offers[1][0] >= 13.0
    assert rig.queues.logged_in(queue, "203") and not rig.queues.logged_in(queue, "202")
    rig.assert_clean()


def test_an_agent_busy_on_another_call_is_offered_the_caller_once_that_call_is_over() -> None:
    rig = QueueRig(_config(strategy="linear", agents=[{"line": "202"}]))
    busy_until = 6.0
    rig.queues.busy = lambda ext: rig.net.now < busy_until  # its own call ends without telling the queue
    rig.call_at(0.0, 0)
    rig.hang_up_at(15.0, rig.callers[0])
    rig.net.run(until=60.0)
    assert [ext for _, ext in rig.offers] == ["202"]
    assert busy_until <= rig.offers[0][0] <= busy_until + 2.5  # looked again within BUSY_RETRY_S
    rig.assert_clean()


def test_an_agent_in_dnd_is_skipped_even_where_busy_agents_are_not() -> None:
    rig = QueueRig(_config(strategy="linear", skip_busy_agents=False))
    rig.queues.away = lambda ext: ext == "202"  # 202's line is in do-not-disturb
    rig.call_at(0.0, 0)
    rig.hang_up_at(5.0, rig.callers[0])
    rig.net.run(until=60.0)
    assert [ext for _, ext in rig.offers] == ["203"]
    rig.assert_clean()
