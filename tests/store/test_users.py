"""Adding users: next free extension, uniqueness, generated passwords, the empty-store company."""

from __future__ import annotations

import pytest

from engine.model import DEFAULT_SIP_REALM, ModelError
from engine.sip.auth import compute_ha1
from engine.store import Store


def test_first_user_on_an_empty_store_gets_201_and_a_default_company(store: Store) -> None:
    assert store.is_empty()
    user, line, password = store.add_user("Anna", "Schmidt", "anna@example.org", None, None)
    assert line.extension == "201" and line.user_id == user.id and line.name == "Anna Schmidt"
    assert not store.is_empty()
    company = store.company()
    assert company.sip_realm == DEFAULT_SIP_REALM and company.name != "Beispiel GmbH"
    assert len(password) >= 16 and password.isalnum()
    cred = store.sip_credentials()["201"]
    assert cred.ha1_md5 == compute_ha1("201", company.sip_realm, password, "MD5")
    assert cred.ha1_sha256 == compute_ha1("201", company.sip_realm, password, "SHA-256")


def test_next_free_extension_fills_the_lowest_gap(store: Store) -> None:
    extensions = [
        store.add_user("A", "A", None, ext, "pw")[1].extension for ext in (None, None, "205", "203")
    ]
    assert extensions == ["201", "202", "205", "203"]
    assert store.add_user("B", "B", None, None, "pw")[1].extension == "204"
    assert store.add_user("C", "C", None, None, "pw")[1].extension == "206"


def test_generated_passwords_differ(store: Store) -> None:
    passwords = {store.add_user("A", str(i), None, None, None)[2] for i in range(5)}
    assert len(passwords) == 5


def test_a_taken_extension_is_refused_by_field_and_changes_nothing(store: Store) -> None:
    store.add_user("Anna", "Schmidt", None, "201", "pw")
    version = store.config_version()
    with pytest.raises(ModelError) as err:
        store.add_user("Bob", "Braun", None, "201", "pw")
    assert (err.value.field, str(err.value)) == ("extension", "extension: 201 is already in use")
    assert store.config_version() == version and len(store.users()) == 1


def test_email_is_unique_ignoring_case(store: Store) -> None:
    store.add_user("Anna", "Schmidt", "Anna@Example.org", None, "pw")
    with pytest.raises(ModelError) as err:
        store.add_user("Anne", "Schmitt", "anna@example.org", None, "pw")
    assert err.value.field == "email"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "X", None, None, None), "first_name"),
        (("X", " ", None, None, None), "last_name"),
        (("X", "Y", "nope", None, None), "email"),
        (("X", "Y", None, "12", None), "extension"),
        (("X", "Y", None, "1234567", None), "extension"),
        (("X", "Y", None, None, ""), "sip_password"),
    ],
)
def test_bad_values_name_their_field(
    store: Store, args: tuple[str, str, str | None, str | None, str | None], field: str
) -> None:
    with pytest.raises(ModelError) as err:
        store.add_user(*args)
    assert err.value.field == field
    assert store.is_empty()


def test_company_first_extension_is_respected(store: Store) -> None:
    store.import_company(
        {
            "company": {"name": "X", "sip_realm": "pbx.test", "first_extension": 1000},
            "users": [{"first_name": "A", "last_name": "B", "extension": "1000", "sip_password": "pw"}],
        }
    )
    assert store.add_user("C", "D", None, None, "pw")[1].extension == "1001"
    assert store.sip_credentials()["1001"].realm == "pbx.test"


def test_every_change_bumps_config_version(store: Store) -> None:
    assert store.config_version() == 0
    store.add_user("A", "B", None, None, "pw")
    store.add_user("C", "D", None, None, "pw")
    assert store.config_version() == 2
