"""The evaluator: every node type, the auto attendant's digit handling, ring strategies and round-robin
memory, plan nesting, number following, the no-wait guard and misuse of the API."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest

from engine.dialplan.compiler import compile_config
from engine.dialplan.errors import PlanUsageError
from engine.dialplan.evaluate import (
    PROMPT_KEYS,
    CallFacts,
    DetectFax,
    Done,
    Enqueue,
    FaxDetected,
    FaxResult,
    JoinConference,
    LeaveVoicemail,
    PlanRun,
    ReceiveFax,
    Ring,
    RingResult,
    RingState,
    RingTarget,
)
from engine.dialplan.plan import CompiledConfig, FaxLine, ReceiveFaxOp
from engine.model.entities import PhoneNumber
from engine.script import (
    Answer,
    Answered,
    Collect,
    Collected,
    File,
    Hangup,
    HungUp,
    Play,
    Played,
    Sound,
)

from .helpers import BASE_OBJECTS, CLOSED_TIME, OPEN_TIME, compile_ok, drive, inputs, main_graph, start_run

DID = "+493023125100"
MENU = Play((File("/data/clips/main-menu.wav"),), barge_in=True)
FIRST = Collect(max_digits=1, first_timeout_s=5.0, inter_digit_timeout_s=3.0)
NEXT = Collect(max_digits=1, first_timeout_s=3.0, inter_digit_timeout_s=3.0)
NO_ANSWER = RingResult(answered=False)
ANSWERED = RingResult(answered=True)


def line(ext: str) -> RingTarget:
    return RingTarget("line", ext)


def digit(d: str) -> Collected:
    return Collected(d, "max")


TIMEOUT = Collected("", "timeout")


def plan(nodes: dict[str, Any], start: str = "a", **graph: Any) -> dict[str, Any]:
    return {"start": start, "nodes": nodes, **graph}


def config_with(
    extra_plans: dict[str, dict[str, Any]] | None = None, main: dict[str, Any] | None = None, **kwargs: Any
) -> CompiledConfig:
    plans = {"main": main or main_graph(), **(extra_plans or {})}
    numbers = kwargs.pop(
        "numbers",
        tuple(PhoneNumber(f"+49302312520{i}", "dial_plan", name) for i, name in enumerate(plans)),
    )
    return compile_ok(plans=plans, numbers=(PhoneNumber(DID, "dial_plan", "main"), *numbers), **kwargs)


def run_plan(config: CompiledConfig, name: str, now: datetime = OPEN_TIME) -> tuple[PlanRun, Any]:
    names = list(config.plans)
    return start_run(config, f"+49302312520{names.index(name)}", now=now)


def to_menu(config: CompiledConfig | None = None) -> PlanRun:
    """A run of the main plan in open hours, waiting in the menu's first Collect."""
    run, first = start_run(config or compile_ok(), DID)
    assert drive(run, first, [Answered(), Played()]) == [Answer(), MENU, FIRST]
    return run


# -- the example company -------------------------------------------------------------------------------


def test_open_hours_press_1_rings_sales_and_is_bridged() -> None:
    run = to_menu()
    assert run.resume(digit("1"), OPEN_TIME) == Ring((line("202"), line("203")), 60.0)
    assert run.resume(ANSWERED, OPEN_TIME) == Done()
    assert run.path == ("main/office_hours:open", "main/menu:1", "main/sales:answered")
    assert run.finished


def test_closed_hours_play_the_closed_clip_then_the_shared_mailbox() -> None:
    run, first = start_run(compile_ok(), DID, now=CLOSED_TIME)
    actions = drive(run, first, [Answered(), Played()], now=CLOSED_TIME)
    assert actions == [
        Answer(),
        Play((File("/data/clips/closed.wav"),), barge_in=False),
        LeaveVoicemail("800", "unavailable"),
    ]
    assert run.path == ("main/office_hours:closed", "main/closed:next", "main/mailbox:voicemail")


def test_ring_group_no_answer_goes_to_the_next_node() -> None:
    run = to_menu()
    run.resume(digit("1"), OPEN_TIME)
    assert run.resume(NO_ANSWER, OPEN_TIME) == LeaveVoicemail("800", "unavailable")
    assert run.path[-2:] == ("main/sales:no_answer", "main/mailbox:voicemail")


def test_operator_line_voicemail_busy_and_unavailable() -> None:
    run = to_menu()
    assert run.resume(digit("0"), OPEN_TIME) == Ring((line("201"),), 20.0)
    assert run.resume(RingResult(answered=False, busy=True), OPEN_TIME) == LeaveVoicemail("201", "busy")
    run = to_menu()
    run.resume(digit("0"), OPEN_TIME)
    assert run.resume(NO_ANSWER, OPEN_TIME) == LeaveVoicemail("201", "unavailable")
    assert run.path[-1] == "main/operator:voicemail"


# -- auto attendant ------------------------------------------------------------------------------------


def test_type_ahead_uses_buffered_digits_without_flushing() -> None:
    # the caller pressed 1 during the prompt: Play is interrupted, the Collect reads the buffer first
    run, first = start_run(compile_ok(), DID)
    actions = drive(run, first, [Answered(), Played(interrupted=True)])
    assert actions[1].barge_in is True  # type: ignore[union-attr]
    assert actions[2] == FIRST and not FIRST.flush
    assert run.resume(digit("1"), OPEN_TIME) == Ring((line("202"), line("203")), 60.0)


def test_invalid_digit_plays_invalid_option_and_retries_then_takes_the_invalid_output() -> None:
    run = to_menu()
    invalid = Play((Sound("invalid-option"),), barge_in=False)
    for _ in range(2):  # retries: 2 (default)
        assert run.resume(digit("9"), OPEN_TIME) == invalid
        assert run.resume(Played(), OPEN_TIME) == MENU
        assert run.resume(Played(), OPEN_TIME) == FIRST
    assert run.resume(digit("9"), OPEN_TIME) == Ring((line("201"),), 20.0)  # invalid -> operator
    assert run.path == ("main/office_hours:open", "main/menu:invalid")


def test_timeout_replays_the_menu_then_takes_the_timeout_output() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["retries"] = 1
    graph["nodes"]["menu"]["next"]["timeout"] = "mailbox"
    run = to_menu(config_with(main=graph))
    assert run.resume(TIMEOUT, OPEN_TIME) == MENU  # no "invalid" prompt on a timeout
    assert run.resume(Played(), OPEN_TIME) == FIRST
    assert run.resume(TIMEOUT, OPEN_TIME) == LeaveVoicemail("800", "unavailable")
    assert run.path[-2] == "main/menu:timeout"


def test_a_good_option_after_an_invalid_one() -> None:
    run = to_menu()
    run.resume(digit("7"), OPEN_TIME)
    run.resume(Played(), OPEN_TIME)
    run.resume(Played(), OPEN_TIME)
    assert run.resume(digit("0"), OPEN_TIME) == Ring((line("201"),), 20.0)


def test_options_win_over_extensions_they_start() -> None:
    # option 2 acts at once although extensions 201-206 start with 2
    run = to_menu()
    assert run.resume(digit("2"), OPEN_TIME) == Ring((line("204"),), 15.0)


def test_extension_dialling_reaches_every_kind_of_extension() -> None:
    cases = {
        "300": Ring((line("202"), line("203")), 60.0),  # ring group sales by its extension
        "800": LeaveVoicemail("800", "unavailable"),  # the shared mailbox
        "400": Enqueue(compile_ok().queues["hotline"]),  # the queue (the caller is answered already)
        "401": JoinConference(compile_ok().rooms["board"], host=False),  # the room, which has no PIN
    }
    for ext, expected in cases.items():
        run = to_menu()
        assert run.resume(digit(ext[0]), OPEN_TIME) == NEXT
        assert run.resume(digit(ext[1]), OPEN_TIME) == NEXT
        assert run.resume(digit(ext[2]), OPEN_TIME) == expected, ext
        assert run.path[1] == f"main/menu:extension {ext}", run.path


def test_dialling_a_plan_extension_enters_that_plan() -> None:
    run = to_menu()
    for d in "50":
        assert run.resume(digit(d), OPEN_TIME) == NEXT
    assert run.resume(digit("0"), OPEN_TIME) == MENU  # plan main again: schedule -> menu (already answered)
    assert run.path == ("main/office_hours:open", "main/menu:extension 500", "main/office_hours:open")


def test_extension_dialling_without_a_match_is_invalid() -> None:
    run = to_menu()
    assert run.resume(digit("3"), OPEN_TIME) == NEXT
    assert run.resume(digit("9"), OPEN_TIME) == Play((Sound("invalid-option"),), barge_in=False)
    run = to_menu()
    run.resume(digit("3"), OPEN_TIME)
    assert run.resume(TIMEOUT, OPEN_TIME) == Play((Sound("invalid-option"),), barge_in=False)


def test_extension_dialling_off_ignores_extensions() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["allow_extension_dialling"] = False
    run = to_menu(config_with(main=graph))
    assert run.resume(digit("3"), OPEN_TIME) == Play((Sound("invalid-option"),), barge_in=False)


def test_multi_digit_options_and_a_prefix_option() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["options"] = {"1": "sales", "12": "support", "*9": "operator", "#": "mailbox"}
    config = config_with(main=graph)
    run = to_menu(config)
    assert run.resume(digit("1"), OPEN_TIME) == NEXT  # "1" could become "12"
    assert run.resume(TIMEOUT, OPEN_TIME) == Ring((line("202"), line("203")), 60.0)
    run = to_menu(config)
    run.resume(digit("1"), OPEN_TIME)
    assert run.resume(digit("2"), OPEN_TIME) == Ring((line("204"),), 15.0)
    run = to_menu(config)
    assert run.resume(digit("*"), OPEN_TIME) == NEXT
    assert run.resume(digit("9"), OPEN_TIME) == Ring((line("201"),), 20.0)
    run = to_menu(config)
    assert run.resume(digit("#"), OPEN_TIME) == LeaveVoicemail("800", "unavailable")
    assert "main/menu:#" in run.path


# -- ring strategies -----------------------------------------------------------------------------------


def test_round_robin_remembers_the_last_member_across_calls() -> None:
    state = RingState()
    config = compile_ok()
    first_targets = []
    for _ in range(4):
        run, first = start_run(config, DID, ring_state=state)
        drive(run, first, [Answered(), Played()])
        action = run.resume(digit("2"), OPEN_TIME)
        assert isinstance(action, Ring)
        first_targets.append(action.targets[0].value)
        assert run.resume(ANSWERED, OPEN_TIME) == Done()
    assert first_targets == ["204", "205", "+4915112345678", "204"]
    assert state.last("support") == "line:204"


def test_round_robin_walks_all_members_then_no_answer() -> None:
    state = RingState()
    state.remember("support", "line:205")
    run, first = start_run(compile_ok(), DID, ring_state=state)
    drive(run, first, [Answered(), Played()])
    t = OPEN_TIME
    assert run.resume(digit("2"), t) == Ring((RingTarget("external", "+4915112345678"),), 15.0)
    assert run.resume(NO_ANSWER, t + timedelta(seconds=15)) == Ring((line("204"),), 15.0)
    assert run.resume(NO_ANSWER, t + timedelta(seconds=30)) == Ring((line("205"),), 15.0)
    assert run.resume(NO_ANSWER, t + timedelta(seconds=45)) == LeaveVoicemail("800", "unavailable")
    assert state.last("support") == "line:205"


def test_round_robin_memory_survives_a_recompile_with_reordered_members() -> None:
    state = RingState()
    state.remember("support", "line:204")
    objects = copy.deepcopy(BASE_OBJECTS)
    objects["ring_groups"][1]["members"] = [{"line": "205"}, {"line": "204"}, {"line": "206"}]
    config = compile_ok(objects=objects)
    run, first = start_run(config, DID, ring_state=state)
    drive(run, first, [Answered(), Played()])
    assert run.resume(digit("2"), OPEN_TIME) == Ring((line("206"),), 15.0)


def test_sequential_rings_in_order_within_the_overall_budget() -> None:
    objects = copy.deepcopy(BASE_OBJECTS)
    objects["ring_groups"][1] = {
        "name": "support",
        "strategy": "sequential",
        "members": [{"line": "204"}, {"line": "205", "ring_seconds": 30}, {"line": "206"}],
        "member_ring_seconds": 20,
        "ring_seconds": 45,
    }
    config = compile_ok(objects=objects)
    run = to_menu(config)
    t = OPEN_TIME
    assert run.resume(digit("2"), t) == Ring((line("204"),), 20.0)
    # busy at once: the next member rings immediately, with its own ring time
    assert run.resume(RingResult(False, busy=True), t + timedelta(seconds=1)) == Ring((line("205"),), 30.0)
    # 31 s used: 14 s left for the third member
    assert run.resume(NO_ANSWER, t + timedelta(seconds=31)) == Ring((line("206"),), 14.0)
    assert run.resume(NO_ANSWER, t + timedelta(seconds=45)) == LeaveVoicemail("800", "unavailable")
    run = to_menu(config)
    run.resume(digit("2"), t)
    run.resume(NO_ANSWER, t + timedelta(seconds=20))
    assert run.resume(NO_ANSWER, t + timedelta(seconds=45)) == LeaveVoicemail(
        "800", "unavailable"
    )  # budget spent
    run = to_menu(config)
    run.resume(digit("2"), t)
    assert run.resume(ANSWERED, t + timedelta(seconds=3)) == Done()


# -- the other node types ------------------------------------------------------------------------------


def single(nodes: dict[str, Any], start: str = "a", **kwargs: Any) -> tuple[PlanRun, Any, CompiledConfig]:
    config = config_with({"p": plan(nodes, start)}, **kwargs)
    run, first = run_plan(config, "p")
    return run, first, config


def test_simple_dial_line_and_group() -> None:
    run, first, _ = single(
        {
            "a": {"type": "simple_dial", "line": "205", "ring_seconds": 12, "next": {"no_answer": "b"}},
            "b": {"type": "simple_dial", "ring_group": "sales", "next": {"no_answer": "c"}},
            "c": {"type": "hangup", "status": 486},
        }
    )
    assert first == Ring((line("205"),), 12.0)
    assert run.resume(RingResult(False, busy=True), OPEN_TIME) == Ring((line("202"), line("203")), 20.0)
    assert run.resume(NO_ANSWER, OPEN_TIME) == Hangup(486, "Busy Here")  # never answered: no goodbye
    assert run.path == ("p/a:no_answer", "p/b:no_answer", "p/c:hangup")
    run, first, _ = single(
        {"a": {"type": "simple_dial", "line": "205", "next": {"no_answer": "b"}}, "b": {"type": "hangup"}}
    )
    assert run.resume(ANSWERED, OPEN_TIME) == Done()


def test_external_number() -> None:
    run, first, _ = single(
        {
            "a": {
                "type": "external_number",
                "number": "+4989123456",
                "ring_seconds": 30,
                "next": {"no_answer": "b"},
            },
            "b": {"type": "voicemail", "mailbox": "202", "reason": "busy"},
        }
    )
    assert first == Ring((RingTarget("external", "+4989123456"),), 30.0)
    assert run.resume(NO_ANSWER, OPEN_TIME) == LeaveVoicemail("202", "busy")


def test_voicemail_by_shared_box_number() -> None:
    run, first, _ = single({"a": {"type": "voicemail", "mailbox": "800"}})
    assert first == LeaveVoicemail("800", "unavailable")
    assert run.finished


def test_play_clip_modify_caller_id_set_language_then_hangup_with_goodbye() -> None:
    run, first, config = single(
        {
            "a": {"type": "modify_caller_id", "prefix": "Sales: ", "next": {"next": "b"}},
            "b": {"type": "modify_caller_id", "prefix": "DE ", "next": {"next": "c"}},
            "c": {"type": "set_language", "language": "en", "next": {"next": "d"}},
            "d": {"type": "play_clip", "clip": "closed", "barge_in": True, "next": {"next": "e"}},
            "e": {"type": "hangup"},
        }
    )
    assert config.default_language == "de"
    assert first == Answer()
    assert run.caller_name_prefix == "DE Sales: "
    assert run.language == "en"
    assert run.resume(Answered(), OPEN_TIME) == Play((File("/data/clips/closed.wav"),), barge_in=True)
    assert run.resume(Played(), OPEN_TIME) == Play((Sound("goodbye"),), barge_in=False)
    assert run.resume(Played(), OPEN_TIME) == Hangup(480, "Temporarily Unavailable")
    assert run.path == ("p/a:next", "p/b:next", "p/c:next", "p/d:next", "p/e:hangup")


def test_language_default_can_be_given_per_run() -> None:
    config = compile_ok()
    entry = config.route(DID)
    assert entry is not None
    run = PlanRun(config, entry, CallFacts("+4917600000001", None, DID), RingState(), language="en")
    assert run.language == "en"


PASSWORD_NODES = {
    "a": {"type": "password", "pin": "4711", "next": {"ok": "b", "fail": "c"}},
    "b": {"type": "voicemail", "mailbox": "201"},
    "c": {"type": "hangup", "status": 603},
}
ENTER = Play((Sound("enter-password"),), barge_in=True)
PIN = Collect(max_digits=16, terminators="#", first_timeout_s=10.0, inter_digit_timeout_s=5.0)


def test_password_ok_on_second_try() -> None:
    run, first, _ = single(PASSWORD_NODES)
    assert drive(run, first, [Answered(), Played()]) == [Answer(), ENTER, PIN]
    assert run.resume(Collected("1234", "terminator", "#"), OPEN_TIME) == Play(
        (Sound("password-wrong"),), barge_in=False
    )
    assert run.resume(Played(), OPEN_TIME) == ENTER
    assert run.resume(Played(), OPEN_TIME) == PIN
    assert run.resume(Collected("4711", "terminator", "#"), OPEN_TIME) == LeaveVoicemail("201", "unavailable")
    assert run.path == ("p/a:ok", "p/b:voicemail")


def test_password_fails_after_three_tries() -> None:
    run, first, _ = single(PASSWORD_NODES)
    drive(run, first, [Answered(), Played()])
    for _ in range(2):
        run.resume(Collected("", "timeout"), OPEN_TIME)
        run.resume(Played(), OPEN_TIME)
        run.resume(Played(), OPEN_TIME)
    assert run.resume(Collected("47111", "max"), OPEN_TIME) == Play((Sound("goodbye"),), barge_in=False)
    assert run.resume(Played(), OPEN_TIME) == Hangup(603, "Decline")
    assert run.path == ("p/a:fail", "p/c:hangup")


def test_goto_plan_nesting() -> None:
    config = config_with(
        {
            "p": plan({"a": {"type": "goto_plan", "plan": "q"}}),
            "q": plan(
                {
                    "x": {"type": "set_language", "language": "en", "next": {"next": "y"}},
                    "y": {"type": "goto_plan", "plan": "r"},
                },
                start="x",
            ),
            "r": plan({"z": {"type": "line_voicemail", "line": "203"}}, start="z"),
        }
    )
    run, first = run_plan(config, "p")
    assert first == Ring((line("203"),), 20.0)
    assert run.path == ("p/a:q", "q/x:next", "q/y:r")
    assert run.language == "en"


DIAL_BY_NAME = {
    "a": {"type": "dial_by_name", "next": {"no_match": "b"}},
    "b": {"type": "hangup"},
}
INSTRUCTIONS = Play((Sound("dial-by-name-instructions"),), barge_in=True)
NAME = Collect(max_digits=3, first_timeout_s=5.0, inter_digit_timeout_s=3.0)


def test_dial_by_name_one_match_rings_the_line_then_its_voicemail() -> None:
    run, first, _ = single(DIAL_BY_NAME)
    assert drive(run, first, [Answered(), Played()]) == [Answer(), INSTRUCTIONS, NAME]
    assert run.resume(Collected("945", "max"), OPEN_TIME) == Ring((line("204"),), 20.0)  # Yilmaz (dotless i)
    assert run.resume(NO_ANSWER, OPEN_TIME) == LeaveVoicemail("204", "unavailable")
    run, first, _ = single(DIAL_BY_NAME)
    drive(run, first, [Answered(), Played()])
    assert run.resume(Collected("685", "max"), OPEN_TIME) == Ring((line("205"),), 20.0)  # Müller


def test_dial_by_name_several_matches_offers_a_choice() -> None:
    run, first, _ = single(DIAL_BY_NAME)
    drive(run, first, [Answered(), Played()])
    choice = run.resume(Collected("724", "max"), OPEN_TIME)  # Schmidt (201) and Schneider (206)
    assert isinstance(choice, Play)
    assert choice.items == (
        Sound("dial-by-name-for-extension"),
        Sound("digit-2"),
        Sound("digit-0"),
        Sound("digit-1"),
        Sound("dial-by-name-press"),
        Sound("digit-1"),
        Sound("dial-by-name-for-extension"),
        Sound("digit-2"),
        Sound("digit-0"),
        Sound("digit-6"),
        Sound("dial-by-name-press"),
        Sound("digit-2"),
    )
    assert run.resume(Played(), OPEN_TIME) == Collect(
        max_digits=1, first_timeout_s=5.0, inter_digit_timeout_s=3.0
    )
    assert run.resume(digit("2"), OPEN_TIME) == Ring((line("206"),), 20.0)
    assert run.resume(ANSWERED, OPEN_TIME) == Done()


def test_dial_by_name_no_match_retries_then_takes_no_match() -> None:
    run, first, _ = single(DIAL_BY_NAME)
    drive(run, first, [Answered(), Played()])
    for _ in range(2):
        assert run.resume(Collected("999", "max"), OPEN_TIME) == Play((Sound("no-match"),), barge_in=False)
        assert run.resume(Played(), OPEN_TIME) == INSTRUCTIONS
        assert run.resume(Played(), OPEN_TIME) == NAME
    assert run.resume(TIMEOUT, OPEN_TIME) == Play((Sound("goodbye"),), barge_in=False)
    assert run.path == ("p/a:no_match",)


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (FaxResult(True, 2, "OK"), "p/a:received 2 pages"),
        (FaxResult(False, 1, "dropped"), "p/a:failed 1 pages"),
    ],
)
def test_receive_fax_answers_receives_for_the_line_and_hangs_up(result: FaxResult, label: str) -> None:
    run, first, config = single({"a": {"type": "receive_fax", "fax_line": "fax"}})
    actions = drive(run, first, [Answered(), result])
    assert actions == [Answer(), ReceiveFax(FaxLine("fax")), Hangup(200, "OK")]
    assert config.nodes[config.routes["402"].node].op == ReceiveFaxOp(FaxLine("fax"))  # its extension
    assert run.path == (label,)


@pytest.mark.parametrize(("fax", "label"), [(False, "p/a:voice"), (True, "p/a:fax")])
def test_detect_fax_answers_listens_and_takes_the_output_it_heard(fax: bool, label: str) -> None:
    run, first, _ = single(
        {
            "a": {"type": "detect_fax", "seconds": 6, "next": {"voice": "b", "fax": "c"}},
            "b": {"type": "line_voicemail", "line": "201"},
            "c": {"type": "receive_fax", "fax_line": "fax"},
        }
    )
    assert first == Answer()
    assert run.resume(Answered(), OPEN_TIME) == DetectFax(6.0)
    after = run.resume(FaxDetected(fax), OPEN_TIME)
    assert after == (ReceiveFax(FaxLine("fax")) if fax else Ring((line("201"),), 20.0))
    assert run.path == (label,)


# -- entries that are not plans -----------------------------------------------------------------------


def test_calling_a_line_extension_rings_it_then_voicemail() -> None:
    run, first = start_run(compile_ok(), "203")
    assert first == Ring((line("203"),), 20.0)
    assert run.resume(ANSWERED, OPEN_TIME) == Done()
    run, first = start_run(compile_ok(), "203")
    assert run.resume(RingResult(False, busy=True), OPEN_TIME) == LeaveVoicemail("203", "busy")


def test_calling_a_ring_group_extension_hangs_up_after_no_answer() -> None:
    run, first = start_run(compile_ok(), "300")
    assert first == Ring((line("202"), line("203")), 60.0)
    assert run.resume(NO_ANSWER, OPEN_TIME) == Hangup(480, "Temporarily Unavailable")


def test_number_to_number_routing_is_followed() -> None:
    numbers = (
        PhoneNumber(DID, "dial_plan", "main"),
        PhoneNumber("+493023125900", "number", DID),
        PhoneNumber("+493023125901", "number", "+493023125900"),
    )
    config = compile_ok(numbers=numbers)
    run, first = start_run(config, "+493023125901", now=CLOSED_TIME)
    assert first == Answer()
    assert run.path == ("main/office_hours:closed",)


# -- caller hang-up, guard and misuse ------------------------------------------------------------------


def test_caller_hangs_up_at_any_point() -> None:
    run = to_menu()
    assert run.resume(HungUp(), OPEN_TIME) == Done()
    assert run.finished
    assert run.path[-1] == "caller:hung_up"
    run, first = start_run(compile_ok(), "201")
    assert isinstance(first, Ring)
    assert run.resume(HungUp(), OPEN_TIME) == Done()


def test_guard_hangs_up_with_500_after_too_many_steps_without_waiting() -> None:
    config = config_with(
        {
            "p": plan(
                {
                    "a": {"type": "set_language", "language": "en", "next": {"next": "b"}},
                    "b": {"type": "set_language", "language": "de", "next": {"next": "c"}},
                    "c": {"type": "hangup"},
                }
            )
        }
    )
    entry = config.route("+493023125201")
    assert entry is not None
    run = PlanRun(config, entry, CallFacts("1", None, "x"), RingState(), max_steps=2)
    assert run.start(OPEN_TIME) == Hangup(500, "Server Internal Error")
    assert run.path[-1] == "guard:too_many_steps"
    ok = PlanRun(config, entry, CallFacts("1", None, "x"), RingState(), max_steps=3)
    assert ok.start(OPEN_TIME) == Hangup(480, "Temporarily Unavailable")


def test_misuse_raises_usage_errors() -> None:
    config = compile_ok()
    entry = config.route(DID)
    assert entry is not None
    run = PlanRun(config, entry, CallFacts("1", None, DID), RingState())
    with pytest.raises(PlanUsageError):
        run.resume(Answered(), OPEN_TIME)  # not started
    with pytest.raises(PlanUsageError, match="timezone-aware"):
        run.start(datetime(2026, 3, 11, 10, 0))
    run = PlanRun(config, entry, CallFacts("1", None, DID), RingState())
    assert run.start(OPEN_TIME) == Answer()
    with pytest.raises(PlanUsageError):
        run.start(OPEN_TIME)
    with pytest.raises(PlanUsageError, match="does not answer Answer"):
        run.resume(Played(), OPEN_TIME)
    run.resume(Answered(), OPEN_TIME)
    with pytest.raises(PlanUsageError, match="Collected does not answer Play"):
        run.resume(digit("1"), OPEN_TIME)
    assert run.resume(HungUp(), OPEN_TIME) == Done()
    with pytest.raises(PlanUsageError, match="after a terminal"):
        run.resume(Played(), OPEN_TIME)


def test_prompt_keys_cover_every_sound_played() -> None:
    import re
    from pathlib import Path

    import engine.dialplan.evaluate as evaluate

    source = Path(evaluate.__file__).read_text()
    literal_keys = set(re.findall(r'Sound\("([a-z0-9-]+)"\)', source))
    assert literal_keys
    assert literal_keys <= set(PROMPT_KEYS)
    assert {f"digit-{d}" for d in range(10)} <= set(PROMPT_KEYS)  # Sound(f"digit-{d}")
    assert len(set(PROMPT_KEYS)) == len(PROMPT_KEYS)


def test_wait_for_extensions_lets_callers_dial_extensions_an_option_begins() -> None:
    graph = main_graph()
    graph["nodes"]["menu"]["wait_for_extensions"] = True
    result = compile_config(inputs(plans={"main": graph}))
    assert result.ok and result.warnings == ()  # option 2 no longer hides extensions 2xx
    config = result.config
    assert config is not None
    run = to_menu(config)
    assert run.resume(digit("2"), OPEN_TIME) == NEXT  # could be 2xx: wait
    assert run.resume(TIMEOUT, OPEN_TIME) == Ring((line("204"),), 15.0)  # the pause: option 2
    run = to_menu(config)
    run.resume(digit("2"), OPEN_TIME)
    assert run.resume(digit("0"), OPEN_TIME) == NEXT
    assert run.resume(digit("2"), OPEN_TIME) == Ring((line("202"),), 20.0)
    assert run.path[-1] == "main/menu:extension 202"
    run = to_menu(config)
    assert run.resume(digit("1"), OPEN_TIME) == Ring((line("202"), line("203")), 60.0)  # no 1xx: at once


def test_finished_or_closed_runs_are_freed_without_the_cyclic_gc() -> None:
    import gc
    import weakref

    config = compile_ok()
    gc.disable()
    try:
        run, _first = start_run(config, "201")
        run.resume(ANSWERED, OPEN_TIME)  # terminal: Done
        finished = weakref.ref(run)
        del run
        assert finished() is None
        run = to_menu(config)  # suspended in a Collect
        run.close()
        closed = weakref.ref(run)
        del run
        assert closed() is None
        run = to_menu(config)
        run.resume(HungUp(), OPEN_TIME)
        hung_up = weakref.ref(run)
        del run
        assert hung_up() is None
    finally:
        gc.enable()
