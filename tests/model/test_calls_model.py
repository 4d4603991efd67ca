"""The model side of calls (issue 3): trunks, dial permissions, area code and media release networks,
in the validation rules and in the company document."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from engine.model import (
    DEFAULT_DIAL_PERMISSIONS,
    DIAL_PERMISSIONS,
    Company,
    Line,
    ModelError,
    Trunk,
    TrunkSpec,
    parse_company_document,
    rules,
)


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "company": {"name": "Test GmbH", "sip_realm": "pbx.test"},
        "users": [
            {"first_name": "A", "last_name": "One", "extension": "201", "sip_password": "pw-201"},
            {
                "first_name": "B",
                "last_name": "Two",
                "sip_password": "pw-b",
                "dial_permissions": ["internal", "international"],
            },
        ],
        "trunks": [
            {"name": "carrier", "sources": ["127.0.0.2", "192.0.2.0/24"], "host": "127.0.0.2"},
            {
                "name": "backup",
                "sources": ["2001:DB8::/32"],
                "host": "sip.backup.example",
                "port": "5080",
                "transport": "tcp",
                "username": "beispiel",
                "password": "secret pass",
                "from_domain": "pbx.beispiel.example",
                "outbound": False,
            },
        ],
    }
    doc.update(over)
    return doc


# -- rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.2", "127.0.0.2/32"),
        (" 192.0.2.0/24 ", "192.0.2.0/24"),
        ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
        ("2001:DB8::1", "2001:db8::1/128"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_networks_are_normalised_to_cidr(value: str, expected: str) -> None:
    assert rules.check_network(value, "x") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sip.carrier.example", "not an IP address or network"),
        ("192.0.2.300", "not an IP address or network"),
        ("", "not an IP address or network"),
        (17, "not an IP address or network"),
        ("192.0.2.7/24", "has host bits set (the network would be 192.0.2.0/24)"),
    ],
)
def test_bad_networks_name_the_field(value: object, message: str) -> None:
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        rules.check_network(value, "trunks[0].sources[1]")
    assert err.value.field == "trunks[0].sources[1]"


def test_network_lists_name_the_item() -> None:
    assert rules.check_networks(None, "n") == ()
    assert rules.check_networks(["10.0.0.0/8", "::1"], "n") == ("10.0.0.0/8", "::1/128")
    with pytest.raises(ModelError) as err:
        rules.check_networks(["10.0.0.0/8", "nope"], "company.media_release_networks")
    assert err.value.field == "company.media_release_networks[1]"
    with pytest.raises(ModelError, match="must be a list") as err:
        rules.check_networks("10.0.0.0/8", "company.media_release_networks")
    assert err.value.field == "company.media_release_networks"


def test_area_code() -> None:
    assert rules.check_area_code("30") == "30"
    assert rules.check_area_code(30) == "30"
    assert rules.check_area_code(" 6221 ") == "6221"
    assert rules.check_area_code(None) is None and rules.check_area_code("") is None
    for bad in ("+4930", "30 1", "1234567", "\uff13\uff10", True, 3.0):
        with pytest.raises(ModelError) as err:
            rules.check_area_code(bad, "company.area_code")
        assert err.value.field == "company.area_code"


def test_dial_permissions() -> None:
    assert {"internal", "local", "national", "mobile"} == DEFAULT_DIAL_PERMISSIONS
    assert "international" in DIAL_PERMISSIONS and "international" not in DEFAULT_DIAL_PERMISSIONS
    assert rules.check_dial_permissions(["local", "internal", "local"]) == {"internal", "local"}
    assert rules.check_dial_permissions([]) == frozenset()  # an emergency-only phone
    assert rules.format_dial_permissions({"international", "internal", "mobile"}) == [
        "internal",
        "mobile",
        "international",
    ]
    with pytest.raises(ModelError, match="unknown permission 'premium'") as err:
        rules.check_dial_permissions(["internal", "premium"], "users[2].dial_permissions")
    assert err.value.field == "users[2].dial_permissions[1]"
    with pytest.raises(ModelError, match="always allowed") as err:
        rules.check_dial_permissions(["emergency"], "dial_permissions")
    assert err.value.field == "dial_permissions[0]"
    for bad in ("internal,local", None, {"internal": True}, [1]):
        with pytest.raises(ModelError):
            rules.check_dial_permissions(bad)


def test_hosts_ports_transports_and_usernames() -> None:
    assert rules.check_host("sip.carrier.example") == "sip.carrier.example"
    assert rules.check_host(" 127.0.0.2 ") == "127.0.0.2"
    assert rules.check_host("2001:DB8::1") == "2001:db8::1"
    for bad in ("sip.carrier.example:5060", "[::1]", "-bad.example", "a b", "", "x" * 254, None):
        with pytest.raises(ModelError) as err:
            rules.check_host(bad, "trunks[0].host")
        assert err.value.field == "trunks[0].host"
    with pytest.raises(ModelError, match="give the port separately"):
        rules.check_host("carrier.example:5060")
    assert rules.check_port(5060) == rules.check_port("5060") == 5060
    for bad_port in (0, 65536, "50 60", True, "\uff15\uff10\uff16\uff10", 5060.0):
        with pytest.raises(ModelError):
            rules.check_port(bad_port)
    assert rules.check_transport("udp") == "UDP" and rules.check_transport("TCP") == "TCP"
    with pytest.raises(ModelError, match="UDP, TCP"):
        rules.check_transport("TLS")
    assert rules.check_digest_username("beispiel") == "beispiel"
    assert rules.check_digest_username(4930231250) == "4930231250"
    for bad_user in ('a"b', "a\\b", "a b", "", "a\nb"):
        with pytest.raises(ModelError):
            rules.check_digest_username(bad_user)
    assert rules.check_flag(False, "f") is False
    with pytest.raises(ModelError, match="true or false"):
        rules.check_flag("yes", "f")


# -- entities ------------------------------------------------------------------------------------------


def test_entity_defaults() -> None:
    company = Company("X")
    assert company.area_code is None and company.media_release_networks == ()
    line = Line(1, 1, "201", "A", None, "md5", "sha")
    assert line.dial_permissions == DEFAULT_DIAL_PERMISSIONS
    trunk = Trunk(1, "carrier", ("127.0.0.2/32",), "127.0.0.2")
    assert (trunk.port, trunk.transport, trunk.outbound) == (5060, "UDP", True)
    assert trunk.username is None and trunk.password is None and trunk.from_domain is None


# -- the company document ------------------------------------------------------------------------------


def test_document_reads_trunks_permissions_and_company_keys() -> None:
    doc = _doc()
    doc["company"].update(area_code=30, media_release_networks=["10.1.0.0/16", "fd00::/8"])
    parsed = parse_company_document(doc)
    assert parsed.company.area_code == "30"
    assert parsed.company.media_release_networks == ("10.1.0.0/16", "fd00::/8")
    assert parsed.users[0].dial_permissions == DEFAULT_DIAL_PERMISSIONS
    assert parsed.users[1].dial_permissions == {"internal", "international"}
    assert parsed.trunks == (
        TrunkSpec("carrier", ("127.0.0.2/32", "192.0.2.0/24"), "127.0.0.2"),
        TrunkSpec(
            name="backup",
            sources=("2001:db8::/32",),
            host="sip.backup.example",
            port=5080,
            transport="TCP",
            username="beispiel",
            password="secret pass",
            from_domain="pbx.beispiel.example",
            outbound=False,
        ),
    )


def test_a_document_without_the_new_keys_still_reads() -> None:
    parsed = parse_company_document(_doc(trunks=None))
    assert parsed.trunks == () and parsed.company.area_code is None
    assert parsed.company.media_release_networks == ()


def test_an_outbound_only_trunk_says_so_with_empty_sources() -> None:
    doc = _doc()
    doc["trunks"][1]["sources"] = []
    assert parse_company_document(doc).trunks[1].sources == ()


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda d: d["trunks"][0]["sources"].append("carrier"), "trunks[0].sources[2]", "not an IP address"),
        (lambda d: d["trunks"][0].update(sources="127.0.0.2"), "trunks[0].sources", "must be a list"),
        (lambda d: d["trunks"][0].pop("sources"), "trunks[0].sources", "is required"),
        (lambda d: d["trunks"][0].pop("host"), "trunks[0].host", "is required"),
        (lambda d: d["trunks"][1].update(name="carrier"), "trunks[1].name", "already defined as trunks[0]"),
        (lambda d: d["trunks"][1].update(name="has space"), "trunks[1].name", "letters, digits"),
        (lambda d: d["trunks"][1].update(port=70000), "trunks[1].port", "1 to 65535"),
        (lambda d: d["trunks"][1].update(transport="SCTP"), "trunks[1].transport", "one of UDP, TCP"),
        (lambda d: d["trunks"][1].pop("username"), "trunks[1].password", "without a username"),
        (lambda d: d["trunks"][1].update(password=""), "trunks[1].password", "must not be empty"),
        (lambda d: d["trunks"][1].update(from_domain="a b"), "trunks[1].from_domain", "not a host name"),
        (lambda d: d["trunks"][1].update(outbound="no"), "trunks[1].outbound", "true or false"),
        (lambda d: d["trunks"][1].update(realm="x"), "trunks[1].realm", "unknown key"),
        (lambda d: d.update(trunks={"carrier": {}}), "trunks", "must be a list"),
        (
            lambda d: d["trunks"][1]["sources"].append("192.0.2.128/25"),
            "trunks[1].sources[1]",
            "overlaps 192.0.2.0/24 of trunks[0].sources[1]",
        ),
        (
            lambda d: d["users"][1].update(dial_permissions=["abroad"]),
            "users[1].dial_permissions[0]",
            "unknown permission 'abroad'",
        ),
        (
            lambda d: d["users"][1].update(dial_permissions="all"),
            "users[1].dial_permissions",
            "must be a list",
        ),
        (lambda d: d["company"].update(area_code="030 "), None, None),
        (lambda d: d["company"].update(area_code="0-30"), "company.area_code", "not 1-6 digits"),
        (
            lambda d: d["company"].update(media_release_networks=["10.0.0.0/8", "10.1.2.3/16"]),
            "company.media_release_networks[1]",
            "host bits set",
        ),
    ],
)
def test_document_errors_name_the_field(mutate: Any, field: str | None, message: str | None) -> None:
    doc = copy.deepcopy(_doc())
    mutate(doc)
    if field is None:
        parse_company_document(doc)  # accepted as written
        return
    with pytest.raises(ModelError) as err:
        parse_company_document(doc)
    assert err.value.field == field
    assert message is not None and message in err.value.message
