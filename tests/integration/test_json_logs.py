"""``pbx serve --log-format json`` (issue 17): every line the server logs is one JSON object with time,
level, logger and message, and the lines logged while handling a call's SIP messages carry its Call-ID."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from .harness import SMALL_USERS, PbxServer
from .sipclient import SipClient
from .test_calls_sipp import invite

pytestmark = pytest.mark.integration


def test_json_log_lines_carry_the_call_id(pbx_factory: Callable[..., PbxServer]) -> None:
    server = pbx_factory(log_level="debug", extra_args=["--log-format", "json"])
    with SipClient(server.addr, domain="pbx.test") as c:
        resp = invite(c, "99", SMALL_USERS[0].extension)
    assert resp.status == 404
    call_id = resp.get("call-id")
    assert call_id
    server.stop()

    lines = [ln for ln in server.log_text().splitlines() if ln and not ln.startswith("=== harness")]
    records = [json.loads(ln) for ln in lines]  # every line is JSON (a plain one fails here)
    assert records
    for r in records:
        assert {"time", "level", "logger", "message"} <= r.keys(), r
        assert r["time"].endswith("Z")
    mine = [r for r in records if r.get("call_id") == call_id]
    assert mine, f"no line carries the call's Call-ID {call_id}: {records[-10:]}"
    assert any("INVITE" in r["message"] for r in mine), mine
    assert any(r["message"].startswith("pbx-engine serving") and "call_id" not in r for r in records)
