"""Registrations are persisted: after SIGTERM and a new start on the same data dir they are still there."""

from __future__ import annotations

import pytest

from .harness import SMALL_USERS, PbxServer, bindings_of
from .sipclient import SipClient

pytestmark = pytest.mark.integration

USER = SMALL_USERS[4]


def test_restart_keeps_registrations(pbx_server: PbxServer) -> None:
    with SipClient(pbx_server.addr) as c:
        ok = c.register(USER.extension, USER.password, expires=3600)
        assert ok.status == 200, ok.text
        mine = c.contact_uri(USER.extension)
    pbx_server.wait_bindings(
        lambda rows: any(mine in str(r.get("contact")) for r in bindings_of(rows, USER.extension)),
        f"{mine} before the restart",
    )

    pbx_server.restart()  # SIGTERM (must exit 0), then start on the same data dir and port

    rows = pbx_server.reg_list()
    kept = [r for r in bindings_of(rows, USER.extension) if mine in str(r.get("contact"))]
    assert kept, f"`pbx reg list` lost {mine} over the restart: {rows}"
    assert all(k in kept[0] for k in ("aor", "contact", "expires_at")), kept[0]

    with SipClient(pbx_server.addr) as q:  # a different socket: the binding is not ours to refresh
        query = q.register(USER.extension, USER.password, contact=None, expires=None)
    assert query.status == 200, query.text
    assert any(mine in ct for ct in query.contacts()), (
        f"REGISTER query after restart misses {mine}:\n{query.text}"
    )
