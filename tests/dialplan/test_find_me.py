"""Find-me/follow-me (issue 19 part 5): a call to a line rings the line, then each step's numbers in order
(extensions and external numbers, rung via the line as forwards are), then voicemail; the stored steps
are held to the line's dialling permissions when the configuration compiles."""

from __future__ import annotations

import dataclasses

from engine.dialplan.compiler import compile_config
from engine.dialplan.evaluate import Action, Done, LeaveVoicemail, PlanRun, Ring, RingResult
from engine.dialplan.plan import RingTarget
from engine.model.features import FindMeStep, LineFeatures, features_of
from engine.script import Hangup

from .helpers import OPEN_TIME, inputs, start_run

STEPS = (FindMeStep(("203",), 10.0), FindMeStep(("204", "+4915112345678"), 15.0))


def test_the_stored_option_gives_the_steps() -> None:
    feats = features_of({"find_me_follow_me": [{"numbers": ["203"], "ring_seconds": 10},
                                               {"numbers": ["204", "+4915112345678"], "ring_seconds": 15}]})
    assert feats.find_me == STEPS and feats.active


def run_steps(features: LineFeatures, ext: str = "202") -> tuple[PlanRun, Action]:
    config = compile_config(dataclasses.replace(inputs(), line_features={ext: features})).unwrap()
    return start_run(config, ext)


def test_the_line_then_each_step_in_order_then_voicemail() -> None:
    run, first = run_steps(LineFeatures(find_me=STEPS))
    assert first == Ring((RingTarget("line", "202"),), 20.0)
    assert run.resume(RingResult(answered=False), OPEN_TIME) == Ring(
        (RingTarget("line", "203", via="202"),), 10.0)
    assert run.resume(RingResult(answered=False), OPEN_TIME) == Ring(
        (RingTarget("line", "204", via="202"), RingTarget("external", "+4915112345678", via="202")), 15.0)
    assert run.resume(RingResult(answered=False, busy=True), OPEN_TIME) == LeaveVoicemail(
        "202", "unavailable")
    assert run.path == ("@line/202:find me 1", "@line/202:find me 2", "@line/202:voicemail")


def test_an_answered_step_ends_the_call_there() -> None:
    run, _ = run_steps(LineFeatures(find_me=STEPS))
    run.resume(RingResult(answered=False), OPEN_TIME)
    assert run.resume(RingResult(answered=True), OPEN_TIME) == Done()
    assert run.path[-1] == "@line/202:answered"


def test_an_answered_line_rings_no_step() -> None:
    run, _ = run_steps(LineFeatures(find_me=STEPS))
    assert run.resume(RingResult(answered=True), OPEN_TIME) == Done()


def test_a_busy_line_goes_on_with_the_steps_and_greets_busy() -> None:
    run, _ = run_steps(LineFeatures(find_me=STEPS[:1]))
    assert run.resume(RingResult(answered=False, busy=True), OPEN_TIME) == Ring(
        (RingTarget("line", "203", via="202"),), 10.0)
    assert run.resume(RingResult(answered=False), OPEN_TIME) == LeaveVoicemail("202", "busy")


def test_a_forward_no_answer_comes_before_the_steps() -> None:
    run, _ = run_steps(LineFeatures(forward_no_answer="205", find_me=STEPS[:1]))
    assert run.resume(RingResult(answered=False), OPEN_TIME) == Ring(
        (RingTarget("line", "205", via="202"),), 20.0)
    assert run.resume(RingResult(answered=False), OPEN_TIME) == Ring(
        (RingTarget("line", "203", via="202"),), 10.0)


def test_dnd_skips_the_steps() -> None:
    _, first = run_steps(LineFeatures(dnd=True, find_me=STEPS))
    assert first == LeaveVoicemail("202", "busy")
    _, first = run_steps(LineFeatures(dnd=True, voicemail=False, find_me=STEPS))
    assert first == Hangup(486, "Busy Here")


def test_numbers_the_line_may_not_dial_are_dropped_with_a_warning() -> None:
    steps = (FindMeStep(("202", "+442071234567"), 10.0), FindMeStep(("203", "+4915112345678"), 10.0))
    result = compile_config(dataclasses.replace(inputs(), line_features={
        "202": LineFeatures(find_me=steps)}))
    assert result.config.line_features["202"].find_me == (FindMeStep(("203", "+4915112345678"), 10.0),)
    assert sorted(w.path for w in result.warnings if "find_me" in w.path) == [
        "lines[202].options.find_me_follow_me[0].numbers[0]",  # itself
        "lines[202].options.find_me_follow_me[0].numbers[1]",  # international, beyond its permissions
    ]


def test_a_ring_group_skips_a_member_line_in_dnd() -> None:
    config = compile_config(dataclasses.replace(inputs(), line_features={
        "202": LineFeatures(dnd=True)})).unwrap()
    _, first = start_run(config, "300")  # the sales group: 202 and 203
    assert first == Ring((RingTarget("line", "203"),), 60.0)
    config = compile_config(dataclasses.replace(inputs(), line_features={
        "202": LineFeatures(dnd=True), "203": LineFeatures(dnd=True)})).unwrap()
    _, first = start_run(config, "300")
    assert not isinstance(first, Ring)  # nobody to ring: the group's no-answer way
