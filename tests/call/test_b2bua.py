"""The B2BUA's call state machine on the in-memory network: exact timing, every ending, and no leaks.

Topology: alice (10.0.0.1) calls through the pbx (10.0.0.2) to one or two phones of bob (10.0.0.3/.4).
Media is released (no relay here: the relay is tested on real sockets in tests/media and end to end in
the integration suite), so the SDP checks look at origins and addresses passed through.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable

import pytest

from engine.call.b2bua import Branch, Call, CallInfo, CallManager, Destination
from engine.model.cdr import CallRecord, Direction, Disposition
from engine.sip.dialog import Dialog
from engine.sip.events import Event, RequestReceived
from engine.sip.transaction import TimerConfig
from tests.call.phone import Phone
from tests.sip.harness import Network, Node, is_request, is_response, sent_from

PBX_URI = "sip:202@10.0.0.2"


class NetClock:
    def __init__(self, net: Network) -> None:
        self.net = net

    def now(self) -> float:
        return self.net.now

    def wall(self) -> float:
        return self.net.wall()


class Rig:
    def __init__(self, callees: int = 1, *, ring_timeout: float = 20.0, modes: tuple[str, ...] = ("answer",),
                 timers: TimerConfig | None = None) -> None:
        self.net = Network()
        net = self.net
        self.cdrs: list[CallRecord] = []
        self.alice = Phone(net, net.add_endpoint("alice", "10.0.0.1", 5060, seed=1, timers=timers))
        self.pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2, timers=timers)
        self.bobs = [Phone(net, net.add_endpoint(f"bob{i}", f"10.0.0.{3 + i}", 5060, seed=3 + i,
                                                 timers=timers), mode=modes[min(i, len(modes) - 1)])
                     for i in range(callees)]
        self.manager = CallManager(self.pbx.endpoint, net, lambda: None, None, "10.0.0.2", self.cdrs.append,
                                   NetClock(net))
        self.destination = Destination(
            branches=tuple(Branch(f"sip:bob@{b.node.host}:5060", b.node.peer) for b in self.bobs),
            from_address='"Alice" <sip:201@pbx.test>', to_address="<sip:202@pbx.test>",
            ring_timeout=ring_timeout)
        self.pbx.tu = self._pbx_tu

    def _pbx_tu(self, node: Node, event: Event) -> None:
        if self.manager.handle(event, self.net.now):
            return
        if isinstance(event, RequestReceived) and event.transaction is not None \
                and event.request.method == "INVITE":
            info = CallInfo(Direction.INTERNAL, caller="201", caller_name="Alice", callee="202")
            self.manager.start_call(event.request, event.transaction, event.peer, self.destination, info,
                                    self.net.now)

    def at(self, t: float, action: Callable[[], object]) -> None:
        self.net.call_at(t, action)

    def assert_clean(self) -> None:
        """Nothing of the call is left: calls, legs, dialogs, pending requests, timers, transactions."""
        m = self.manager
        assert m.calls == {} and m.legs == {} and m.dialogs == {} and m.by_invite == {}
        assert m.sides.pending == {}
        assert m.sides.acked == {} and m.early == {}
        assert self.net.pending_timers() == 0
        assert self.pbx.endpoint.transaction_count == 0


def test_answered_call_bridges_both_dialogs_and_the_callee_hangs_up() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(5.0, rig.bobs[0].bye)
    rig.net.run(until=60.0)
    assert rig.alice.statuses[:3] == [100, 180, 200]
    assert rig.alice.statuses.count(200) == 1
    bob = rig.bobs[0]
    (invite,) = [r for r in bob.requests if r.method == "INVITE"]
    assert (invite.get("from") or "").startswith('"Alice" <sip:201@pbx.test>')
    assert invite.max_forwards == 69
    assert [r.method for r in rig.alice.requests] == ["BYE"]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED and cdr.hangup_cause == "callee hung up"
    assert cdr.duration == pytest.approx(5.0 - 1.125 - 0.125, abs=0.3)
    assert cdr.legs[0].status == 200
    rig.assert_clean()


def test_caller_hangs_up() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, rig.alice.bye)
    rig.net.run(until=60.0)
    assert [r.method for r in rig.bobs[0].requests] == ["INVITE", "ACK", "BYE"]
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_parallel_ringing_first_answer_wins_and_the_other_branch_is_cancelled_with_a_reason() -> None:
    rig = Rig(callees=2, modes=("answer", "ring"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=60.0)
    cancels = [d for d in rig.net.sent if is_request("CANCEL")(d) and sent_from(rig.pbx)(d)]
    assert len(cancels) == 1 and cancels[0].dst == rig.bobs[1].node.peer
    assert b'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancels[0].data
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED
    assert sorted(leg.status for leg in cdr.legs) == [200, 487]
    rig.assert_clean()


def test_busy_everywhere_gives_486_and_a_busy_cdr() -> None:
    rig = Rig(callees=2, modes=("busy", "busy"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=60.0)
    assert rig.alice.statuses[-1] == 486
    assert rig.cdrs[0].disposition is Disposition.BUSY and rig.cdrs[0].status == 486
    rig.assert_clean()


def test_one_busy_one_ringing_keeps_ringing_the_other() -> None:
    rig = Rig(callees=2, modes=("busy", "answer"))
    rig.bobs[1].answer_after = 3.0
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(10.0, rig.alice.bye)
    rig.net.run(until=60.0)
    assert 200 in rig.alice.statuses and 486 not in rig.alice.statuses
    rig.assert_clean()


def test_no_answer_within_the_ring_timeout_cancels_and_answers_480() -> None:
    rig = Rig(modes=("ring",), ring_timeout=7.0)
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=60.0)
    finals = [s for s in rig.alice.statuses if s >= 200]
    assert finals == [480]
    cancel_at = [d.sent_at for d in rig.net.sent if is_request("CANCEL")(d) and sent_from(rig.pbx)(d)]
    assert cancel_at == [pytest.approx(7.125)]
    cdr = rig.cdrs[0]
    assert cdr.disposition is Disposition.NO_ANSWER and cdr.hangup_cause == "ring timeout"
    assert [leg.status for leg in cdr.legs] == [487] and cdr.legs[0].ended_at > cdr.legs[0].started_at
    rig.assert_clean()


def test_caller_cancel_cancels_every_branch_and_gets_487() -> None:
    rig = Rig(callees=2, modes=("ring", "ring"))
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(2.0, rig.alice.cancel)
    rig.net.run(until=60.0)
    assert rig.alice.statuses[-1] == 487
    assert len([d for d in rig.net.sent if is_request("CANCEL")(d) and sent_from(rig.pbx)(d)]) == 2
    assert rig.cdrs[0].disposition is Disposition.CANCELLED
    assert [leg.status for leg in rig.cdrs[0].legs] == [487, 487]
    rig.assert_clean()


def test_a_branch_that_never_answers_times_out_with_timer_b() -> None:
    """A phone that vanished: our INVITE is lost every time; Timer B (64*T1) ends the leg, and the caller
    hears "temporarily unavailable" (a timed-out branch counts as no answer, §16.7 would say 408)."""
    rig = Rig(modes=("silent",), ring_timeout=120.0)
    rig.net.drop(lambda d: is_request("INVITE")(d) and sent_from(rig.pbx)(d), times=None)
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=100.0)
    assert [s for s in rig.alice.statuses if s >= 200] == [480]
    assert rig.cdrs[0].legs[0].status == 408
    assert rig.cdrs[0].disposition is Disposition.NO_ANSWER
    rig.assert_clean()


def test_a_ringing_branch_that_ignores_our_cancel_is_abandoned_after_64_t1() -> None:
    rig = Rig(modes=("ring",), ring_timeout=5.0)
    rig.net.drop(lambda d: is_request("CANCEL")(d) and sent_from(rig.pbx)(d), times=None)
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=120.0)
    assert [s for s in rig.alice.statuses if s >= 200] == [480]
    rig.assert_clean()


def test_the_2xx_is_resent_until_the_caller_acks_and_a_call_never_acked_is_torn_down() -> None:
    rig = Rig()
    rig.net.drop(lambda d: is_request("ACK")(d) and sent_from(rig.alice.node)(d), times=None)
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=80.0)
    oks = [d.sent_at for d in rig.net.sent if is_response(200, "INVITE")(d) and sent_from(rig.pbx)(d)]
    # §13.3.1.4: 0.5, 1, 2, 4, 4, ... seconds apart, for 64*T1
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(oks)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[4:]) == {4.0}
    assert rig.cdrs[0].hangup_cause == "no ACK for the 2xx"
    assert [r.method for r in rig.bobs[0].requests][-1] == "BYE"
    rig.assert_clean()


def test_reinvite_for_hold_passes_end_to_end_and_back() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.at(6.0, lambda: rig.alice.reinvite("sendrecv"))
    rig.at(9.0, rig.alice.bye)
    rig.net.run(until=60.0)
    bob_invites = [r for r in rig.bobs[0].requests if r.method == "INVITE"]
    assert len(bob_invites) == 3
    assert b"a=sendonly" in bob_invites[1].body and b"a=sendrecv" in bob_invites[2].body
    # each re-INVITE reached bob with our origin and a new version
    versions = [int(r.body.split(b"\r\n")[1].split()[2]) for r in bob_invites]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert rig.alice.statuses.count(200) >= 3
    rig.assert_clean()


def test_session_refresh_with_the_same_sdp_is_answered_locally() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "120;refresher=uac"), ("Supported", "timer")))
    rig.at(30.0, lambda: rig.alice.ep.send_request(rig.alice.dialog.request("UPDATE"), rig.alice.dialog.peer,  # type: ignore[union-attr]
                                                   rig.net.now))
    rig.at(100.0, rig.alice.bye)
    rig.net.run(until=150.0)
    assert [r.method for r in rig.bobs[0].requests].count("UPDATE") == 0
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_session_timer_expiry_ends_the_call() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "90;refresher=uac"), ("Supported", "timer")))
    rig.net.run(until=200.0)
    assert rig.cdrs[0].hangup_cause == "session timer expired"
    assert [r.method for r in rig.alice.requests] == ["BYE"]
    rig.assert_clean()


def test_too_small_session_interval_gets_422_with_min_se() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "30"),))
    rig.net.run(until=40.0)
    assert rig.alice.statuses[-1] == 422
    assert any(b"Min-SE: 90" in d.data for d in rig.net.sent if sent_from(rig.pbx)(d))
    rig.assert_clean()


def test_in_dialog_request_for_an_unknown_dialog_gets_481() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, rig.alice.bye)
    rig.at(4.0, rig.alice.bye)  # the second BYE finds no dialog any more
    rig.net.run(until=60.0)
    assert rig.alice.statuses[-1] == 481
    rig.assert_clean()


def test_late_offer_the_callee_offers_in_its_2xx_and_the_callers_ack_carries_the_answer() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, late_offer=True)
    rig.at(5.0, rig.alice.bye)
    rig.net.run(until=60.0)
    bob = rig.bobs[0]
    invite, ack = bob.requests[0], bob.requests[1]
    assert invite.method == "INVITE" and not invite.body
    assert ack.method == "ACK" and b"c=IN IP4 10.0.0.1" in ack.body  # alice's answer (media released)
    assert any(b"c=IN IP4 10.0.0.3" in body for body in rig.alice.bodies)  # bob's offer reached alice
    assert rig.cdrs[0].disposition is Disposition.ANSWERED
    rig.assert_clean()


def test_late_offer_without_an_answer_in_the_ack_ends_the_call() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, late_offer=True)
    rig.alice.late_offer = False  # alice "forgets" to answer in her ACK
    rig.net.run(until=60.0)
    assert [r.method for r in rig.bobs[0].requests] == ["INVITE", "ACK", "BYE"]
    assert rig.cdrs[0].hangup_cause == "no SDP answer in the caller's ACK"
    rig.assert_clean()


def test_a_contact_that_is_the_engine_itself_is_not_rung_and_max_forwards_bounds_hops() -> None:
    rig = Rig()
    rig.destination = Destination(branches=(Branch("sip:loop@10.0.0.2:5060", rig.pbx.peer),),
                                  from_address="<sip:201@pbx.test>", to_address="<sip:202@pbx.test>")
    rig.alice.call(PBX_URI, rig.pbx)
    rig.net.run(until=10.0)
    assert rig.alice.statuses[-1] == 480 and rig.cdrs[0].hangup_cause == "no branch to ring"
    rig2 = Rig()
    rig2.alice.call(PBX_URI, rig2.pbx, extra=(("Max-Forwards", "1"),))
    rig2.net.run(until=10.0)
    assert rig2.alice.statuses[-1] == 483
    rig.assert_clean()
    rig2.assert_clean()


def test_session_expires_without_timer_support_runs_without_a_session_timer() -> None:
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx, extra=(("Session-Expires", "90"),))
    rig.at(200.0, rig.alice.bye)
    rig.net.run(until=260.0)
    oks = [d for d in rig.net.sent if is_response(200, "INVITE")(d) and sent_from(rig.pbx)(d)]
    assert b"Require: timer" not in oks[0].data and b"Session-Expires" not in oks[0].data
    assert rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_hold_without_an_sdp_version_bump_passes_and_a_bare_refresh_does_not() -> None:
    """Some phones send a changed SDP with the same o= version; a re-INVITE with an unchanged SDP (only the
    version bumped) is a session refresh answered by the engine itself."""
    rig = Rig()
    rig.alice.call(PBX_URI, rig.pbx)
    rig.at(3.0, lambda: rig.alice.reinvite("sendonly", bump_version=False))
    rig.at(6.0, lambda: rig.alice.reinvite("sendonly"))  # same media, new version: a refresh
    rig.at(9.0, rig.alice.bye)
    rig.net.run(until=60.0)
    bob_invites = [r for r in rig.bobs[0].requests if r.method == "INVITE"]
    assert len(bob_invites) == 2 and b"a=sendonly" in bob_invites[1].body
    rig.assert_clean()


def test_a_caller_ending_the_early_dialog_with_bye_cancels_the_branches() -> None:
    """RFC 3261 §15: before the final answer a caller may send BYE on the early dialog (our 180's tag)."""
    rig = Rig(modes=("ring",))
    rig.alice.call(PBX_URI, rig.pbx)

    def early_bye() -> None:
        ringing = next(d for d in rig.net.sent if is_response(180)(d) and sent_from(rig.pbx)(d)).parsed()
        tx = rig.alice.invite_tx
        assert tx is not None
        dialog = Dialog.as_uac(tx.request, ringing, rig.pbx.peer)  # type: ignore[arg-type]
        rig.alice.ep.send_request(dialog.request("BYE"), rig.pbx.peer, rig.net.now)

    rig.at(2.0, early_bye)
    rig.net.run(until=60.0)
    assert 487 in rig.alice.statuses
    assert len([d for d in rig.net.sent if is_request("CANCEL")(d) and sent_from(rig.pbx)(d)]) == 1
    assert rig.cdrs[0].disposition is Disposition.CANCELLED
    rig.assert_clean()


def test_a_finished_call_is_freed_by_reference_counting_without_the_cyclic_gc() -> None:
    """Calls must not leave reference cycles: the cyclic GC's passes over a large heap stall the loop."""
    gc.collect()
    gc.disable()
    try:
        rig = Rig(callees=2, modes=("answer", "ring"))
        rig.alice.call(PBX_URI, rig.pbx)
        rig.at(3.0, rig.alice.bye)
        rig.net.run(until=60.0)
        rig.assert_clean()
        del rig
        assert [o for o in gc.get_objects() if isinstance(o, Call)] == []
    finally:
        gc.enable()
