"""Hypothesis: random (mostly plausible, sometimes junk) dial-plan graphs never crash the compiler, which
returns either a config or errors; a compiled random plan, walked with random outcomes, never raises and
only returns actions from the documented vocabulary."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dialplan.compiler import compile_config
from engine.dialplan.evaluate import (
    CallFacts,
    ConferenceResult,
    DetectFax,
    Done,
    Enqueue,
    FaxDetected,
    FaxResult,
    JoinConference,
    LeaveVoicemail,
    PlanRun,
    QueueResult,
    ReceiveFax,
    Ring,
    RingResult,
    RingState,
)
from engine.dialplan.schema import NODE_TYPES
from engine.model.entities import PhoneNumber
from engine.script import Answer, Answered, Collect, Collected, Hangup, HungUp, Play, Played

from .helpers import OPEN_TIME, inputs, main_graph

NODE_IDS = st.sampled_from(["a", "b", "c", "d", "e"])
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4), st.lists(st.integers(), max_size=2)
)
OUTPUTS = sorted({o for spec in NODE_TYPES.values() for o in spec.outputs} | {"bogus"})
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "clip": st.sampled_from(["main-menu", "closed", "nope"]),
    "line": st.sampled_from(["201", "202", "999"]),
    "ring_group": st.sampled_from(["sales", "support", "nope"]),
    "schedule": st.sampled_from(["office", "nope"]),
    "mailbox": st.sampled_from(["office", "800", "201", "nope"]),
    "plan": st.sampled_from(["main", "p", "nope"]),
    "options": st.dictionaries(st.text("0123456789*#", min_size=1, max_size=3), NODE_IDS, max_size=4),
    "language": st.sampled_from(["en", "de", "fr"]),
    "pin": st.sampled_from(["4711", "12x"]),
    "number": st.sampled_from(["+4930123456", "0301"]),
    "queue": st.sampled_from(["hotline", "nope"]),
    "room": st.sampled_from(["board", "nope"]),
    "fax_line": st.sampled_from(["fax", "nope"]),
    "prefix": st.sampled_from(["VIP ", ""]),
    "reason": st.sampled_from(["busy", "unavailable", "nope"]),
    "status": st.sampled_from([404, 480, 486, 200]),
    "allow_extension_dialling": st.booleans(),
    "barge_in": st.booleans(),
}
NUMBERS = st.integers(-1, 700)
ALL_FIELDS = sorted({f for spec in NODE_TYPES.values() for f in spec.required | spec.optional})


@st.composite
def nodes(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from([*NODE_TYPES, "bogus"]))
    spec = NODE_TYPES.get(kind)
    node: dict[str, Any] = {"type": kind}
    fields = sorted(spec.required | spec.optional) if spec and draw(st.booleans()) else ALL_FIELDS
    for name in fields:
        if draw(st.integers(0, 3)) == 0 and (
            spec is None or name not in spec.required or draw(st.booleans())
        ):
            continue
        if spec is not None and name not in spec.required | spec.optional and draw(st.integers(0, 5)) != 0:
            continue
        node[name] = draw(
            st.one_of(FIELD_VALUES.get(name, NUMBERS), JUNK)
            if draw(st.integers(0, 9)) == 0
            else FIELD_VALUES.get(name, NUMBERS)
        )
    outs = spec.outputs if spec and draw(st.integers(0, 4)) else tuple(OUTPUTS)
    node["next"] = draw(st.dictionaries(st.sampled_from(outs), NODE_IDS)) if outs else {}
    if draw(st.integers(0, 20)) == 0:
        node["next"] = draw(JUNK)
    return node


@st.composite
def graphs(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(JUNK)
    graph: dict[str, Any] = {
        "start": draw(st.one_of(NODE_IDS, JUNK) if draw(st.integers(0, 9)) == 0 else NODE_IDS),
        "nodes": draw(st.dictionaries(NODE_IDS, nodes(), min_size=1, max_size=5)),
    }
    if draw(st.booleans()):
        graph["extension"] = draw(st.sampled_from(["510", "201", "5x"]))
    return graph


VALID: dict[str, Any] = {
    "clip": ["main-menu", "closed"],
    "line": ["201", "202"],
    "ring_group": ["sales", "support"],
    "schedule": ["office"],
    "mailbox": ["office", "800", "201"],
    "plan": ["main", "p"],
    "language": ["en", "de"],
    "pin": ["4711"],
    "number": ["+4930123456"],
    "queue": ["hotline"],
    "room": ["board"],
    "fax_line": ["fax"],
    "prefix": ["VIP "],
}


@st.composite
def valid_graphs(draw: st.DrawFn) -> dict[str, Any]:
    """Graphs where every field is valid and every output connected: loops decide whether they compile."""
    ids = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8, unique=True))
    targets = st.sampled_from(ids)
    out: dict[str, Any] = {}
    for node_id in ids:
        kind = draw(st.sampled_from(sorted(NODE_TYPES)))
        spec = NODE_TYPES[kind]
        node: dict[str, Any] = {"type": kind}
        for name in sorted(spec.required):
            node[name] = draw(st.sampled_from(VALID[name]))
        if kind == "simple_dial":
            key = draw(st.sampled_from(["line", "ring_group"]))
            node[key] = draw(st.sampled_from(VALID[key]))
        if kind == "auto_attendant":
            node["options"] = draw(
                st.dictionaries(
                    st.text("0123456789*#", min_size=1, max_size=2), targets, min_size=1, max_size=4
                )
            )
            node["allow_extension_dialling"] = draw(st.booleans())
        node["next"] = {o: draw(targets) for o in spec.outputs}
        out[node_id] = node
    return {"start": ids[0], "nodes": out}


def answer_for(action: Any, rng: random.Random) -> Any:
    if rng.random() < 0.02:
        return HungUp()
    if isinstance(action, Answer):
        return Answered()
    if isinstance(action, Play):
        return Played(interrupted=rng.random() < 0.3)
    if isinstance(action, Collect):
        digits = "".join(rng.choice("0123456789*#") for _ in range(rng.randint(0, action.max_digits)))
        return Collected(digits, "max" if digits else "timeout")
    if isinstance(action, Enqueue):
        return QueueResult(rng.choice(["answered", "timeout", "key", "full", "no_agents"]))
    if isinstance(action, DetectFax):
        return FaxDetected(rng.random() < 0.5)
    if isinstance(action, ReceiveFax):
        return FaxResult(rng.random() < 0.5, rng.randrange(3))
    if isinstance(action, JoinConference):
        return ConferenceResult(rng.choice(["left", "locked", "ended", "removed"]))
    assert isinstance(action, Ring)
    return RingResult(answered=rng.random() < 0.3, busy=rng.random() < 0.3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(graphs(), valid_graphs()), st.integers(0, 2**32 - 1))
def test_random_graphs_compile_to_config_or_errors_and_walk_safely(graph: Any, seed: int) -> None:
    numbers = (
        PhoneNumber("+493023125100", "dial_plan", "main"),
        PhoneNumber("+493023125101", "dial_plan", "p"),
    )
    result = compile_config(inputs(plans={"main": main_graph(), "p": graph}, numbers=numbers))
    assert (result.config is None) == bool(result.errors)
    for issue in result.errors + result.warnings:
        assert issue.path and issue.message
    if result.config is None:
        return
    entry = result.config.route("+493023125101")
    assert entry is not None
    rng = random.Random(seed)
    run = PlanRun(result.config, entry, CallFacts("+4917600000001", None, "+493023125101"), RingState())
    now = OPEN_TIME
    action = run.start(now)
    for _ in range(200):
        if isinstance(action, Hangup | LeaveVoicemail | Done):
            assert run.finished
            assert not (isinstance(action, Hangup) and action.status == 500)  # the guard never fires
            return
        assert isinstance(action, Answer | Play | Collect | Ring | Enqueue | ReceiveFax | JoinConference
                          | DetectFax)
        now += timedelta(seconds=rng.randint(0, 30))
        action = run.resume(answer_for(action, rng), now)
