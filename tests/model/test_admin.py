"""engine.model.admin: MAC forms, admin rights, dialable digits, locations, the port-in table, secrets."""

from __future__ import annotations

import pytest

from engine.model import ModelError
from engine.model import admin as am


@pytest.mark.parametrize(
    "text", ["001565aabbcc", "00:15:65:AA:BB:CC", "00-15-65-aa-bb-cc", "0015.65aa.bbcc", " 001565AABBCC "]
)
def test_mac_forms_normalise(text: str) -> None:
    assert am.check_mac(text) == "001565aabbcc"


@pytest.mark.parametrize(
    "text",
    [
        "001565aabbc",
        "001565aabbccd",
        "00:15:65-aa:bb:cc",
        "0015:65aa:bbcc",
        "00:15:65:aa:bb:cg",
        "000000000000",
        "ff:ff:ff:ff:ff:ff",
        "",
    ],
)
def test_other_macs_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ModelError) as err:
        am.check_mac(text, "desk_phone.mac")
    assert err.value.field == "desk_phone.mac"


def test_admin_rights() -> None:
    custom = am.check_admin_rights("custom", ["view_reports", "configure_pbx"])
    assert custom.allows("configure_pbx") and not custom.allows("pay_invoices")
    assert custom.listed() == ["configure_pbx", "view_reports"]
    assert am.check_admin_rights("super_admin", []).allows("pay_invoices")
    assert not am.check_admin_rights("none", None).allows("view_reports")
    for role, perms, field in (
        ("root", [], "admin.role"),
        ("custom", [], "admin.permissions"),
        ("custom", ["fly"], "admin.permissions[0]"),
        ("none", ["view_reports"], "admin.permissions"),
    ):
        with pytest.raises(ModelError) as err:
            am.check_admin_rights(role, perms)
        assert err.value.field == field


def test_dialable_digits() -> None:
    assert am.check_dial_digits("0000", "dial_password") == "0000"
    for bad in ("123", "12a4", 1234, "1" * 17):
        with pytest.raises(ModelError):
            am.check_dial_digits(bad, "dial_password")


@pytest.mark.parametrize(
    ("street", "normal"),
    [
        ("350 South Fifth Avenue", "350 S Fifth Ave"),
        ("1  north   Main street.", "1 N Main St"),
        ("12 Northwest Highway Suite 5", "12 NW Hwy Ste 5"),
        ("7 West 34th St.", "7 W 34th St"),
    ],
)
def test_street_normalisation(street: str, normal: str) -> None:
    assert am.normalise_street(street) == normal


def test_location_rules() -> None:
    base = {
        "name": "HQ",
        "country": "ca",
        "street": "1 Main Street East",
        "city": "Toronto",
        "region": "on",
        "postal_code": "m5v2t6",
    }
    loc = am.check_location(base)
    assert (loc.country, loc.region, loc.postal_code, loc.street) == ("CA", "ON", "M5V 2T6", "1 Main St E")
    for change, field in (
        ({"country": "DE"}, "country"),
        ({"region": "NY"}, "region"),
        ({"postal_code": "12345"}, "postal_code"),
        ({"street": "Main Street"}, "street"),
        ({"city": None}, "city"),
        ({"floor": 3}, "floor"),
    ):
        with pytest.raises(ModelError) as err:
            am.check_location({**base, **change})
        assert err.value.field == field
    us = am.check_location({**base, "country": "US", "region": "ny", "postal_code": "10118-0110"})
    assert us.postal_code == "10118-0110"


@pytest.mark.parametrize("state", am.PORT_STATES)
@pytest.mark.parametrize("action", am.PORT_ACTIONS)
def test_port_transitions_are_the_table(state: str, action: str) -> None:
    expected = am.PORT_TRANSITIONS.get((state, action))
    if expected is None:
        with pytest.raises(ModelError) as err:
            am.port_transition(state, action)
        assert err.value.field == "action"
    else:
        assert am.port_transition(state, action) == expected


def test_port_request_rules() -> None:
    spec = am.check_port_request(
        {"numbers": ["+1 646 555 0199"], "carrier": "Old", "account_name": "A", "account_number": "1"}
    )
    assert spec.numbers == ("+16465550199",)
    with pytest.raises(ModelError) as err:
        am.check_port_request({"numbers": ["+16465550199", "+1 646 555 0199"], "carrier": "x"})
    assert err.value.field == "numbers[1]"
    with pytest.raises(ModelError) as err:
        am.check_port_request({"numbers": ["+16465550199"], "carrier": "x", "account_name": "y"})
    assert err.value.field == "account_number"


def test_secrets() -> None:
    encoded = am.hash_secret("1234", b"salt-salt-salt-1", iterations=1000)
    assert am.verify_secret("1234", encoded) and not am.verify_secret("1235", encoded)
    assert not am.verify_secret("1234", "garbage") and not am.verify_secret("1234", "md5$1$00$00")
    assert am.token_digest("t") == am.token_digest("t") != am.token_digest("u")
