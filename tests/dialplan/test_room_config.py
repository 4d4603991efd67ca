"""Conference rooms in the compiled configuration (issue 13): every option checked with its path, the
room's extension, numbers and the plans' conference node reach it, and the evaluator's PIN dialogue (host
PIN, participant PIN, three wrong tries) before ``JoinConference`` and the ways out of a room."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.dialplan.evaluate import ConferenceResult, Done, JoinConference
from engine.dialplan.plan import ConferenceOp, ConferenceRoom
from engine.model.entities import PhoneNumber
from engine.script import Answer, Answered, Collect, Collected, Hangup, Play, Played, Sound

from .helpers import BASE_OBJECTS, OPEN_TIME, compile_errors, compile_ok, drive, start_run

TEAM: dict[str, Any] = {
    "name": "team",
    "extension": "450",
    "participant_pin": "1234",
    "host_pin": "987654",
    "waiting_room": True,
    "enter_muted": True,
    "end_with_last_host": True,
    "announce_participants": True,
    "omit_from_directory": True,
}
ENTER = Play((Sound("conference-enter-pin"),), barge_in=True)
PIN = Collect(max_digits=16, terminators="#", first_timeout_s=10.0, inter_digit_timeout_s=5.0)
WRONG = Play((Sound("conference-wrong-pin"),), barge_in=False)


def rooms(*extra: dict[str, Any]) -> dict[str, Any]:
    objs = copy.deepcopy(BASE_OBJECTS)
    objs["conference_rooms"] = [*objs["conference_rooms"], *extra]
    return objs


def error_message(room: dict[str, Any], path: str) -> str:
    result = compile_errors(objects=rooms(room))
    found = [e.message for e in result.errors if e.path == path]
    assert found, [str(e) for e in result.errors]
    return found[0]


def test_a_room_with_every_option_compiles() -> None:
    config = compile_ok(objects=rooms(TEAM))
    room = config.rooms["team"]
    assert room == ConferenceRoom(
        name="team",
        participant_pin="1234",
        host_pin="987654",
        waiting_room=True,
        enter_muted=True,
        end_with_last_host=True,
        announce_participants=True,
        omit_from_directory=True,
    )
    entry = config.route("450")
    assert entry is not None and entry.kind == "conference_room"
    assert config.nodes[entry.node].op == ConferenceOp(room)


def test_defaults_are_an_open_room() -> None:
    room = compile_ok().rooms["board"]
    assert room == ConferenceRoom("board")
    assert not room.has_pin


@pytest.mark.parametrize(
    ("change", "path", "text"),
    [
        ({"participant_pin": "123"}, "participant_pin", "must be 4-10 digits"),
        ({"host_pin": "12345678901"}, "host_pin", "must be 4-10 digits"),
        ({"host_pin": 98765}, "host_pin", "must be 4-10 digits"),
        ({"participant_pin": "12a4"}, "participant_pin", "must be 4-10 digits"),
        ({"host_pin": "1234"}, "host_pin", "must differ from participant_pin"),
        ({"enter_muted": "yes"}, "enter_muted", "true or false"),
        ({"host_pin": None}, "waiting_room", "needs a host_pin"),
        ({"loudness": 11}, "loudness", "unknown"),
        ({"extension": None}, "extension", "is required"),
        ({"extension": "4"}, "extension", "2-8 digits"),
    ],
)
def test_bad_options_are_named(change: dict[str, Any], path: str, text: str) -> None:
    room = {**TEAM, **change}
    if change == {"extension": None}:
        del room["extension"]
    if change == {"host_pin": None}:
        del room["host_pin"]
    assert text in error_message(room, f"conference_rooms[team].{path}")


def test_end_with_last_host_needs_a_host_pin() -> None:
    room = {"name": "team", "extension": "450", "end_with_last_host": True}
    assert "host_pin" in error_message(room, "conference_rooms[team].end_with_last_host")


def test_a_number_and_a_plan_node_reach_the_room() -> None:
    plans = {
        "conf": {"start": "a", "extension": "510", "nodes": {"a": {"type": "conference", "room": "team"}}}
    }
    numbers = (PhoneNumber("+493023125450", "conference_room", "team"),)
    config = compile_ok(plans=plans, objects=rooms(TEAM), numbers=numbers)
    for called in ("+493023125450", "510"):
        entry = config.route(called)
        assert entry is not None
        assert config.nodes[entry.node].op == ConferenceOp(config.rooms["team"]), called


def test_host_pin_makes_a_host() -> None:
    config = compile_ok(objects=rooms(TEAM))
    run, first = start_run(config, "450")
    assert drive(run, first, [Answered(), Played()]) == [Answer(), ENTER, PIN]
    joined = run.resume(Collected("987654", "terminator", "#"), OPEN_TIME)
    assert joined == JoinConference(config.rooms["team"], host=True)
    assert run.resume(ConferenceResult("left"), OPEN_TIME) == Done()
    assert run.path == ("@conference/team:host left",)


def test_participant_pin_on_the_second_try() -> None:
    config = compile_ok(objects=rooms(TEAM))
    run, first = start_run(config, "450")
    drive(run, first, [Answered(), Played()])
    assert run.resume(Collected("987655", "terminator", "#"), OPEN_TIME) == WRONG
    assert drive(run, ENTER, [Played(), Played()])[1:] == [ENTER, PIN]
    joined = run.resume(Collected("1234", "terminator", "#"), OPEN_TIME)
    assert joined == JoinConference(config.rooms["team"], host=False)


def test_three_wrong_pins_say_goodbye() -> None:
    config = compile_ok(objects=rooms(TEAM))
    run, first = start_run(config, "450")
    drive(run, first, [Answered(), Played()])
    for _ in range(2):
        assert run.resume(Collected("0000", "terminator", "#"), OPEN_TIME) == WRONG
        assert run.resume(Played(), OPEN_TIME) == ENTER
        assert run.resume(Played(), OPEN_TIME) == PIN
    bye = run.resume(Collected("0000", "terminator", "#"), OPEN_TIME)
    assert bye == Play((Sound("conference-wrong-pin"), Sound("goodbye")), barge_in=False)
    assert isinstance(run.resume(Played(), OPEN_TIME), Hangup)
    assert run.path == ("@conference/team:wrong pin",)


def test_an_empty_pin_joins_a_room_with_only_a_host_pin() -> None:
    room = {"name": "team", "extension": "450", "host_pin": "5555"}
    config = compile_ok(objects=rooms(room))
    run, first = start_run(config, "450")
    drive(run, first, [Answered(), Played()])
    assert run.resume(Collected("", "terminator", "#"), OPEN_TIME) == JoinConference(
        config.rooms["team"], host=False
    )


@pytest.mark.parametrize("how", ["locked", "ended"])
def test_a_locked_or_ended_room_is_announced(how: str) -> None:
    config = compile_ok()
    run, first = start_run(config, "401")
    assert drive(run, first, [Answered()]) == [Answer(), JoinConference(config.rooms["board"], host=False)]
    said = run.resume(ConferenceResult(how), OPEN_TIME)  # type: ignore[arg-type]
    assert said == Play((Sound(f"conference-{how}"), Sound("goodbye")), barge_in=False)
    assert isinstance(run.resume(Played(), OPEN_TIME), Hangup)


def test_a_room_omitted_from_the_directory_is_not_dialled_from_a_menu() -> None:
    from .test_evaluate import NEXT, digit, to_menu

    omitted = copy.deepcopy(BASE_OBJECTS)
    omitted["conference_rooms"] = [{"name": "board", "extension": "401", "omit_from_directory": True}]
    for objects, reached in ((BASE_OBJECTS, True), (omitted, False)):
        run = to_menu(compile_ok(objects=objects))
        assert run.resume(digit("4"), OPEN_TIME) == NEXT
        assert run.resume(digit("0"), OPEN_TIME) == NEXT
        action = run.resume(digit("1"), OPEN_TIME)
        assert isinstance(action, JoinConference) is reached, action
