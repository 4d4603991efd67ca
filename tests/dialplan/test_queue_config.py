"""Queues in the compiled configuration: every field checked with its path, the exit destination resolved
to a node, and the evaluator's Enqueue action and its exits."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from engine.dialplan.evaluate import Done, Enqueue, LeaveVoicemail, QueueResult, Ring
from engine.dialplan.plan import Queue, QueueOp, RingTarget, VoicemailOp
from engine.script import Answer, Answered, Collected, Played

from .helpers import (
    BASE_OBJECTS,
    COMPANY,
    OPEN_TIME,
    compile_errors,
    compile_ok,
    drive,
    main_graph,
    start_run,
)

SUPPORT: dict[str, Any] = {
    "name": "support",
    "extension": "410",
    "agents": [{"line": "202"}, {"line": "203"}, {"line": "204"}],
    "strategy": "round_robin",
    "agent_ring_seconds": 12,
    "wrap_up_seconds": 5,
    "skip_busy_agents": False,
    "max_callers": 3,
    "max_wait_seconds": 90,
    "when_no_agents": "leave",
    "exit_key": "0",
    "welcome_clip": "main-menu",
    "hold_clip": "closed",
    "exit": {"kind": "voicemail", "target": "201"},
}


def queues(*extra: dict[str, Any]) -> dict[str, Any]:
    objs = copy.deepcopy(BASE_OBJECTS)
    objs["queues"] = [*objs["queues"], *extra]
    return objs


def error_message(queue: dict[str, Any], path: str) -> str:
    result = compile_errors(objects=queues(queue))
    found = [e.message for e in result.errors if e.path == path]
    assert found, [str(e) for e in result.errors]
    return found[0]


def test_a_full_queue_compiles_with_every_field() -> None:
    config = compile_ok(objects=queues(SUPPORT))
    queue = config.queues["support"]
    assert queue == Queue(
        name="support",
        agents=("202", "203", "204"),
        strategy="round_robin",
        agent_ring_s=12.0,
        wrap_up_s=5.0,
        skip_busy=False,
        max_callers=3,
        max_wait_s=90.0,
        join_empty=False,
        exit_key="0",
        welcome_clip="/data/clips/main-menu.wav",
        hold_clip="/data/clips/closed.wav",
    )
    entry = config.route("410")
    assert entry is not None and entry.kind == "queue"
    op = config.nodes[entry.node].op
    assert isinstance(op, QueueOp) and op.queue is queue
    assert config.nodes[op.exit].op == VoicemailOp("201", "unavailable")


def test_defaults() -> None:
    queue = compile_ok().queues["hotline"]
    assert (queue.strategy, queue.agent_ring_s, queue.wrap_up_s) == ("ring_all", 15.0, 0.0)
    assert queue.skip_busy
    assert (queue.max_callers, queue.max_wait_s, queue.join_empty, queue.exit_key) == (0, None, True, None)


@pytest.mark.parametrize(
    ("change", "path", "text"),
    [
        ({"strategy": "loudest"}, "strategy", "must be one of ring_all, round_robin, least_recent"),
        ({"agents": [{"line": "999"}]}, "agents[0].line", "no line has extension '999'"),
        ({"agents": [{"line": "202"}, {"line": "202"}]}, "agents[1].line", "an agent twice"),
        ({"agents": ["202"]}, "agents[0]", "must be {line: EXTENSION}"),
        ({"agents": "202"}, "agents", "must be a list"),
        ({"agent_ring_seconds": 1}, "agent_ring_seconds", "from 2 to 300"),
        ({"wrap_up_seconds": -1}, "wrap_up_seconds", "from 0 to 3600"),
        ({"max_callers": 5000}, "max_callers", "from 0 to 1000"),
        ({"max_wait_seconds": "long"}, "max_wait_seconds", "must be a number of seconds"),
        ({"skip_busy_agents": "yes"}, "skip_busy_agents", "true or false"),
        ({"when_no_agents": "wait"}, "when_no_agents", "join or leave"),
        ({"exit_key": "00"}, "exit_key", "one key"),
        ({"welcome_clip": "nope"}, "welcome_clip", "no sound clip named 'nope'"),
        ({"exit": {"kind": "nowhere", "target": "x"}}, "exit.kind", "must be one of extension"),
        ({"exit": {"kind": "voicemail", "target": "999"}}, "exit.target", "no mailbox '999'"),
        ({"exit": {"kind": "dial_plan", "target": "gone"}}, "exit.target", "no dial plan 'gone'"),
        ({"exit": {"kind": "queue", "target": "gone"}}, "exit.target", "no queue 'gone'"),
        ({"exit": {"kind": "number", "target": "0301"}}, "exit.target", "no E.164 number '0301'"),
        ({"exit": "voicemail"}, "exit", "must be {kind: KIND, target: NAME}"),
        ({"color": "red"}, "color", "unknown field"),
    ],
)
def test_bad_fields_are_named(change: dict[str, Any], path: str, text: str) -> None:
    assert text in error_message({**SUPPORT, **change}, f"queues[support].{path}")


def test_exits_to_every_kind_of_destination() -> None:
    kinds = {
        "extension": "202",
        "dial_plan": "main",
        "ring_group": "sales",
        "queue": "hotline",
        "mailbox": "office",
        "voicemail": "office",
        "number": "+4915112345678",
    }
    for kind, target in kinds.items():
        config = compile_ok(objects=queues({**SUPPORT, "exit": {"kind": kind, "target": target}}))
        op = config.nodes[config.route("410").node].op  # type: ignore[union-attr]
        assert isinstance(op, QueueOp)
        exit_node = config.nodes[op.exit]
        assert exit_node.op is not None, kind


def test_a_queue_exit_loop_that_never_waits_is_refused() -> None:
    a = {"name": "a", "exit": {"kind": "queue", "target": "b"}}
    b = {"name": "b", "exit": {"kind": "queue", "target": "a"}}
    result = compile_errors(objects=queues(a, b))
    assert any("loop" in e.message for e in result.errors), [str(e) for e in result.errors]


def test_the_queue_node_needs_its_exit_connected() -> None:
    graph = main_graph()
    graph["nodes"]["q"] = {"type": "queue", "queue": "hotline"}
    result = compile_errors(plans={"main": graph})
    assert any(e.path == "dial_plans[main].nodes.q.next.exit" for e in result.errors)


def test_enqueue_then_answered_or_exit() -> None:
    config = compile_ok(objects=queues(SUPPORT))
    queue = config.queues["support"]
    run, first = start_run(config, "410")
    assert drive(run, first, [Answered()]) == [Answer(), Enqueue(queue)]
    assert run.resume(QueueResult("answered"), OPEN_TIME) == Done()
    assert run.path == ("@queue/support:answered",)
    run, first = start_run(config, "410")
    drive(run, first, [Answered()])
    # the exit: the voicemail of line 201
    assert run.resume(QueueResult("timeout"), OPEN_TIME) == LeaveVoicemail("201", "unavailable")
    assert run.path[0] == "@queue/support:exit timeout"


def test_a_plan_queue_node_exits_to_its_output() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["options"]["4"] = "q"
    graph["nodes"]["q"] = {"type": "queue", "queue": "support", "next": {"exit": "sorry"}}
    graph["nodes"]["sorry"] = {"type": "simple_dial", "line": "206", "next": {"no_answer": "mailbox"}}
    config = compile_ok(objects=queues(SUPPORT), plans={"main": graph})
    run, first = start_run(config, "500")
    drive(run, first, [Answered(), Played()])
    assert run.resume(Collected("4", "max"), OPEN_TIME) == Enqueue(config.queues["support"])
    assert run.resume(QueueResult("key"), OPEN_TIME) == Ring((RingTarget("line", "206"),), 20.0)
    assert run.path[-1] == "main/q:exit key"


def test_the_company_hold_clip_is_the_hold_music_of_queues_without_their_own() -> None:
    """issue 19: one hold clip for the company (a phone's hold and every queue without a clip)."""
    own = {**SUPPORT, "hold_clip": "closed"}
    plain = {k: v for k, v in SUPPORT.items() if k != "hold_clip"} | {"name": "plain", "extension": "411"}
    company = dataclasses.replace(COMPANY, hold_clip="main-menu")
    config = compile_ok(objects=queues(own, plain), company=company)
    assert config.hold_clip == "/data/clips/main-menu.wav"
    assert config.queues["support"].hold_clip == "/data/clips/closed.wav"  # its own wins
    assert config.queues["plain"].hold_clip == "/data/clips/main-menu.wav"
    nodes = [n.op for n in config.nodes if isinstance(n.op, QueueOp) and n.op.queue.name == "plain"]
    assert nodes and all(op.queue.hold_clip == "/data/clips/main-menu.wav" for op in nodes)
    without = compile_ok(objects=queues(plain))
    assert without.hold_clip is None and without.queues["plain"].hold_clip is None  # the system music


def test_a_company_hold_clip_that_is_no_sound_clip_is_an_error_naming_the_field() -> None:
    result = compile_errors(company=dataclasses.replace(COMPANY, hold_clip="jazz"))
    errors = [(e.path, e.message) for e in result.errors]
    assert errors == [("company.hold_clip", "no sound clip named 'jazz'")]
