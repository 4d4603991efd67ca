"""Directed pickup's code (issue 19 part 3, ``engine.call.pickup``): ``**`` and the ringing extension, as
FreePBX dials it; the code is checked like every other. The pickups themselves:
tests/integration/test_pickup_phones.py (real phones)."""

from __future__ import annotations

import dataclasses

import pytest

from engine.dialplan.starcodes import DEFAULT_TABLE, TAKES_ARGUMENT, Feature, StarCode

from ..dialplan.helpers import COMPANY, compile_errors


@pytest.mark.parametrize(("dialled", "expected"), [
    ("**202", StarCode(Feature.PICKUP, "**", "202")),
    ("**", StarCode(Feature.PICKUP, "**")),
    ("**20x", None),
    ("*202", None),
])
def test_the_pickup_code(dialled: str, expected: StarCode | None) -> None:
    assert DEFAULT_TABLE.match(dialled) == expected
    assert Feature.PICKUP in TAKES_ARGUMENT


def test_a_pickup_code_may_not_shadow_another_code() -> None:
    company = dataclasses.replace(COMPANY, star_codes=(("pickup", "*7"),))
    messages = {e.path: e.message for e in compile_errors(company=company).errors}
    assert "would shadow" in messages["company.star_codes.pickup"]
