"""Registrations are persisted: after SIGTERM and a new start on the same data dir they are still there.
One engine per data directory: a second refuses, and a killed one leaves no stale lock."""

from __future__ import annotations

import subprocess

import pytest

from .harness import SMALL_USERS, PbxServer, bindings_of, free_port, pbx_command
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


def test_one_engine_per_data_dir_and_no_stale_lock_after_kill_9(pbx_server: PbxServer) -> None:
    second = subprocess.run(
        [*pbx_command(), "serve", "--data-dir", str(pbx_server.data_dir), "--sip", f"127.0.0.1:{free_port()}",
         "--http", "off"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert second.returncode == 1, second
    assert f"pbx serve: the data directory {pbx_server.data_dir} is in use by another process " \
           f"(pid {pbx_server.pid})" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    with SipClient(pbx_server.addr) as c:  # the first engine goes on serving
        assert c.register(USER.extension, USER.password, expires=60).status == 200

    pbx_server.kill()  # SIGKILL: the kernel drops the lock with the process
    assert pbx_server.exit_codes[-1] == -9
    pbx_server.exit_codes.pop()  # the kill is this test's doing, not an unclean shutdown
    pbx_server.start()
    with SipClient(pbx_server.addr) as c:
        assert c.register(USER.extension, USER.password, expires=60).status == 200
