"""Fax lines in the compiled configuration (issue 14): station ID, header and e-mail recipients are read
and checked with their paths; the line's extension, a number routed to it and a Receive Fax node all enter
the same reception with those fields."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dialplan.plan import FaxLine, ReceiveFaxOp
from engine.model.entities import PhoneNumber

from .helpers import BASE_OBJECTS, compile_errors, compile_ok, main_graph, paths

DID = "+493023125402"
FAX = {"name": "fax", "extension": "402", "station_id": "+49 30 2312 5402", "header": "Example GmbH",
       "email": ["office@example.com", "boss@example.com"]}


def objects(fax: dict[str, Any]) -> dict[str, Any]:
    return {**BASE_OBJECTS, "fax_lines": [fax]}


def test_a_fax_lines_fields_reach_its_extension_its_number_and_the_receive_fax_node() -> None:
    plans = {"main": main_graph(), "faxes": {"start": "rx", "nodes": {
        "rx": {"type": "receive_fax", "fax_line": "fax"}}}}
    config = compile_ok(plans, objects(FAX), numbers=(
        PhoneNumber("+493023125100", "dial_plan", "main"), PhoneNumber(DID, "fax_line", "fax")))
    expected = ReceiveFaxOp(FaxLine("fax", "+49 30 2312 5402", "Example GmbH",
                                    ("office@example.com", "boss@example.com")))
    for key in ("402", DID):
        entry = config.routes[key]
        assert entry.kind == "fax_line" and entry.name == "fax"
        assert config.nodes[entry.node].op == expected
    assert config.nodes[config.plans["faxes"]].op == expected


@pytest.mark.parametrize(("change", "field"), [
    ({"station_id": "x" * 21}, "fax_lines[fax].station_id"),
    ({"station_id": "Fax\n"}, "fax_lines[fax].station_id"),
    ({"header": 5}, "fax_lines[fax].header"),
    ({"email": ["office@example.com", "not an address"]}, "fax_lines[fax].email[1]"),
    ({"email": ["a@b.de\r\nBcc: x@y.de"]}, "fax_lines[fax].email[0]"),
    ({"email": {"to": "a@b.de"}}, "fax_lines[fax].email"),
    ({"colour": "red"}, "fax_lines[fax].colour"),
])
def test_bad_fax_line_fields_are_named(change: dict[str, Any], field: str) -> None:
    result = compile_errors(None, objects({**FAX, **change}))
    assert field in paths(result), [str(e) for e in result.errors]
