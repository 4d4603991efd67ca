"""The compiler: every error kind names plan, node and field; all errors are collected; warnings;
routes for every destination kind; the compiled config is immutable and survives recompiles."""

from __future__ import annotations

import copy
import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from engine.dialplan.compiler import compile_config, keypad_key
from engine.dialplan.errors import CompileIssue, PlanCompileError
from engine.dialplan.plan import LineVoicemailOp, QueueOp, RingGroupOp, VoicemailOp
from engine.model.entities import Line, PhoneNumber

from .helpers import BASE_OBJECTS, LINES, compile_errors, compile_ok, inputs, main_graph, paths


def with_node(node_id: str, node: dict[str, Any], graph: dict[str, Any] | None = None) -> dict[str, Any]:
    graph = copy.deepcopy(graph or main_graph())
    graph["nodes"][node_id] = node
    return graph


def objects(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE_OBJECTS)
    out.update(changes)
    return out


def error_at(result: Any, path: str) -> CompileIssue:
    for e in result.errors:
        if e.path == path:
            return e  # type: ignore[no-any-return]
    raise AssertionError(f"no error at {path}; got {[str(e) for e in result.errors]}")


# -- the example compiles; routes --------------------------------------------------------------------


def test_main_plan_compiles_without_warnings() -> None:
    result = compile_config(inputs())
    assert result.errors == ()
    assert result.ok
    # the example's menu has option 2 and extension dialling: extensions 2xx cannot be dialled there
    assert [w.path for w in result.warnings] == ['dial_plans[main].nodes.menu.options["2"]']


def test_routes_cover_every_destination_kind() -> None:
    config = compile_ok()
    expected = {
        "+493023125100": ("dial_plan", "main"),
        "500": ("dial_plan", "main"),
        "201": ("line", "201"),
        "300": ("ring_group", "sales"),
        "400": ("queue", "hotline"),
        "401": ("conference_room", "board"),
        "402": ("fax_line", "fax"),
        "800": ("mailbox", "office"),
    }
    for key, (kind, name) in expected.items():
        entry = config.route(key)
        assert entry is not None, key
        assert (entry.kind, entry.name) == (kind, name)
    assert config.route("999") is None
    assert config.route("+493023125199") is None
    assert config.nodes[config.plans["main"]].id == "office_hours"
    line = config.route("203")
    assert line is not None and config.nodes[line.node].op == LineVoicemailOp("203", 20.0)
    queue = config.route("400")
    assert queue is not None and isinstance(config.nodes[queue.node].op, QueueOp)
    box = config.route("800")
    assert box is not None and config.nodes[box.node].op == VoicemailOp("800", "unavailable")


def test_number_routes_of_every_kind_and_number_following() -> None:
    numbers = (
        PhoneNumber("+493023125100", "dial_plan", "main"),
        PhoneNumber("+493023125201", "extension", "201"),
        PhoneNumber("+493023125300", "ring_group", "support"),
        PhoneNumber("+493023125400", "queue", "hotline"),
        PhoneNumber("+493023125401", "conference_room", "board"),
        PhoneNumber("+493023125402", "fax_line", "fax"),
        PhoneNumber("+493023125800", "mailbox", "office"),
        PhoneNumber("+493023125801", "mailbox", "800"),
        PhoneNumber("+493023125900", "number", "+493023125901"),
        PhoneNumber("+493023125901", "number", "+493023125100"),
    )
    config = compile_ok(numbers=numbers)
    kinds = {n.e164: config.route(n.e164) for n in numbers}
    assert all(e is not None for e in kinds.values())
    assert [(e.kind, e.name) for e in kinds.values() if e is not None][:8] == [
        ("dial_plan", "main"),
        ("line", "201"),
        ("ring_group", "support"),
        ("queue", "hotline"),
        ("conference_room", "board"),
        ("fax_line", "fax"),
        ("mailbox", "office"),
        ("mailbox", "office"),
    ]
    followed = config.route("+493023125900")
    assert followed is not None
    assert (followed.kind, followed.name) == ("dial_plan", "main")
    assert followed.via == ("+493023125900", "+493023125901")
    assert followed.node == config.plans["main"]
    support = config.route("+493023125300")
    assert support is not None and isinstance(config.nodes[support.node].op, RingGroupOp)


# -- immutability -------------------------------------------------------------------------------------


def test_config_is_immutable_and_old_snapshot_survives_recompile() -> None:
    config = compile_ok()
    assert isinstance(config.routes, MappingProxyType)
    assert isinstance(config.nodes, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.routes = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.routes["999"] = config.routes["201"]  # type: ignore[index]
    node = config.nodes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.op = node.op  # type: ignore[misc]
    menu = next(n for n in config.nodes if n.id == "menu")
    with pytest.raises(TypeError):
        menu.op.options["9"] = 0  # type: ignore[union-attr,index]

    before_routes = dict(config.routes)
    before_nodes = config.nodes
    graph = main_graph()
    graph["nodes"]["menu"]["options"]["3"] = "operator"
    graph["extension"] = "501"
    newer = compile_ok(plans={"main": graph}, numbers=(PhoneNumber("+493023125100", "extension", "202"),))
    assert newer.route("501") is not None and newer.route("500") is None
    assert dict(config.routes) == before_routes
    assert config.nodes is before_nodes
    assert config.route("500") is not None
    entry = config.route("+493023125100")
    assert entry is not None and entry.kind == "dial_plan"


def test_unwrap_raises_with_every_issue() -> None:
    result = compile_config(inputs(plans={"main": with_node("menu", {"type": "nope"})}))
    with pytest.raises(PlanCompileError) as info:
        result.unwrap()
    assert info.value.issues == result.errors
    assert "dial_plans[main].nodes.menu.type" in str(info.value)
    assert compile_config(inputs()).unwrap().route("500") is not None


# -- error kinds --------------------------------------------------------------------------------------

MISSING_REFERENCES = [
    ("operator", {"type": "line_voicemail", "line": "999"}, "line", "no line with extension '999'"),
    (
        "sales",
        {"type": "ring_group", "ring_group": "nobody", "next": {"no_answer": "mailbox"}},
        "ring_group",
        "no ring group named 'nobody'",
    ),
    (
        "closed",
        {"type": "play_clip", "clip": "gone", "next": {"next": "mailbox"}},
        "clip",
        "no sound clip named 'gone'",
    ),
    (
        "office_hours",
        {"type": "schedule", "schedule": "never", "next": {"open": "menu", "closed": "closed"}},
        "schedule",
        "no schedule named 'never'",
    ),
    ("mailbox", {"type": "voicemail", "mailbox": "attic"}, "mailbox", "no line extension or shared mailbox"),
    ("mailbox", {"type": "goto_plan", "plan": "elsewhere"}, "plan", "no dial plan named 'elsewhere'"),
    ("mailbox", {"type": "queue", "queue": "q", "next": {"exit": "menu"}}, "queue", "no queue named 'q'"),
    ("mailbox", {"type": "conference", "room": "r"}, "room", "no conference room named 'r'"),
    ("mailbox", {"type": "receive_fax", "fax_line": "f"}, "fax_line", "no fax line named 'f'"),
    (
        "sales",
        {"type": "simple_dial", "line": "999", "next": {"no_answer": "mailbox"}},
        "line",
        "no line with extension",
    ),
]


@pytest.mark.parametrize(("node_id", "node", "field", "text"), MISSING_REFERENCES)
def test_missing_references(node_id: str, node: dict[str, Any], field: str, text: str) -> None:
    result = compile_errors(plans={"main": with_node(node_id, node)})
    error = error_at(result, f"dial_plans[main].nodes.{node_id}.{field}")
    assert (error.plan, error.node, error.field) == ("main", node_id, field)
    assert text in error.message


def test_missing_option_target_path_quotes_the_digits() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["options"]["3"] = "nowhere"
    error = error_at(compile_errors(plans={"main": graph}), 'dial_plans[main].nodes.menu.options["3"]')
    assert "no node 'nowhere'" in error.message


def test_unconnected_and_unknown_outputs() -> None:
    graph = main_graph()
    del graph["nodes"]["office_hours"]["next"]["closed"]
    graph["nodes"]["sales"]["next"] = {"no_answer": "mailbox", "busy": "mailbox"}
    graph["nodes"]["mailbox"]["next"] = {"next": "menu"}
    graph["nodes"]["closed"]["next"] = {"next": "ghost"}
    result = compile_errors(plans={"main": graph})
    assert "not connected" in error_at(result, "dial_plans[main].nodes.office_hours.next.closed").message
    assert "unknown output" in error_at(result, "dial_plans[main].nodes.sales.next.busy").message
    assert "ends the call" in error_at(result, "dial_plans[main].nodes.mailbox.next.next").message
    assert "no node 'ghost'" in error_at(result, "dial_plans[main].nodes.closed.next.next").message


def test_unknown_type_and_fields() -> None:
    graph = with_node("x", {"type": "teleport", "next": {}})
    graph["nodes"]["menu"]["colour"] = "red"
    graph["nodes"]["closed"]["type"] = None
    result = compile_errors(plans={"main": graph})
    assert "unknown node type 'teleport'" in error_at(result, "dial_plans[main].nodes.x.type").message
    assert (
        "unknown field for auto_attendant" in error_at(result, "dial_plans[main].nodes.menu.colour").message
    )
    assert "unknown node type None" in error_at(result, "dial_plans[main].nodes.closed.type").message


def test_required_fields() -> None:
    graph = with_node("operator", {"type": "line_voicemail"})
    assert (
        "is required"
        in error_at(compile_errors(plans={"main": graph}), "dial_plans[main].nodes.operator.line").message
    )


BAD_VALUES = [
    ("menu", {"options": {"1a": "sales"}}, 'options["1a"]', "1-8 keys"),
    ("menu", {"allow_extension_dialling": "yes"}, "allow_extension_dialling", "true or false"),
    ("menu", {"retries": 99}, "retries", "0 to 9"),
    ("menu", {"retries": True}, "retries", "0 to 9"),
    ("menu", {"timeout_seconds": 0}, "timeout_seconds", "seconds from 1"),
    ("menu", {"options": {}, "allow_extension_dialling": False}, "options", "needs options"),
    ("x", {"type": "password", "pin": "12ab", "next": {"ok": "menu", "fail": "mailbox"}}, "pin", "digits"),
    ("x", {"type": "password", "pin": 1234, "next": {"ok": "menu", "fail": "mailbox"}}, "pin", "digits"),
    (
        "x",
        {"type": "external_number", "number": "030123456", "next": {"no_answer": "mailbox"}},
        "number",
        "E.164",
    ),
    ("x", {"type": "set_language", "language": "fr", "next": {"next": "menu"}}, "language", "en, de"),
    ("x", {"type": "hangup", "status": 200}, "status", "one of 404"),
    ("x", {"type": "modify_caller_id", "prefix": "", "next": {"next": "menu"}}, "prefix", "printable"),
    ("x", {"type": "voicemail", "mailbox": "201", "reason": "holiday"}, "reason", "unavailable or busy"),
    (
        "x",
        {"type": "simple_dial", "line": "201", "ring_group": "sales", "next": {"no_answer": "menu"}},
        "line",
        "exactly one",
    ),
    (
        "x",
        {"type": "play_clip", "clip": "closed", "barge_in": 1, "next": {"next": "menu"}},
        "barge_in",
        "true or false",
    ),
    ("x", {"type": "line_voicemail", "line": "201", "ring_seconds": -5}, "ring_seconds", "seconds"),
    ("x", {"type": "dial_by_name", "tries": 0, "next": {"no_match": "menu"}}, "tries", "1 to 9"),
]


@pytest.mark.parametrize(("node_id", "fields", "field", "text"), BAD_VALUES)
def test_bad_values(node_id: str, fields: dict[str, Any], field: str, text: str) -> None:
    graph = main_graph()
    if node_id == "x":
        graph["nodes"]["x"] = fields
        graph["nodes"]["closed"]["next"] = {"next": "x"}  # keep it reachable
    else:
        graph["nodes"][node_id].update(fields)
    result = compile_errors(plans={"main": graph})
    assert text in error_at(result, f"dial_plans[main].nodes.{node_id}.{field}").message


@pytest.mark.parametrize(
    ("ring_group", "path", "text"),
    [
        ({"strategy": "random"}, "ring_groups[g].strategy", "ring_all, sequential or round_robin"),
        ({"members": []}, "ring_groups[g].members", "non-empty"),
        ({"members": [{"line": "999"}]}, "ring_groups[g].members[0].line", "no line has extension '999'"),
        ({"members": [{"number": "0301234"}]}, "ring_groups[g].members[0].number", "E.164"),
        ({"members": [{"line": "201", "number": "+4930123456"}]}, "ring_groups[g].members[0]", "exactly one"),
        ({"members": [{"line": "201"}, {"line": "201"}]}, "ring_groups[g].members[1]", "member twice"),
        ({"members": ["201"]}, "ring_groups[g].members[0]", "{line: EXTENSION}"),
        ({"ring_seconds": "long"}, "ring_groups[g].ring_seconds", "seconds"),
        ({"extension": "2x"}, "ring_groups[g].extension", "2-8 digits"),
        ({"volume": 11}, "ring_groups[g].volume", "unknown field"),
    ],
)
def test_ring_group_errors(ring_group: dict[str, Any], path: str, text: str) -> None:
    group = {"name": "g", "members": [{"line": "201"}], **ring_group}
    objs = objects(ring_groups=[*BASE_OBJECTS["ring_groups"], group])
    assert text in error_at(compile_errors(objects=objs), path).message


def test_object_errors() -> None:
    objs = objects(
        sound_clips=[
            {"name": "a", "file": ""},
            {"file": "/x.wav"},
            {"name": "main-menu", "file": "/m.wav"},
            {"name": "main-menu", "file": "/m2.wav"},
            {"name": "closed", "file": "/c.wav"},
        ],
        mailboxes=[{"name": "office", "number": "eight"}],
        queues=[{"name": "q", "size": 3}],
        parking_lots=[{"name": "p"}],
    )
    result = compile_errors(objects=objs)
    assert "is required" in error_at(result, "sound_clips[a].file").message
    assert "is required" in error_at(result, "sound_clips[1].name").message
    assert "defined twice" in error_at(result, "sound_clips[main-menu].name").message
    assert "2-8 digits" in error_at(result, "mailboxes[office].number").message
    assert "unknown field" in error_at(result, "queues[q].size").message
    assert "unknown kind" in error_at(result, "parking_lots").message
    # the plan's reference to the broken mailbox is reported too
    assert error_at(result, "dial_plans[main].nodes.mailbox.mailbox")


def test_duplicate_extensions_across_kinds() -> None:
    objs = objects(
        ring_groups=[
            {"name": "sales", "extension": "201", "members": [{"line": "202"}]},
            {"name": "support", "members": [{"line": "204"}]},
        ],
        queues=[{"name": "hotline", "extension": "500"}],
        conference_rooms=[{"name": "board", "extension": "800"}],
        fax_lines=[{"name": "fax", "extension": "300"}],
        mailboxes=[{"name": "office", "number": "300"}],
    )
    result = compile_errors(objects=objs)
    assert "already used by line 201" in error_at(result, "ring_groups[sales].extension").message
    assert "already used by mailbox 'office'" in error_at(result, "fax_lines[fax].extension").message
    assert "already used by queue 'hotline'" in error_at(result, "dial_plans[main].extension").message
    lines = (*LINES, Line(99, 1, "201", "dup", None, "x", "y"))
    assert "already used by line 201" in error_at(compile_errors(lines=lines), "lines[201].extension").message


def test_plan_level_errors() -> None:
    result = compile_errors(
        plans={
            "main": main_graph(),
            "nostart": {"start": "ghost", "nodes": {"a": {"type": "hangup"}}},
            "empty": {"start": "a", "nodes": {}},
            "odd": {"start": "a", "nodes": {"a": {"type": "hangup"}}, "owner": "me"},
            "bad": {"start": "a", "nodes": {"a": "hangup"}},
        }
    )
    assert "no node 'ghost'" in error_at(result, "dial_plans[nostart].start").message
    assert "non-empty mapping" in error_at(result, "dial_plans[empty].nodes").message
    assert "unknown field" in error_at(result, "dial_plans[odd].owner").message
    assert "must be a mapping" in error_at(result, "dial_plans[bad].nodes.a").message


def test_duplicate_plan_names() -> None:
    from engine.model.entities import DialPlan

    base = inputs()
    doubled = dataclasses.replace(base, dial_plans=(*base.dial_plans, DialPlan(9, "main", main_graph())))
    result = compile_config(doubled)
    assert "defined twice" in error_at(result, "dial_plans[main].name").message


def test_number_errors_and_loops() -> None:
    numbers = (
        PhoneNumber("+493023125100", "dial_plan", "main"),
        PhoneNumber("+493023125101", "number", "+493023125102"),
        PhoneNumber("+493023125102", "number", "+493023125103"),
        PhoneNumber("+493023125103", "number", "+493023125101"),
        PhoneNumber("+493023125104", "number", "+493023125199"),
        PhoneNumber("+493023125105", "teleport", "x"),
        PhoneNumber("+493023125106", "extension", "999"),
        PhoneNumber("+493023125107", "dial_plan", "other"),
        PhoneNumber("+493023125108", "ring_group", "nobody"),
        PhoneNumber("+493023125109", "number", "+493023125109"),
        PhoneNumber("0301234", "extension", "201"),
        PhoneNumber("+493023125100", "extension", "201"),
    )
    result = compile_errors(numbers=numbers)
    loop = error_at(result, "numbers[+493023125101].route_target")
    assert (
        "number routing loop: +493023125101 -> +493023125102 -> +493023125103 -> +493023125101"
        in loop.message
    )
    assert sum("routing loop" in e.message for e in result.errors) == 2  # the 3-loop once, the self-loop once
    assert "routing loop" in error_at(result, "numbers[+493023125109].route_target").message
    assert "no number '+493023125199'" in error_at(result, "numbers[+493023125104].route_target").message
    assert "unknown route kind 'teleport'" in error_at(result, "numbers[+493023125105].route_kind").message
    assert "no line with extension '999'" in error_at(result, "numbers[+493023125106].route_target").message
    assert "no dial plan 'other'" in error_at(result, "numbers[+493023125107].route_target").message
    assert "no ring group 'nobody'" in error_at(result, "numbers[+493023125108].route_target").message
    assert "E.164" in error_at(result, "numbers[0301234]").message
    assert "listed twice" in error_at(result, "numbers[+493023125100]").message


def test_loop_without_waiting_is_an_error_but_a_menu_loop_is_not() -> None:
    graph = main_graph()
    graph["nodes"]["closed"]["next"] = {"next": "again"}
    graph["nodes"]["again"] = {"type": "set_language", "language": "en", "next": {"next": "closed"}}
    error = error_at(compile_errors(plans={"main": graph}), "dial_plans[main].nodes.closed.next")
    assert "never waits" in error.message
    assert "main/closed -> main/again" in error.message

    menu_loop = main_graph()
    menu_loop["nodes"]["menu"]["options"]["9"] = "replay"
    menu_loop["nodes"]["replay"] = {"type": "play_clip", "clip": "closed", "next": {"next": "menu"}}
    compile_ok(plans={"main": menu_loop})


def test_self_loop_and_schedule_loop() -> None:
    graph = main_graph()
    graph["nodes"]["closed"]["next"] = {"next": "closed"}
    assert (
        "never waits"
        in error_at(compile_errors(plans={"main": graph}), "dial_plans[main].nodes.closed.next").message
    )
    graph = main_graph()
    graph["nodes"]["office_hours"]["next"] = {"open": "office_hours", "closed": "closed"}
    assert error_at(compile_errors(plans={"main": graph}), "dial_plans[main].nodes.office_hours.next")


def test_goto_plan_cycle_across_plans() -> None:
    a = {"start": "go", "nodes": {"go": {"type": "goto_plan", "plan": "b"}}}
    b = {
        "start": "lang",
        "nodes": {
            "lang": {"type": "set_language", "language": "de", "next": {"next": "go"}},
            "go": {"type": "goto_plan", "plan": "a"},
        },
    }
    result = compile_errors(plans={"main": main_graph(), "a": a, "b": b})
    cycles = [e for e in result.errors if "goto_plan cycle" in e.message]
    assert len(cycles) == 1
    assert cycles[0].plan == "a" and cycles[0].node == "go"
    assert "a/go" in cycles[0].message and "b/lang" in cycles[0].message and "b/go" in cycles[0].message


def test_goto_plan_cycle_through_a_menu_is_fine() -> None:
    a = {
        "start": "menu",
        "nodes": {
            "menu": {
                "type": "auto_attendant",
                "clip": "main-menu",
                "options": {"1": "go"},
                "next": {"timeout": "go", "invalid": "go"},
            },
            "go": {"type": "goto_plan", "plan": "b"},
        },
    }
    b = {"start": "go", "nodes": {"go": {"type": "goto_plan", "plan": "a"}}}
    compile_ok(plans={"main": main_graph(), "a": a, "b": b})


def test_unreachable_nodes_are_warnings() -> None:
    graph = with_node("orphan", {"type": "hangup"})
    result = compile_config(inputs(plans={"main": graph}))
    assert result.ok
    unreachable = [w for w in result.warnings if "unreachable" in w.message]
    assert [w.path for w in unreachable] == ["dial_plans[main].nodes.orphan"]


def test_option_shadowing_an_extension_is_a_warning() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["options"]["2"] = "support"  # extensions 201-206 start with 2
    graph["nodes"]["menu"]["options"]["800"] = "support"  # the shared mailbox's number
    result = compile_config(inputs(plans={"main": graph}))
    assert result.ok
    texts = {w.path: w.message for w in result.warnings}
    assert "extensions starting with 2" in texts['dial_plans[main].nodes.menu.options["2"]']
    assert "also extension 800" in texts['dial_plans[main].nodes.menu.options["800"]']


def test_all_errors_are_collected_at_once() -> None:
    graph = main_graph()
    graph["nodes"]["operator"]["line"] = "999"
    graph["nodes"]["closed"]["clip"] = "gone"
    del graph["nodes"]["sales"]["next"]
    objs = objects(schedules=[{"name": "office", "timezone": "Bad/Zone", "open": []}])
    result = compile_errors(
        plans={"main": graph}, objects=objs, numbers=(PhoneNumber("+493023125100", "x", "y"),)
    )
    assert set(paths(result)) >= {
        "dial_plans[main].nodes.operator.line",
        "dial_plans[main].nodes.closed.clip",
        "dial_plans[main].nodes.sales.next.no_answer",
        "schedules[office].timezone",
        "dial_plans[main].nodes.office_hours.schedule",
        "numbers[+493023125100].route_kind",
    }


def test_bad_company_zone_is_an_error() -> None:
    from engine.model.entities import Company

    result = compile_errors(company=Company(name="x", timezone="Nope/Nope"))
    assert error_at(result, "company.timezone")


def test_keypad_keys() -> None:
    assert keypad_key("Schmidt") == "724"
    assert keypad_key("Müller") == "685"
    assert keypad_key("Y\u0131lmaz") == "945"
    assert keypad_key("Groß") == "476"
    assert keypad_key("O'Neil") == "663"
    assert keypad_key("Li") == "54"
    assert keypad_key("---") == ""


def test_default_language_from_country_or_input() -> None:
    from engine.model.entities import Company

    assert compile_ok().default_language == "de"
    assert (
        compile_ok(company=Company(name="x", timezone="America/New_York", country="US")).default_language
        == "en"
    )
    explicit = dataclasses.replace(inputs(), default_language="en")
    config = compile_config(explicit).config
    assert config is not None and config.default_language == "en"
