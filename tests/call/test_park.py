"""Call park's pure parts (issue 19 part 3, ``engine.call.park``): the parked call's state table, orbit
allocation, the park extension's orbits, and the compiler refusing a park code or orbit that is an
extension. The calls themselves: tests/integration/test_park_phones.py (real phones)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from engine.call.park import PARK_TABLE, ParkAction, ParkInput, ParkState, free_orbit, park_step
from engine.dialplan.starcodes import DEFAULT_TABLE, Feature, park_slots
from engine.model.entities import Line

from ..dialplan.helpers import COMPANY, LINES, compile_errors

P, In, A = ParkState, ParkInput, ParkAction

#: The whole table, written out: (state, input) -> (action, next state).
EXPECTED = {
    (P.PARKED, In.RETRIEVE): (A.BRIDGE, P.RETRIEVED),
    (P.PARKED, In.TIMEOUT): (A.CALL_BACK, P.CALLED_BACK),
    (P.PARKED, In.HANG_UP): (A.FREE, P.GONE),
}


@pytest.mark.parametrize(("state", "inp"), list(itertools.product(ParkState, ParkInput)))
def test_park_table(state: ParkState, inp: ParkInput) -> None:
    expected = EXPECTED.get((state, inp))
    if expected is None:  # once off its orbit, a call takes no input
        with pytest.raises(KeyError):
            park_step(state, inp)
    else:
        assert park_step(state, inp) == expected
    assert PARK_TABLE == EXPECTED


def test_every_move_leaves_the_orbit() -> None:
    assert all(new is not P.PARKED for _, new in PARK_TABLE.values())


def test_orbits_are_handed_out_lowest_first_until_none_is_free() -> None:
    slots = DEFAULT_TABLE.park_slots()
    assert free_orbit(slots, set()) == "71"
    assert free_orbit(slots, {"71", "72"}) == "73"
    assert free_orbit(slots, {"71", "73"}) == "72"
    assert free_orbit(slots, set(slots)) is None


@pytest.mark.parametrize(("code", "first", "last"), [
    ("700", "701", "709"), ("70", "71", "79"), ("090", "091", "099"), ("*70", "*701", "*709"),
])
def test_the_orbits_of_a_park_code(code: str, first: str, last: str) -> None:
    slots = park_slots(code)
    assert (len(slots), slots[0], slots[-1]) == (9, first, last)


def test_the_default_park_code_is_70_as_in_freepbx() -> None:
    assert DEFAULT_TABLE.code(Feature.PARK) == "70"
    assert DEFAULT_TABLE.park_slots() == tuple(str(n) for n in range(71, 80))
    assert DEFAULT_TABLE.match("70") is not None and DEFAULT_TABLE.match("71") is None


def errors_with(lines: tuple[Line, ...], codes: dict[str, str] | None = None) -> dict[str, str]:
    company = dataclasses.replace(COMPANY, star_codes=tuple(sorted((codes or {}).items())))
    out: dict[str, str] = {}
    for e in compile_errors(company=company, lines=lines).errors:
        out[e.path] = f"{out.get(e.path, '')} | {e.message}" if e.path in out else e.message
    return out


def test_a_park_orbit_that_is_an_extension_is_refused() -> None:
    line = dataclasses.replace(LINES[0], extension="75")
    errors = errors_with((line, *LINES[1:]))
    assert errors["company.star_codes.park"] == "its orbit 75 is the extension of line 75"


def test_the_park_code_may_not_be_an_extension_and_may_be_moved() -> None:
    line = dataclasses.replace(LINES[0], extension="70")
    errors = errors_with((line, *LINES[1:]))
    assert errors["company.star_codes.park"] == "70 is the extension of line 70"
    assert "company.star_codes.park" not in errors_with((line, *LINES[1:]), {"park": "*70"})


def test_a_park_orbit_may_not_be_another_code() -> None:
    errors = errors_with(LINES, {"park": "*7", "dnd_on": "*78"})
    assert "its orbit *78 is the code of dnd_on" in errors["company.star_codes.park"]
