#!/usr/bin/env python3
"""Dial-plan compile time of a large company and route decision time per call (engine/dialplan).

usage: python3 bench/dialplan.py [--runs 5] [--calls 20000] [--lines 1000] [--plans 200] [--nodes 10000]

Generates one company deterministically (seeded): --lines users with a line each, --plans dial plans with
--nodes nodes between them (every node type but the queue/conference/fax placeholders, auto attendants with
up to 9 options, forward edges only, so every plan compiles), 100 ring groups (ring_all, sequential, round
robin; 5-10 members, some external), 50 schedules (weekly blocks, date-range holidays with times,
recurring holidays, the DE-BE calendar on half of them), 20 sound clips, 10 shared mailboxes, and one DID
per plan and per line.

compile: ``compile_config`` on the whole company, median and min of --runs runs (the inputs are built
once; the holiday calendar memo is warm after the first run, as in a running engine).

route: per call, ``config.route(number)`` + ``PlanRun(...)`` + ``start(now)`` and ``resume`` with the
expected outcome until the first ``Ring`` or ``Play``, with a fixed clock; --calls calls spread over all
DIDs (plans: schedule -> auto attendant, so the first Play after an Answer) and over all extensions
(lines: the first Ring), in µs: median and p99, measured per call with ``perf_counter_ns``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.dialplan.compiler import ConfigInputs, compile_config
from engine.dialplan.evaluate import CallFacts, PlanRun, Ring, RingState
from engine.model.entities import Company, DialPlan, Line, PhoneNumber, User
from engine.script import Answer, Answered, Play

NOW = datetime(2026, 3, 11, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # a Wednesday, open hours
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MIDDLE_TYPES = [
    "auto_attendant",
    "ring_group",
    "play_clip",
    "simple_dial",
    "set_language",
    "modify_caller_id",
    "password",
    "external_number",
    "detect_fax",
    "dial_by_name",
    "schedule",
]
OUTPUTS = {
    "auto_attendant": ("timeout", "invalid"),
    "ring_group": ("no_answer",),
    "play_clip": ("next",),
    "simple_dial": ("no_answer",),
    "set_language": ("next",),
    "modify_caller_id": ("next",),
    "password": ("ok", "fail"),
    "external_number": ("no_answer",),
    "detect_fax": ("voice", "fax"),
    "dial_by_name": ("no_match",),
    "schedule": ("open", "closed"),
}


def company_inputs(n_lines: int, n_plans: int, n_nodes: int, seed: int) -> ConfigInputs:
    rng = random.Random(seed)
    users = [
        User(i, f"First{i}", rng.choice(["Schmidt", "Becker", "Wagner", "Müller", "Weber"]) + str(i))
        for i in range(1, n_lines + 1)
    ]
    lines = [Line(i, i, str(1000 + i), f"line {i}", None, "x", "y") for i in range(1, n_lines + 1)]
    exts = [line.extension for line in lines]
    clips = [{"name": f"clip{i}", "file": f"/data/clips/clip{i}.wav"} for i in range(20)]
    groups = []
    for i in range(100):
        members: list[dict[str, Any]] = [{"line": e} for e in rng.sample(exts, rng.randint(5, 10))]
        if i % 4 == 0:
            members.append({"number": f"+49151{1000000 + i}"})
        groups.append(
            {
                "name": f"group{i}",
                "extension": str(5000 + i),
                "strategy": ("ring_all", "sequential", "round_robin")[i % 3],
                "members": members,
            }
        )
    schedules = []
    for i in range(50):
        sched: dict[str, Any] = {
            "name": f"sched{i}",
            "open": [
                {"days": DAYS[:5], "from": "08:00", "to": "12:00"},
                {"days": DAYS[:5], "from": "13:00", "to": "18:00"},
                {"days": ["sat"], "from": "22:00", "to": "02:00"},
            ],
            "holidays": [
                {"from": f"2026-{m:02d}-{d:02d}", "from_time": "12:00", "to": f"2026-{m:02d}-{d + 1:02d}"}
                for m, d in ((1, 2), (4, 14), (8, 10), (12, 27))
            ],
            "recurring_holidays": [{"month": 12, "day": 24}, {"month": 12, "day": 31}],
        }
        if i % 2 == 0:
            sched["holiday_calendar"] = {"country": "DE", "subdivision": "BE"}
        schedules.append(sched)
    mailboxes = [{"name": f"box{i}", "number": str(8000 + i)} for i in range(10)]
    per_plan = n_nodes // n_plans
    plans = [DialPlan(p, f"plan{p}", plan_graph(p, per_plan, rng, exts)) for p in range(n_plans)]
    numbers = [PhoneNumber(f"+4930{2000000 + p}", "dial_plan", f"plan{p}") for p in range(n_plans)]
    numbers += [PhoneNumber(f"+4930{3000000 + i}", "extension", e) for i, e in enumerate(exts)]
    return ConfigInputs(
        company=Company(name="Bench GmbH"),
        users=users,
        lines=lines,
        numbers=numbers,
        dial_plans=plans,
        objects={
            "sound_clips": clips,
            "ring_groups": groups,
            "schedules": schedules,
            "mailboxes": mailboxes,
        },
    )


def plan_graph(p: int, n: int, rng: random.Random, exts: list[str]) -> dict[str, Any]:
    """n nodes: n0 a schedule into an auto attendant (n1); a forward-only middle; three terminal nodes."""
    nodes: dict[str, Any] = {}
    last = n - 1

    def fwd(i: int) -> str:
        return f"n{rng.randint(i + 1, min(i + 8, last))}"

    for i in range(n):
        if i >= n - 3:
            kind = ("voicemail", "line_voicemail", "hangup")[i - (n - 3)]
        elif i == 0:
            kind = "schedule"
        elif i == 1:
            kind = "auto_attendant"
        else:
            kind = MIDDLE_TYPES[i % len(MIDDLE_TYPES)]
        node: dict[str, Any] = {"type": kind}
        if kind == "schedule":
            node["schedule"] = f"sched{rng.randrange(50)}"
        elif kind == "auto_attendant":
            node["clip"] = f"clip{rng.randrange(20)}"
            node["options"] = {str(d): fwd(i) for d in range(1, rng.randint(2, 9) + 1)}
            node["allow_extension_dialling"] = True
            node["wait_for_extensions"] = True
        elif kind == "ring_group":
            node["ring_group"] = f"group{rng.randrange(100)}"
        elif kind == "play_clip":
            node["clip"] = f"clip{rng.randrange(20)}"
        elif kind == "simple_dial":
            node["line"] = rng.choice(exts)
        elif kind == "set_language":
            node["language"] = rng.choice(["en", "de"])
        elif kind == "modify_caller_id":
            node["prefix"] = f"P{p} "
        elif kind == "password":
            node["pin"] = "4711"
        elif kind == "external_number":
            node["number"] = f"+4989{1000000 + i}"
        elif kind == "voicemail":
            node["mailbox"] = f"box{rng.randrange(10)}"
        elif kind == "line_voicemail":
            node["line"] = rng.choice(exts)
        outs = OUTPUTS.get(kind, ())
        if outs:
            # the first output continues the chain, so every node is reachable
            node["next"] = {o: (f"n{i + 1}" if k == 0 else fwd(i)) for k, o in enumerate(outs)}
        if i == 0:
            node["next"] = {"open": "n1", "closed": "n2"}
        nodes[f"n{i}"] = node
    return {"start": "n0", "extension": str(7000 + p), "nodes": nodes}


def time_compile(inputs: ConfigInputs, runs: int) -> tuple[list[float], Any]:
    times = []
    result = None
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        result = compile_config(inputs)
        times.append(time.perf_counter() - t0)
    assert result is not None
    return times, result


def time_routes(config: Any, targets: list[str], calls: int) -> list[float]:
    state = RingState()
    answered = Answered()
    out = []
    for k in range(calls):
        called = targets[k % len(targets)]
        t0 = time.perf_counter_ns()
        entry = config.route(called)
        run = PlanRun(config, entry, CallFacts("+4917600000001", None, called), state)
        action = run.start(NOW)
        while isinstance(action, Answer):
            action = run.resume(answered, NOW)
        t1 = time.perf_counter_ns()
        run.close()  # the engine would go on with the call; close() keeps it out of the cyclic GC's way
        if not isinstance(action, Ring | Play):
            raise SystemExit(f"{called}: first action {action!r}, expected Ring or Play")
        out.append((t1 - t0) / 1000.0)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    inputs = company_inputs(args.lines, args.plans, args.nodes, args.seed)
    times, result = time_compile(inputs, args.runs)
    if result.errors:
        raise SystemExit("generated company does not compile: " + "; ".join(map(str, result.errors[:5])))
    config = result.config
    n_plan_nodes = sum(1 for node in config.nodes if not node.plan.startswith("@"))
    print(
        f"company: {len(inputs.lines)} lines, {len(inputs.dial_plans)} plans, {n_plan_nodes} plan nodes "
        f"({len(config.nodes)} with synthetic entries), {len(inputs.objects['ring_groups'])} ring groups, "
        f"{len(inputs.objects['schedules'])} schedules, {len(config.routes)} routes, "
        f"{len(result.warnings)} warnings"
    )
    print(
        f"compile_config: median {statistics.median(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms, "
        f"first {times[0] * 1000:.1f} ms ({args.runs} runs)"
    )

    dids = [n.e164 for n in inputs.numbers if n.route_kind == "dial_plan"]
    exts = [line.extension for line in inputs.lines]
    for label, targets in (
        ("DID -> plan (schedule, AA: first Play)", dids),
        ("extension -> line (first Ring)", exts),
    ):
        time_routes(config, targets, min(2000, args.calls))  # warm-up
        gc.collect()
        us = time_routes(config, targets, args.calls)
        print(
            f"route {label}: median {statistics.median(us):.1f} µs, p99 {pct(us, 0.99):.1f} µs, "
            f"max {max(us):.1f} µs ({args.calls} calls)"
        )


if __name__ == "__main__":
    main()
