"""Wrong passwords are refused with a new challenge, and a flood of them from one source ends in 403.

The flood comes from 127.0.0.2 so that 127.0.0.1 (every other client of this server) stays unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .harness import SMALL_USERS, PbxServer
from .sipclient import SipClient

pytestmark = pytest.mark.integration

USER = SMALL_USERS[2]
FAILURE_LIMIT = 10  # the contract: 10 failed digest attempts within 60 s from one IP -> 403 for 120 s


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_wrong_password_is_challenged_again(server_for: Callable[[str], PbxServer], algorithm: str) -> None:
    pbx_server = server_for(algorithm)
    with SipClient(pbx_server.addr) as c:
        for _ in range(3):
            resp = c.register(USER.extension, "not-the-password", algorithm=algorithm)
            assert resp.status == 401, f"wrong password must be answered 401, got:\n{resp.text}"
            assert resp.get_all("www-authenticate"), resp.text
        ok = c.register(USER.extension, USER.password, algorithm=algorithm)
        assert ok.status == 200, ok.text


def test_flood_of_wrong_passwords_is_throttled(pbx_server: PbxServer) -> None:
    statuses: list[int] = []
    with SipClient(pbx_server.addr, bind_host="127.0.0.2") as attacker:
        for _ in range(FAILURE_LIMIT + 5):
            resp = attacker.register(USER.extension, "guess-" + str(len(statuses)))
            statuses.append(resp.status)
            assert resp.status != 200, f"a wrong password was accepted:\n{resp.text}"
            if resp.status == 403:
                break
        assert statuses[-1] == 403, f"no 403 after {len(statuses)} wrong passwords from 127.0.0.2: {statuses}"
        assert all(s == 401 for s in statuses[:-1]), f"before the block every answer must be 401: {statuses}"
        assert FAILURE_LIMIT - 1 <= len(statuses) <= FAILURE_LIMIT + 2, (
            f"blocked after {len(statuses)} attempts; the contract says after {FAILURE_LIMIT}: {statuses}"
        )
        # Blocked means blocked: even the right password from that source is refused now.
        right = attacker.register(USER.extension, USER.password)
        assert right.status == 403, f"blocked source got:\n{right.text}"

    # Everyone else is served normally, the same user included.
    with SipClient(pbx_server.addr) as c:
        assert c.options().status == 200
        ok = c.register(USER.extension, USER.password)
        assert ok.status == 200, f"127.0.0.1 must be unaffected by 127.0.0.2's block:\n{ok.text}"
        wrong = c.register(SMALL_USERS[3].extension, "nope")
        assert wrong.status == 401, wrong.text
