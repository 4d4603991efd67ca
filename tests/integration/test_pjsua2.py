"""pjsua2 (pjsip 2.15, a real SIP stack) registers with digest auth and unregisters; the server's state is
checked after each step through a REGISTER query and `pbx reg list`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import PEERS_DIR, SMALL_USERS, PbxServer, PeerProcess, bindings_of, require_module
from .sipclient import SipClient

pytestmark = pytest.mark.integration

USER = SMALL_USERS[6]


def is_reg(active: bool) -> Callable[[dict[str, object]], bool]:
    return lambda ev: ev.get("ev") == "reg_state" and ev.get("active") is active and ev.get("code") == 200


def reg_failed(ev: dict[str, object]) -> bool:
    return ev.get("ev") in ("reg_state", "error") and ev.get("code") != 200


def queried_contacts(server: PbxServer) -> list[str]:
    with SipClient(server.addr) as c:
        resp = c.register(USER.extension, USER.password, contact=None, expires=None)
    assert resp.status == 200, f"REGISTER query answered:\n{resp.text}"
    return resp.contacts()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pjsua2_registers_and_unregisters(
    pbx_server: PbxServer, peers: Callable[..., PeerProcess], tmp_path: Path, transport: str
) -> None:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    phone = peers(
        f"pjsua2-{transport}",
        [
            sys.executable,
            str(PEERS_DIR / "pjsua2_phone.py"),
            "--user",
            USER.extension,
            "--password",
            USER.password,
            "--registrar",
            f"{pbx_server.host}:{pbx_server.port}",
            "--transport",
            transport,
            "--expires",
            "300",
            "--max-seconds",
            "90",
            "--log-file",
            str(tmp_path / f"pjsua2-{transport}.log"),
        ],
    )
    local = str(phone.expect(lambda ev: ev.get("ev") == "ready", "start-up", timeout=20)["local"])
    phone.expect(is_reg(True), "registration (200, active)", fail_on=reg_failed)

    def ours(rows: list[dict[str, object]]) -> bool:
        """pjsua2's binding: our User-Agent, and over UDP our port (over TCP the Contact carries the
        connection's ephemeral port, not the listener's)."""
        return any(
            r.get("user_agent") == "pbx-engine-tests pjsua2"
            and (transport == "tcp" or local in str(r.get("contact")))
            for r in bindings_of(rows, USER.extension)  # type: ignore[arg-type]
        )

    rows = pbx_server.wait_bindings(ours, f"pjsua2's binding ({local}, {transport})")
    contact = next(str(r["contact"]) for r in bindings_of(rows, USER.extension) if r.get("user_agent"))
    assert (transport == "tcp") == ("transport=tcp" in contact.lower()), contact
    hostport = contact.split("@", 1)[1].split(";", 1)[0]
    assert any(hostport in ct for ct in queried_contacts(pbx_server)), f"REGISTER query misses {contact}"

    phone.send("unregister")
    phone.expect(is_reg(False), "unregistration (200, inactive)", fail_on=reg_failed)
    pbx_server.wait_bindings(lambda rows: not ours(rows), f"no binding for {local} after unregister")
    assert not any(hostport in ct for ct in queried_contacts(pbx_server))

    phone.send("register")
    phone.expect(is_reg(True), "second registration", fail_on=reg_failed)
    pbx_server.wait_bindings(ours, f"pjsua2's binding ({local}) again")

    rc = phone.close()  # unregisters on the way out
    assert rc == 0, phone.describe()
    assert any(ev.get("ev") == "exit" for ev in phone.events), phone.describe()
    pbx_server.wait_bindings(lambda rows: not ours(rows), "the binding removed when pjsua2 quit")
