"""Finished calls are freed by reference counting alone (issue 11, point 5).

The cyclic collector's passes over thousands of live calls stalled the event loop; a call, its legs, its
sides and their INVITE sessions must therefore hold no reference cycle once the call is over. With the
collector disabled, calls of every ending run to completion; a collection with ``DEBUG_SAVEALL`` then keeps
whatever only a cycle held, and none of it may be the engine's. The rigs (the in-memory network and its
phones, which are cyclic on purpose) stay alive meanwhile, so their objects are still reachable and not
counted.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from tests.call.test_b2bua import PBX_URI, Rig
from tests.sip.harness import is_request, sent_from


def _answered_caller_hangs_up() -> Rig:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, rig.alice.bye)
    return rig


def _answered_callee_hangs_up() -> Rig:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, rig.bobs[0].bye)
    return rig


def _busy() -> Rig:
    rig = Rig(modes=("busy",))
    rig.alice.call(PBX_URI, rig.pbx)
    return rig


def _caller_cancels() -> Rig:
    rig = Rig(modes=("ring",))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(2.0, rig.alice.cancel)
    return rig


def _ring_timeout() -> Rig:
    rig = Rig(modes=("ring",), ring_timeout=5.0)
    rig.alice.call(PBX_URI, rig.pbx)
    return rig


def _never_acked() -> Rig:
    rig = Rig()
    rig.net.drop(lambda d: is_request("ACK")(d) and sent_from(rig.alice.node)(d), times=None)
    rig.alice.call(PBX_URI, rig.pbx)
    return rig


def _session_timer_expires() -> Rig:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "90;refresher=uac"), ("Supported", "timer")))
    return rig


def _late_offer() -> Rig:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, late_offer=True)
    rig.at(3.0, rig.alice.bye)
    return rig


def _forked_first_answer_wins() -> Rig:
    rig = Rig(callees=2, modes=("answer", "ring"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(4.0, rig.alice.bye)
    return rig


def _hold_and_resume() -> Rig:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(6.0, lambda: rig.alice.reinvite("sendrecv"))
    rig.at(9.0, rig.bobs[0].bye)
    return rig


ENDINGS: dict[str, Callable[[], Rig]] = {
    "caller hangs up": _answered_caller_hangs_up,
    "callee hangs up": _answered_callee_hangs_up,
    "busy": _busy,
    "caller cancels": _caller_cancels,
    "ring timeout": _ring_timeout,
    "2xx never ACKed": _never_acked,
    "session timer expires": _session_timer_expires,
    "late offer": _late_offer,
    "forked, first answer wins": _forked_first_answer_wins,
    "hold and resume": _hold_and_resume,
}


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_calls_of_every_ending_leave_nothing_for_the_cyclic_collector(no_collector: None) -> None:
    rigs = []
    for make in ENDINGS.values():
        rig = make()
        rig.net.run(until=200.0)
        assert rig.cdrs, "the call ended and was recorded"
        rig.assert_clean()
        rigs.append(rig)
    gc.collect()
    cyclic = Counter(type(obj).__qualname__ for obj in gc.garbage
                     if type(obj).__module__.startswith("engine."))
    assert not cyclic, f"finished calls left reference cycles: {dict(cyclic)}"
    assert len(rigs) == len(ENDINGS)


def test_the_check_sees_a_cycle_when_there_is_one(no_collector: None) -> None:
    """The measurement itself: a finished call whose side is linked back to it again is found."""
    rig = _answered_caller_hangs_up()
    rig.net.run(until=1.5)  # answered, still up
    (call,) = rig.manager.calls.values()
    side = call.caller_side
    rig.net.run(until=200.0)
    rig.assert_clean()
    assert call.caller_side is None, "the manager unlinked the ended call"
    call.caller_side = side  # what the manager must not leave behind: Call <-> Side
    del call, side
    gc.collect()
    found = {type(obj).__qualname__ for obj in gc.garbage if type(obj).__module__.startswith("engine.")}
    assert {"Call", "Side"} <= found
    assert rig.cdrs


def _reachable(root: object, stop: tuple[object, ...]) -> list[object]:
    """Every object reachable from ``root`` without passing through ``stop`` (the shared machinery)."""
    seen: set[int] = set()
    out: list[object] = []
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type) or any(obj is s for s in stop):
            continue
        seen.add(id(obj))
        out.append(obj)
        todo.extend(gc.get_referents(obj))
    return out


def test_a_held_call_keeps_no_parsed_invite_or_offer() -> None:
    """Once bridged, a call no longer needs the caller's INVITE, its offer or our INVITE to the callee
    (the dialogs, the sessions and the SDP bytes are what a held call uses): half its memory went there."""
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))  # the held call still works on what it kept
    rig.at(40.0, rig.alice.bye)
    rig.net.run(until=35.0)  # answered, re-INVITEd, and the INVITE transactions' 32 s are over
    (call,) = rig.manager.calls.values()
    m = rig.manager
    held = _reachable(call, (m, m.sides, m.anchor, m.cdr, m.calls, m.legs, m.dialogs, rig.pbx.endpoint))
    kinds = {type(obj).__name__ for obj in held}
    assert "Call" in kinds and "InviteSession" in kinds
    assert not kinds & {"Request", "Response", "SessionDescription"}, kinds
    rig.net.run(until=100.0)
    assert [r.method for r in rig.bobs[0].requests].count("INVITE") == 2
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


@pytest.mark.parametrize("plan, modes, digits", [
    ("direct", ("answer", "ring"), []),       # the plan rings a group, the first member is bridged
    ("menu", ("ring", "answer"), ["1"]),      # answered by the engine's media first, then bridged
    ("direct", ("busy", "busy"), []),         # nobody answers, no voicemail: the call ends unanswered
], ids=["bridged", "menu then bridged", "unanswered"])
def test_calls_run_by_a_dial_plan_leave_nothing_for_the_cyclic_collector(
        no_collector: None, plan: str, modes: tuple[str, ...], digits: list[str]) -> None:
    """A call under a flow controller (every call ``pbx serve`` routes by a dial plan) links the call and
    its controller both ways while it runs; once it is over nothing of it may be left in a cycle (the
    benchmark's gen-0 passes found ~15 objects per call: the call, its controller, plan run, branches)."""
    from tests.call.test_flows import DID, DIRECT, MENU, _config
    from tests.call.test_flows import Rig as FlowRig

    rig = FlowRig(_config(DIRECT if plan == "direct" else MENU), modes, digits)
    rig.alice.call(f"sip:{DID}@10.0.0.2", rig.pbx)
    if "busy" not in modes:
        rig.net.call_at(25.0, rig.alice.bye)
    rig.net.run(until=120.0)
    assert len(rig.cdrs) == 1
    rig.assert_clean()
    rig.controllers.clear()  # the rig's own log of controllers, not the engine's
    gc.collect()
    cyclic = Counter(type(obj).__qualname__ for obj in gc.garbage
                     if type(obj).__module__.startswith("engine."))
    assert not cyclic, f"finished calls left reference cycles: {dict(cyclic)}"
