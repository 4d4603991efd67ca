"""The star-code table (issue 19 part 6) and line features in the dial plan (part 5): matching dialled
strings, the compiler's clash checks naming company.star_codes.FEATURE, forward targets held to the
line's permissions, and what a call to a line with DND or forwarding does."""

from __future__ import annotations

import dataclasses

import pytest

from engine.dialplan.compiler import compile_config
from engine.dialplan.evaluate import Action, Done, LeaveVoicemail, PlanRun, Ring, RingResult
from engine.dialplan.linefeatures import forward_target
from engine.dialplan.plan import RingTarget
from engine.dialplan.starcodes import DEFAULT_CODES, DEFAULT_TABLE, Feature, StarCode
from engine.model.entities import Company, Line
from engine.model.features import LineFeatures
from engine.script import Hangup

from .helpers import COMPANY, LINES, OPEN_TIME, compile_errors, compile_ok, inputs, start_run


def star_errors(codes: dict[str, str], lines: tuple[Line, ...] = LINES) -> dict[str, str]:
    """The compiler's messages by path (several at one path joined by " | ")."""
    company = dataclasses.replace(COMPANY, star_codes=tuple(sorted(codes.items())))
    result = compile_errors(company=company, lines=lines)
    out: dict[str, str] = {}
    for e in result.errors:
        out[e.path] = f"{out[e.path]} | {e.message}" if e.path in out else e.message
    return out


# -- the table -----------------------------------------------------------------------------------------


def test_the_defaults_follow_freepbx_and_keep_the_voicemail_codes() -> None:
    assert DEFAULT_CODES[Feature.VOICEMAIL_OWN] == "*99" and DEFAULT_CODES[Feature.VOICEMAIL_ANY] == "*98"
    assert (DEFAULT_CODES[Feature.DND_ON], DEFAULT_CODES[Feature.DND_OFF]) == ("*78", "*79")
    forward = (DEFAULT_CODES[Feature.FORWARD_ALWAYS_ON], DEFAULT_CODES[Feature.FORWARD_ALWAYS_OFF])
    assert forward == ("*72", "*73")
    assert DEFAULT_CODES[Feature.QUEUE_LOGIN] == "*45"
    assert len(set(DEFAULT_CODES.values())) == len(Feature)


@pytest.mark.parametrize(("dialled", "expected"), [
    ("*78", StarCode(Feature.DND_ON, "*78")),
    ("*79", StarCode(Feature.DND_OFF, "*79")),
    ("*72202", StarCode(Feature.FORWARD_ALWAYS_ON, "*72", "202")),
    ("*72+4915112345678", StarCode(Feature.FORWARD_ALWAYS_ON, "*72", "+4915112345678")),
    ("*72", StarCode(Feature.FORWARD_ALWAYS_ON, "*72")),
    ("*45400", StarCode(Feature.QUEUE_LOGIN, "*45", "400")),
    ("*46", StarCode(Feature.QUEUE_LOGOUT, "*46")),
    ("*47", StarCode(Feature.QUEUE_PAUSE, "*47")),
    ("*98800", StarCode(Feature.VOICEMAIL_ANY, "*98", "800")),
    ("*7800", None),  # DND takes no digits
    ("*72abc", None),
    ("*55", None),
    ("202", None),
])
def test_match(dialled: str, expected: StarCode | None) -> None:
    assert DEFAULT_TABLE.match(dialled) == expected


def test_a_company_changes_a_code_and_keeps_the_others() -> None:
    company = dataclasses.replace(COMPANY, star_codes=(("dnd_on", "*30"),))
    table = compile_ok(company=company).star_codes
    assert table.match("*30") == StarCode(Feature.DND_ON, "*30")
    assert table.match("*78") is None
    assert table.code(Feature.DND_OFF) == "*79"


# -- the compiler's checks -----------------------------------------------------------------------------


def test_a_code_that_is_an_extension_is_refused() -> None:
    errors = star_errors({"dnd_on": "202"})
    assert errors["company.star_codes.dnd_on"] == "202 is the extension of line 202"


def test_a_code_with_digits_after_it_may_not_begin_an_extension() -> None:
    errors = star_errors({"queue_login": "20"})
    assert "would shadow extension 201 (line 201)" in errors["company.star_codes.queue_login"]


def test_a_code_used_twice_is_refused() -> None:
    errors = star_errors({"dnd_off": "*78"})
    assert errors["company.star_codes.dnd_off"] == "*78 is already the code of dnd_on"


def test_a_code_with_digits_after_it_may_not_begin_another_code() -> None:
    errors = star_errors({"forward_always_on": "*7"})
    assert "*7 takes digits after it, so it would shadow *78 (dnd_on)" in errors[
        "company.star_codes.forward_always_on"]


def test_unknown_features_and_bad_codes_are_refused() -> None:
    errors = star_errors({"coffee": "*11", "dnd_on": "78", "dnd_off": "*7x"})
    assert errors["company.star_codes.coffee"].startswith("unknown feature")
    assert "2-8 keys" in errors["company.star_codes.dnd_off"]
    assert "company.star_codes.dnd_on" not in errors  # "78" is a valid digit code (no extension 78)


def test_a_digit_code_next_to_an_extension_that_does_not_begin_with_it_compiles() -> None:
    company = dataclasses.replace(COMPANY, star_codes=(("dnd_on", "88"),))  # 71-79 are the park orbits
    assert compile_ok(company=company).star_codes.match("88") == StarCode(Feature.DND_ON, "88")


# -- forward targets -----------------------------------------------------------------------------------


def test_forward_targets_follow_the_line_and_its_permissions() -> None:
    lines = {ln.extension: ln for ln in LINES}
    anna = lines["201"]
    berlin = dataclasses.replace(COMPANY, area_code="30")
    assert forward_target("202", anna, lines, berlin) == "202"
    assert forward_target("201", anna, lines, berlin) == "not_allowed"  # itself
    assert forward_target("015112345678", anna, lines, berlin) == "+4915112345678"
    assert forward_target("23125100", anna, lines, berlin) == "+493023125100"  # local
    assert forward_target("00442071234567", anna, lines, berlin) == "not_allowed"  # international
    assert forward_target("112", anna, lines, berlin) == "not_allowed"  # emergency
    assert forward_target("999999999999999999999", anna, lines, berlin) == "invalid"
    world = dataclasses.replace(anna, dial_permissions=frozenset({"international"}))
    assert forward_target("00442071234567", world, lines, berlin) == "+442071234567"


def test_a_stored_forward_the_line_may_no_longer_dial_is_dropped_with_a_warning() -> None:
    features = {"202": LineFeatures(forward_always="+442071234567", forward_busy="203")}
    result = compile_config(dataclasses.replace(inputs(), line_features=features))
    assert result.config is not None
    assert result.config.line_features["202"] == LineFeatures(forward_busy="203")
    assert [w.path for w in result.warnings if "forward" in w.path] == ["lines[202].options.forward.always"]


# -- calls to a line with features ---------------------------------------------------------------------


def run_to(features: LineFeatures, ext: str = "202") -> tuple[PlanRun, Action]:
    config = compile_config(dataclasses.replace(inputs(), line_features={ext: features})).unwrap()
    return start_run(config, ext)


def test_dnd_sends_the_caller_to_voicemail_as_busy() -> None:
    run, first = run_to(LineFeatures(dnd=True))
    assert first == LeaveVoicemail("202", "busy")
    assert run.path == ("@line/202:dnd", "@line/202:voicemail")


def test_dnd_without_voicemail_is_busy() -> None:
    _, first = run_to(LineFeatures(dnd=True, voicemail=False))
    assert first == Hangup(486, "Busy Here")


def test_forward_always_rings_the_target_instead() -> None:
    run, first = run_to(LineFeatures(forward_always="+4915112345678"))
    assert first == Ring((RingTarget("external", "+4915112345678", via="202"),), 20.0)
    assert run.resume(RingResult(answered=True), OPEN_TIME) == Done()


def test_forward_no_answer_rings_the_target_after_the_line_and_then_voicemail() -> None:
    run, first = run_to(LineFeatures(forward_no_answer="203", forward_busy="+4915112345678"))
    assert first == Ring((RingTarget("line", "202"),), 20.0)
    now = OPEN_TIME
    assert run.resume(RingResult(answered=False), now) == Ring(
        (RingTarget("line", "203", via="202"),), 20.0)
    assert run.resume(RingResult(answered=False), now) == LeaveVoicemail(
        "202", "unavailable")


def test_forward_busy_rings_the_target_when_the_line_is_busy() -> None:
    run, _ = run_to(LineFeatures(forward_busy="+4915112345678"))
    assert run.resume(RingResult(answered=False, busy=True), OPEN_TIME) == Ring(
        (RingTarget("external", "+4915112345678", via="202"),), 20.0)


def test_a_forward_to_a_forwarding_line_rings_that_line() -> None:
    config = compile_config(dataclasses.replace(inputs(), line_features={
        "202": LineFeatures(forward_always="203"), "203": LineFeatures(forward_always="202")})).unwrap()
    _, first = start_run(config, "202")
    assert first == Ring((RingTarget("line", "203", via="202"),), 20.0)


def test_company_document_star_codes_must_be_text() -> None:
    from engine.model import ModelError, parse_company_document

    doc = {"company": {"name": "X", "sip_realm": "x.example", "star_codes": {"dnd_on": 78}}}
    with pytest.raises(ModelError) as err:
        parse_company_document(doc)
    assert err.value.field == "company.star_codes.dnd_on"
    ok = parse_company_document({"company": {"name": "X", "sip_realm": "x.example",
                                             "star_codes": {"dnd_on": "*30"}}})
    assert ok.company == Company("X", "x.example", star_codes=(("dnd_on", "*30"),))
