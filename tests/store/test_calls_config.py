"""The store side of calls' configuration (issue 3): trunks, dial permissions, area code and media release
networks through an import and ``add_user``, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.model import DEFAULT_DIAL_PERMISSIONS, ModelError, Trunk
from engine.store import Store, load_company_file
from tests.store.conftest import OpenStore

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config" / "example-company.yaml"


def company(**company_over: Any) -> dict[str, Any]:
    return {
        "company": {"name": "Calls GmbH", "sip_realm": "pbx.test", **company_over},
        "users": [
            {"first_name": "A", "last_name": "One", "extension": "201", "sip_password": "pw"},
            {
                "first_name": "B",
                "last_name": "Two",
                "extension": "202",
                "sip_password": "pw",
                "dial_permissions": ["internal", "national", "international"],
            },
            {"first_name": "C", "last_name": "Three", "sip_password": "pw", "dial_permissions": []},
        ],
        "trunks": [
            {
                "name": "primary",
                "sources": ["192.0.2.0/24", "2001:db8::10"],
                "host": "sip.carrier.example",
                "port": 5080,
                "transport": "TCP",
                "username": "acct-4711",
                "password": 'p"w\\ d',
                "from_domain": "pbx.calls.example",
            },
            {"name": "fallback", "sources": [], "host": "198.51.100.7", "outbound": False},
        ],
    }


def test_the_example_company_has_a_carrier_and_an_area_code(store: Store) -> None:
    summary = store.import_company(load_company_file(EXAMPLE))
    assert summary.trunks == 1
    assert store.trunks() == [
        Trunk(
            id=store.trunks()[0].id,
            name="carrier",
            sources=("127.0.0.2/32",),
            host="127.0.0.2",
            port=5080,
            transport="UDP",
            username="beispiel",
            password="example-carrier-change-me",
            from_domain=None,
            outbound=True,
        )
    ]
    assert store.company().area_code == "30" and store.company().media_release_networks == ()
    permissions = {line.extension: line.dial_permissions for line in store.lines()}
    assert permissions["201"] == {"internal", "local", "national", "mobile", "international"}
    assert permissions["202"] == DEFAULT_DIAL_PERMISSIONS


def test_trunks_and_permissions_round_trip(store: Store) -> None:
    doc = company(area_code="89", media_release_networks=["10.1.0.0/16", "fd00::/8"])
    summary = store.import_company(doc)
    assert summary.trunks == 2
    primary, fallback = store.trunks()  # file order: the first outbound trunk carries outbound calls
    assert primary.id < fallback.id
    assert (primary.name, primary.sources, primary.host, primary.port, primary.transport) == (
        "primary",
        ("192.0.2.0/24", "2001:db8::10/128"),
        "sip.carrier.example",
        5080,
        "TCP",
    )
    assert (primary.username, primary.password, primary.from_domain, primary.outbound) == (
        "acct-4711",
        'p"w\\ d',  # in clear text, as given: we answer digest challenges with it
        "pbx.calls.example",
        True,
    )
    assert fallback == Trunk(fallback.id, "fallback", (), "198.51.100.7", outbound=False)
    got = store.company()
    assert (got.area_code, got.media_release_networks) == ("89", ("10.1.0.0/16", "fd00::/8"))
    lines = {line.extension: line.dial_permissions for line in store.lines()}
    assert lines == {
        "201": DEFAULT_DIAL_PERMISSIONS,
        "202": {"internal", "national", "international"},
        "203": frozenset(),
    }


def test_an_import_replaces_the_trunks_and_a_bad_one_changes_nothing(store: Store) -> None:
    store.import_company(company())
    store.import_company(load_company_file(EXAMPLE))
    assert [t.name for t in store.trunks()] == ["carrier"]
    before = (store.trunks(), store.company(), store.lines(), store.config_version())
    bad = company()
    bad["trunks"][1]["sources"] = ["192.0.2.64/26"]
    with pytest.raises(ModelError) as err:
        store.import_company(bad)
    assert err.value.field == "trunks[1].sources[0]" and "overlaps 192.0.2.0/24" in err.value.message
    assert (store.trunks(), store.company(), store.lines(), store.config_version()) == before
    store.import_company({"company": {"name": "Bare", "sip_realm": "pbx.test"}})
    assert store.trunks() == [] and store.company().area_code is None


def test_add_user_takes_dial_permissions(open_store: OpenStore) -> None:
    store = open_store()
    _, default_line, _ = store.add_user("A", "One", None, None, "pw")
    assert default_line.dial_permissions == DEFAULT_DIAL_PERMISSIONS
    _, line, _ = store.add_user("B", "Two", None, None, "pw", dial_permissions=["international", "internal"])
    assert line.dial_permissions == {"internal", "international"}
    _, lobby, _ = store.add_user("C", "Three", None, None, "pw", dial_permissions=[])
    assert lobby.dial_permissions == frozenset()
    with pytest.raises(ModelError) as err:
        store.add_user("D", "Four", None, None, "pw", dial_permissions=["internal", "satellite"])
    assert err.value.field == "dial_permissions[1]"
    again = {line.extension: line for line in open_store().lines()}
    assert again["201"] == default_line and again["202"] == line and again["203"] == lobby
    assert len(again) == 3


def test_the_default_company_of_an_empty_store_has_the_new_defaults(store: Store) -> None:
    store.add_user("A", "One", None, None, "pw")
    got = store.company()
    assert got.area_code is None and got.media_release_networks == ()
    assert store.trunks() == []
