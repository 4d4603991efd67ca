"""Company files: the example, a generated bulk file, all-or-nothing imports and the YAML loader's rules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.model import ModelError
from engine.sip.auth import compute_ha1
from engine.store import Store, default_company_file, load_company_file, parse_company_yaml
from engine.store import store as store_module

REPO_ROOT = Path(__file__).resolve().parents[2]


EXAMPLE = REPO_ROOT / "config" / "example-company.yaml"


def bulk_company(count: int, first: int = 100000, realm: str = "pbx.test") -> dict[str, Any]:
    """The shape the integration tests generate: users u<ext> with password pw<ext>."""
    return {
        "version": 1,
        "company": {"name": "Bulk GmbH", "sip_realm": realm, "timezone": "Europe/Berlin", "country": "DE"},
        "users": [
            {"first_name": "Load", "last_name": f"U{n}", "extension": str(n), "sip_password": f"pw{n}"}
            for n in range(first, first + count)
        ],
    }


def test_the_packaged_example_is_the_config_example() -> None:
    assert default_company_file().read_bytes() == EXAMPLE.read_bytes()
    packaged = default_company_file().parent / "sounds"
    shipped = sorted(p.name for p in (EXAMPLE.parent / "sounds").glob("*.wav"))
    assert shipped == ["closed.wav", "main-menu.wav"]
    for name in shipped:
        assert (packaged / name).read_bytes() == (EXAMPLE.parent / "sounds" / name).read_bytes()


def test_example_company_imports(store: Store) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    summary = store.import_company(load_company_file(EXAMPLE))
    assert (summary.company, summary.users, summary.lines, summary.numbers, summary.dial_plans) == (
        "Beispiel GmbH",
        5,
        5,
        2,
        1,
    )
    assert summary.config_version == store.config_version() == 1
    assert not store.is_empty()
    company = store.company()
    assert (company.sip_realm, company.timezone, company.country) == (
        "pbx.beispiel.example",
        "Europe/Berlin",
        "DE",
    )
    creds = store.sip_credentials()
    assert sorted(creds) == ["201", "202", "203", "204", "205"]
    for user in raw["users"]:
        c = creds[user["extension"]]
        assert c.realm == company.sip_realm
        assert c.ha1_md5 == compute_ha1(user["extension"], company.sip_realm, user["sip_password"], "MD5")
        assert c.ha1_sha256 == compute_ha1(
            user["extension"], company.sip_realm, user["sip_password"], "SHA-256"
        )
    numbers = {n.e164: (n.route_kind, n.route_target) for n in store.numbers()}
    assert numbers == {"+493023125100": ("dial_plan", "main"), "+493023125204": ("extension", "204")}
    (plan,) = store.dial_plans()
    assert plan.name == "main"
    assert plan.graph["start"] == "office_hours"
    assert plan.graph["nodes"]["office_hours"]["next"] == {"open": "menu", "closed": "closed_message"}
    objects = {(o.kind, o.name): o.spec for o in store.routing_objects()}
    assert objects[("schedules", "office-hours")]["open"][0]["to"] == "18:00"
    assert objects[("ring_groups", "sales")]["members"] == [{"line": "202"}, {"line": "203"}]
    assert objects[("sound_clips", "main-menu")]["file"] == "sounds/main-menu.wav"
    assert objects[("mailboxes", "office")]["number"] == "800"
    lines = {line.extension: line for line in store.lines()}
    assert lines["201"].name == "Empfang" and lines["201"].external_caller_id == "+493023125100"
    assert {u.email for u in store.users()} >= {"anna.schmidt@beispiel.example"}


def test_a_generated_thousand_user_file_imports(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bulk.yaml"
    path.write_text(yaml.safe_dump(bulk_company(1000)))
    summary = store.import_company(load_company_file(path))
    assert (summary.users, summary.lines) == (1000, 1000)
    creds = store.sip_credentials()
    assert len(creds) == 1000 and min(creds) == "100000" and max(creds) == "100999"
    for ext in ("100000", "100500", "100999"):
        assert creds[ext].ha1_md5 == compute_ha1(ext, "pbx.test", f"pw{ext}", "MD5")
        assert creds[ext].ha1_sha256 == compute_ha1(ext, "pbx.test", f"pw{ext}", "SHA-256")


def test_ten_thousand_users_import_in_seconds(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "bulk.yaml"
    path.write_text(yaml.safe_dump(bulk_company(10_000)))
    started = time.perf_counter()
    summary = store.import_company(load_company_file(path))
    elapsed = time.perf_counter() - started
    assert summary.users == 10_000 and len(store.sip_credentials()) == 10_000
    assert elapsed < 10, f"importing 10,000 users took {elapsed:.1f} s"


def test_a_bad_row_changes_nothing_and_names_the_field(store: Store) -> None:
    store.import_company(load_company_file(EXAMPLE))
    before = (store.config_version(), store.lines(), store.users())
    doc = bulk_company(10)
    doc["users"][3]["extension"] = "12a"
    with pytest.raises(ModelError) as err:
        store.import_company(doc)
    assert err.value.field == "users[3].extension"
    assert (store.config_version(), store.lines(), store.users()) == before


def test_a_failure_while_writing_rolls_everything_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.import_company(load_company_file(EXAMPLE))
    before = (store.config_version(), store.lines(), store.numbers(), store.dial_plans(), store.company())
    calls = 0
    real = store_module.ha1_pair

    def failing(extension: str, realm: str, password: str) -> tuple[str, str]:
        nonlocal calls
        calls += 1
        if calls == 500:
            raise RuntimeError("disk on fire")
        return real(extension, realm, password)

    monkeypatch.setattr(store_module, "ha1_pair", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.import_company(bulk_company(1000))
    assert (
        store.config_version(),
        store.lines(),
        store.numbers(),
        store.dial_plans(),
        store.company(),
    ) == before


def test_import_replaces_the_previous_configuration(store: Store) -> None:
    store.import_company(load_company_file(EXAMPLE))
    store.import_company(bulk_company(3))
    assert sorted(store.sip_credentials()) == ["100000", "100001", "100002"]
    assert store.numbers() == [] and store.dial_plans() == []
    assert store.company().name == "Bulk GmbH" and store.config_version() == 2


def test_yaml_loader_keeps_phone_values_as_written() -> None:
    doc = parse_company_yaml(
        """
company: {name: X, sip_realm: pbx.test, country: NO}
users:
  - {first_name: A, last_name: B, extension: 0201, sip_password: 1234}
  - {first_name: C, last_name: D, extension: 202, sip_password: on}
dial_plans:
  - name: main
    graph: {open: 18:00, holiday: 2025-12-24, flag: true}
"""
    )
    assert doc["company"]["country"] == "NO"
    assert doc["users"][0]["extension"] == "0201" and doc["users"][1]["extension"] == 202
    assert doc["users"][1]["sip_password"] == "on"
    assert doc["dial_plans"][0]["graph"] == {"open": "18:00", "holiday": "2025-12-24", "flag": True}


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("company: [unclosed", "", "not valid YAML"),
        ("- just a list", "", "is a YAML mapping"),
        (
            "company: {name: X, sip_realm: pbx.test}\nusers: [{first_name: A}]",
            "users[0].last_name",
            "must be",
        ),
    ],
)
def test_load_company_file_rejects_bad_files(tmp_path: Path, text: str, field: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ModelError, match=message) as err:
        load_company_file(path)
    assert err.value.field == field


def test_a_committed_configuration_change_calls_on_config_change_after_the_commit(store: Store) -> None:
    """How a running engine reloads at once when its own admin API changes the configuration: the hook runs
    after the commit (a reader then sees the new version), once per change, and not for registrations or
    CDRs, which are no configuration."""
    seen: list[int] = []
    store.on_config_change = lambda: seen.append(store.config_version())
    store.import_company(load_company_file(EXAMPLE))
    assert seen == [1]
    store.write_bindings([], [], ["201"])
    store.write_cdrs([])
    assert seen == [1]
    store.add_user("Neu", "Person", None, None, "a-long-enough-password")
    assert seen == [1, 2]


def test_the_company_hold_clip_is_imported_and_read_back(tmp_path: Path) -> None:
    """issue 19: company.hold_clip, a sound clip's name, survives the import and the store (schema v6)."""
    doc = load_company_file(EXAMPLE)
    doc["company"]["hold_clip"] = "closed"
    store = Store.open(tmp_path)
    try:
        store.import_company(doc)
        assert store.company().hold_clip == "closed"
        assert store.config_snapshot().company.hold_clip == "closed"
        doc["company"].pop("hold_clip")
        store.import_company(doc)
        assert store.company().hold_clip is None
    finally:
        store.close()
