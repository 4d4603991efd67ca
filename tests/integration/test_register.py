"""REGISTER over UDP with a raw client: digest (MD5 and SHA-256), queries, removal, lines added live."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from .harness import SMALL_USERS, PbxServer, bindings_of, run_pbx
from .sipclient import SipClient, parse_challenge

pytestmark = pytest.mark.integration

ALICE = SMALL_USERS[0]
BOB = SMALL_USERS[1]


def contact_expires(contact: str) -> int | None:
    m = re.search(r";\s*expires\s*=\s*(\d+)", contact, re.IGNORECASE)
    return int(m.group(1)) if m else None


def test_options_answers_200_with_allow(pbx_server: PbxServer) -> None:
    with SipClient(pbx_server.addr) as c:
        resp = c.options()
    assert resp.status == 200, resp.text
    allow = {m.strip() for m in (resp.get("allow") or "").split(",")}
    assert {"REGISTER", "OPTIONS", "INVITE"} <= allow, resp.text


def offered_algorithms(server: PbxServer) -> list[str]:
    with SipClient(server.addr) as c:
        resp = c.register(ALICE.extension, None)
    assert resp.status == 401, resp.text
    algorithms = []
    for value in resp.get_all("www-authenticate"):
        scheme, params = parse_challenge(value)
        assert scheme.lower() == "digest", value
        assert params.get("realm") == "pbx.test", value
        assert "auth" in params.get("qop", "").split(","), value
        algorithms.append(params.get("algorithm", "MD5").upper())
    return algorithms


def test_default_challenge_is_md5(pbx_server: PbxServer) -> None:
    assert offered_algorithms(pbx_server) == ["MD5"]


def test_digest_option_offers_sha256_first(server_for: Callable[[str], PbxServer]) -> None:
    assert offered_algorithms(server_for("SHA-256")) == ["SHA-256", "MD5"]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_digest_then_query_then_remove(
    server_for: Callable[[str], PbxServer], algorithm: str
) -> None:
    pbx_server = server_for(algorithm)
    with SipClient(pbx_server.addr) as c:
        ok = c.register(ALICE.extension, ALICE.password, expires=600, algorithm=algorithm)
        assert ok.status == 200, ok.text
        mine = c.contact_uri(ALICE.extension)
        echoed = [ct for ct in ok.contacts() if mine in ct]
        assert echoed, f"200 does not echo our Contact {mine}:\n{ok.text}"
        exp = contact_expires(echoed[0])
        assert exp is not None and 590 <= exp <= 600, ok.text

        query = c.register(ALICE.extension, ALICE.password, contact=None, expires=None, algorithm=algorithm)
        assert query.status == 200, query.text
        assert any(mine in ct for ct in query.contacts()), f"query does not list {mine}:\n{query.text}"

        pbx_server.wait_bindings(
            lambda rows: any(mine in str(r.get("contact")) for r in bindings_of(rows, ALICE.extension)),
            f"{mine} for 1000",
        )

        gone = c.register(ALICE.extension, ALICE.password, expires=0, algorithm=algorithm)
        assert gone.status == 200, gone.text
        assert not any(mine in ct for ct in gone.contacts()), gone.text
        query = c.register(ALICE.extension, ALICE.password, contact=None, expires=None, algorithm=algorithm)
        assert query.status == 200 and not query.contacts(), query.text
    pbx_server.wait_bindings(lambda rows: not bindings_of(rows, ALICE.extension), "no binding for 1000")


def test_two_contacts_for_one_aor_and_star_removal(pbx_server: PbxServer) -> None:
    with SipClient(pbx_server.addr) as a, SipClient(pbx_server.addr) as b:
        assert a.register(BOB.extension, BOB.password, expires=300).status == 200
        resp = b.register(BOB.extension, BOB.password, expires=300)
        assert resp.status == 200, resp.text
        contacts = resp.contacts()
        for client in (a, b):
            assert any(client.contact_uri(BOB.extension) in ct for ct in contacts), resp.text
        star = b.register(BOB.extension, BOB.password, contact="*", expires=0)
        assert star.status == 200, star.text
        query = b.register(BOB.extension, BOB.password, contact=None, expires=None)
        assert query.status == 200 and not query.contacts(), query.text


def test_unknown_user_is_not_registered(pbx_server: PbxServer) -> None:
    with SipClient(pbx_server.addr) as c:
        resp = c.register("4999", "whatever")
    assert resp.status in (401, 403, 404), resp.text


def test_user_added_by_cli_registers_on_running_server(pbx_server: PbxServer) -> None:
    out = run_pbx(
        "user",
        "add",
        "--data-dir",
        str(pbx_server.data_dir),
        "--first",
        "Neu",
        "--last",
        "Kollege",
        "--extension",
        "3001",
        "--sip-password",
        "fresh-pw-3001",
        "--email",
        "neu@example.com",
        "--json",
    ).stdout
    assert "3001" in out, out
    with SipClient(pbx_server.addr) as c:
        # The server picks up new lines within a few seconds. At most 6 tries: every failed digest attempt
        # counts towards the source's throttle (10 in 60 s).
        time.sleep(1.0)
        for _ in range(6):
            resp = c.register("3001", "fresh-pw-3001", expires=120)
            if resp.status == 200:
                break
            time.sleep(1.0)
        assert resp.status == 200, f"line 3001 added by `pbx user add` never registered:\n{resp.text}"
