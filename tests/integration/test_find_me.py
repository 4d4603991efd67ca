"""Find-me/follow-me end to end (issue 19 part 5) on a real ``pbx serve``: line 202's steps are set over
the admin API (203 for 5 s, then a mobile number); a pjsua2 phone calls 202, which rings first, then 203
(after 202 was cancelled), then the SIPp carrier gets the mobile number with 202's caller ID and answers;
the call record shows the steps in order, and nothing is left in the engine's call tables. A bad step
gets a 422 naming its field. A queue never offers a call to an agent in DND, and does again after."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .test_dialplan_calls import is_ended
from .test_star_codes import CALLER_ID_202, Rig, rig  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

GAUGES = ("pbx_active_calls", "pbx_call_dialogs", "pbx_call_branches", "pbx_relay_sessions")


def assert_idle(pbx: Rig, timeout: float = 10.0) -> None:
    """No call, dialog, ringing leg or relay session is left (``/metrics``)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = pbx.api.get("/metrics")
        resp.raise_for_status()
        seen = {s.name: s.value for f in text_string_to_metric_families(resp.text) for s in f.samples
                if s.name in GAUGES}
        if all(seen.get(name, -1) == 0 for name in GAUGES):
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"the engine kept {seen}\n{pbx.server.log_tail(80)}")
        time.sleep(0.2)


def set_options(pbx: Rig, ext: str, options: dict[str, Any]) -> Any:
    line = next(ln for ln in pbx.get("/api/lines") if ln["extension"] == ext)
    return pbx.api.patch(f"/api/lines/{line['id']}", json={"options": options})



def test_a_call_rings_the_line_then_each_step_in_order_then_the_carrier_answers(rig: Rig) -> None:  # noqa: F811
    bad = set_options(rig, "202", {"find_me_follow_me": [{"numbers": ["203"], "ring_seconds": 2}]})
    assert bad.status_code == 422 and "options.find_me_follow_me[0].ring_seconds" in bad.text
    ok = set_options(rig, "202", {"find_me_follow_me": [
        {"numbers": ["203"], "ring_seconds": 5}, {"numbers": ["+4915112345678"], "ring_seconds": 20}]})
    assert ok.status_code == 200, ok.text
    olga = rig.phone("olga", "201")
    sam = rig.phone("sam", "202")  # rings, never answers
    sara = rig.phone("sara", "203")  # rings after 202, never answers
    carrier = rig.sipp_uas("carrier")
    time.sleep(0.3)
    olga.call(rig.uri("202"))
    assert sam.wait_for("incoming_call", timeout=10.0)
    assert not any(e.get("ev") == "incoming_call" for e in sara.events)  # the line first, alone
    sam.wait_for("call_state", is_ended, timeout=10.0)  # 202 rang its 4 s and was cancelled
    assert sara.wait_for("incoming_call", timeout=10.0)  # then step 1
    sara.wait_for("call_state", is_ended, timeout=10.0)  # 5 s, cancelled
    olga.wait_state("CONFIRMED", timeout=20.0)  # then step 2: the carrier answered
    olga.hangup()
    olga.wait_for("call_state", is_ended, timeout=10.0)
    carrier.communicate(timeout=30)
    assert carrier.returncode == 0
    log = (rig.tmp / "carrier.msg").read_text(errors="replace")
    assert "INVITE sip:+4915112345678@127.0.0.2" in log
    pai = next(ln for ln in log.splitlines() if ln.lower().startswith("p-asserted-identity"))
    assert CALLER_ID_202 in pai  # the line owner's caller ID, as a forward
    path = rig.cdr_paths(1)[0]
    assert path.index("@line/202:find me 1") < path.index("@line/202:find me 2"), path
    assert "@line/202:answered" in path
    assert len([e for e in sam.events if e.get("ev") == "incoming_call"]) == 1
    assert len([e for e in sara.events if e.get("ev") == "incoming_call"]) == 1
    assert_idle(rig)


def test_a_queue_never_offers_a_call_to_an_agent_in_dnd(rig: Rig) -> None:  # noqa: F811
    olga = rig.phone("olga", "201")
    sara = rig.phone("sara", "203")  # the sales queue's (static) agent
    rig.star(sara, "*78", "star-dnd-on")
    rig.until("203's DND", lambda: rig.line_options("203").get("do_not_disturb") is True)
    olga.call(rig.uri("411"))
    olga.wait_state("CONFIRMED", timeout=15.0)  # the queue answers: hold music
    time.sleep(4.0)
    assert not any(e.get("ev") == "incoming_call" for e in sara.events)  # in DND: never offered
    olga.hangup()
    olga.wait_for("call_state", is_ended, timeout=10.0)
    rig.star(sara, "*79", "star-dnd-off")
    rig.until("203's DND off", lambda: "do_not_disturb" not in rig.line_options("203"))
    olga.call(rig.uri("411"))
    assert sara.wait_for("incoming_call", timeout=15.0)  # out of DND: offered again
    olga.hangup()
    olga.wait_for("call_state", is_ended, timeout=10.0)
    sara.wait_for("call_state", is_ended, timeout=10.0)
    assert_idle(rig)
