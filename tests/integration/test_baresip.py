"""baresip (Debian 1.0, a second independent SIP stack) registers with digest auth; the server lists its
binding, and removes it when baresip unregisters."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import PEERS_DIR, SMALL_USERS, PbxServer, PeerProcess, bindings_of, free_port, require_tool
from .sipclient import SipClient

pytestmark = pytest.mark.integration

USER = SMALL_USERS[7]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_registers(
    pbx_server: PbxServer, peers: Callable[..., PeerProcess], tmp_path: Path, transport: str
) -> None:
    require_tool("baresip", "apt-get install baresip (scripts/test.sh does)")
    sip_port = free_port(span=2)  # baresip also binds TLS on sip_port + 1
    workdir = tmp_path / "baresip"
    phone = peers(
        f"baresip-{transport}",
        [
            sys.executable,
            str(PEERS_DIR / "baresip_phone.py"),
            "--user", USER.extension,
            "--password", USER.password,
            "--registrar", f"{pbx_server.host}:{pbx_server.port}",
            "--transport", transport,
            "--sip-port", str(sip_port),
            "--ctrl-port", str(free_port()),
            "--workdir", str(workdir),
            "--max-seconds", "60",
        ],
        logs=[workdir / "baresip.log"],
    )  # fmt: skip
    phone.expect(lambda ev: ev.get("ev") == "ready", "ctrl_tcp connection", timeout=15)
    try:
        phone.expect(
            lambda ev: ev.get("ev") == "registered",
            "registration",
            fail_on=lambda ev: ev.get("ev") == "register_failed",
        )
    except pytest.fail.Exception as exc:
        log = (workdir / "baresip.log").read_text(errors="replace")
        if "Function not implemented" in log:
            pytest.fail(
                f"{exc}\n\nbaresip 1.0 (libre) gives up with ENOSYS as soon as ANY WWW-Authenticate "
                "in the 401 names an algorithm other than MD5 (here SHA-256), whatever the order: it needs "
                "a 401 that offers MD5 only.",
                pytrace=False,
            )
        raise
    contact = f"127.0.0.1:{sip_port}"

    def listed(rows: list[dict[str, object]]) -> bool:
        return any(contact in str(r.get("contact")) for r in bindings_of(rows, USER.extension))  # type: ignore[arg-type]

    pbx_server.wait_bindings(listed, f"baresip's binding ({contact})")
    with SipClient(pbx_server.addr) as c:
        query = c.register(USER.extension, USER.password, contact=None, expires=None)
    assert query.status == 200 and any(contact in ct for ct in query.contacts()), query.text

    phone.send("unregister")
    phone.expect(lambda ev: ev.get("ev") == "unregistering", "unregistering")
    pbx_server.wait_bindings(lambda rows: not listed(rows), f"baresip's binding ({contact}) removed")

    assert phone.close() == 0, phone.describe()
