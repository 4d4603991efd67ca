"""The admin model's rules and the company document, without a database."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.model import ModelError, free_extensions, next_free_extension, parse_company_document, rules


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "company": {"name": "Test GmbH", "sip_realm": "pbx.test"},
        "users": [
            {"first_name": "A", "last_name": "One", "extension": "201", "sip_password": "pw-201"},
            {"first_name": "B", "last_name": "Two", "sip_password": "pw-b"},
            {"first_name": "C", "last_name": "Three", "extension": "202", "sip_password": "pw-202"},
        ],
        "numbers": [{"number": "+49 30 23125-100", "route": {"kind": "dial_plan", "target": "main"}}],
        "dial_plans": [{"name": "main", "graph": {"start": "x", "nodes": {}}}],
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("value", "expected"), [("201", "201"), (201, "201"), (" 123456 ", "123456"), ("007", "007")]
)
def test_extension_accepts_3_to_6_digits(value: object, expected: str) -> None:
    assert rules.check_extension(value) == expected


@pytest.mark.parametrize("value", ["12", "1234567", "20a", "", None, True, 12.5, "+201"])
def test_extension_rejects_everything_else(value: object) -> None:
    with pytest.raises(ModelError) as err:
        rules.check_extension(value, "users[0].extension")
    assert err.value.field == "users[0].extension"


def test_next_free_extension_is_the_lowest_unused_from_first() -> None:
    assert next_free_extension(set()) == "201"
    assert next_free_extension({"201", "202", "204"}) == "203"
    assert next_free_extension({"201", "202"}, first=1000) == "1000"
    assert next_free_extension({"0201", "100"}, first=100) == "101"  # "0201" is not 201


def test_free_extensions_never_repeat_and_run_out_with_a_model_error() -> None:
    gen = free_extensions({"999997"}, first=999996)
    assert [next(gen), next(gen), next(gen)] == ["999996", "999998", "999999"]
    with pytest.raises(ModelError) as err:
        next(gen)
    assert err.value.field == "extension"


def test_unique_extension_names_the_field() -> None:
    with pytest.raises(ModelError, match="extension: 201 is already in use") as err:
        rules.check_unique_extension("201", {"201"})
    assert (err.value.field, err.value.message) == ("extension", "201 is already in use")


def test_e164_normalises_separators_and_rejects_national_form() -> None:
    assert rules.check_e164("+49 (30) 23125-100") == "+493023125100"
    for bad in ("030 23125100", "+0123456789", "+49", "+4930231251001234567"):
        with pytest.raises(ModelError):
            rules.check_e164(bad)


def test_other_field_rules() -> None:
    assert rules.check_country("de") == "DE"
    assert rules.check_timezone("Europe/Berlin") == "Europe/Berlin"
    assert rules.check_email("  ") is None
    with pytest.raises(ModelError, match="unknown time zone"):
        rules.check_timezone("Mars/Olympus")
    with pytest.raises(ModelError):
        rules.check_email("not-an-address")
    with pytest.raises(ModelError):
        rules.check_realm("has space")
    with pytest.raises(ModelError):
        rules.check_text("line\nbreak", "first_name")
    with pytest.raises(ModelError):
        rules.check_graph({"when": object()})


def test_model_error_under_prefixes_the_path() -> None:
    err = ModelError("extension", "bad").under("users[3]")
    assert (err.field, str(err)) == ("users[3].extension", "users[3].extension: bad")
    assert ModelError("", "whole").under("users[0]").field == "users[0]"


def test_document_assigns_free_extensions_around_explicit_ones() -> None:
    parsed = parse_company_document(_doc())
    assert [u.extension for u in parsed.users] == ["201", "203", "202"]
    assert parsed.users[1].line_name == "B Two"
    assert parsed.numbers[0].e164 == "+493023125100"
    assert parsed.company.timezone == "Europe/Berlin" and parsed.company.first_extension == 201


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["users"][2].update(extension="201"), "users[2].extension"),
        (lambda d: d["users"][1].update(extension="12"), "users[1].extension"),
        (lambda d: d["users"][1].update(extention="205"), "users[1].extention"),
        (lambda d: d["users"][0].pop("sip_password"), "users[0].sip_password"),
        (
            lambda d: d["users"][0].update(external_caller_id="+49 30 23125 999"),
            "users[0].external_caller_id",
        ),
        (
            lambda d: d["users"][2].update(email="a@x.example") or d["users"][0].update(email="A@X.example"),
            "users[2].email",
        ),
        (lambda d: d["numbers"][0]["route"].update(target="nope"), "numbers[0].route.target"),
        (lambda d: d["numbers"][0]["route"].update(kind="pager"), "numbers[0].route.kind"),
        (lambda d: d["numbers"].append(copy.deepcopy(d["numbers"][0])), "numbers[1].number"),
        (lambda d: d["dial_plans"][0].update(name="has space"), "dial_plans[0].name"),
        (lambda d: d["company"].pop("sip_realm"), "company.sip_realm"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(users={"not": "a list"}), "users"),
    ],
)
def test_document_errors_name_the_field_path(mutate: Any, field: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ModelError) as err:
        parse_company_document(doc)
    assert err.value.field == field


def test_route_to_an_extension_must_exist() -> None:
    doc = _doc(numbers=[{"number": "+493023125100", "route": {"kind": "extension", "target": "299"}}])
    with pytest.raises(ModelError, match="no line has extension 299"):
        parse_company_document(doc)
    doc["numbers"][0]["route"]["target"] = "203"  # the auto-assigned one counts
    assert parse_company_document(doc).numbers[0].route_target == "203"
