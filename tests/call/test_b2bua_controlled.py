"""Calls under a controller (the dial-plan/voicemail flows): ring rounds, answering locally, ringing after
the engine answered (the caller is re-INVITEd onto the callee), SIP INFO DTMF, and no leaks."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.call.b2bua import Branch, Call, CallInfo, CallManager, CallState, Destination
from engine.model.cdr import CallRecord, Direction, Disposition
from engine.sip.events import Event, RequestReceived
from tests.call.phone import Phone
from tests.call.test_b2bua import NetClock
from tests.sip.harness import Network, Node, is_request, sent_from

ENGINE_SDP = (b"v=0\r\no=pbx 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
              b"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


@dataclass(eq=False)
class Script:
    """A controller that follows a list of steps: ("ring", phone index, timeout) / ("answer",) /
    ("hangup", status)."""

    rig: Rig
    steps: list[tuple[object, ...]]
    events: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def next(self, call: Call, now: float) -> None:
        while self.steps:
            step = self.steps.pop(0)
            if step[0] == "ring":
                index, timeout = step[1], step[2]
                assert isinstance(index, int) and isinstance(timeout, float)
                bob = self.rig.bobs[index]
                dest = Destination((Branch(f"sip:bob@{bob.node.host}:5060", bob.node.peer),),
                                   '"Alice" <sip:201@pbx.test>', "<sip:202@pbx.test>", ring_timeout=timeout)
                self.rig.manager.ring(call, dest, now)
                return
            if step[0] == "answer":
                self.rig.manager.answer_locally(call, ENGINE_SDP, now)
                self.events.append("answered")
                continue
            if step[0] == "hangup":
                status = step[1]
                assert isinstance(status, int)
                self.rig.manager.end_controlled(call, now, status, "Not Here", "plan says so")
                return

    def ring_ended(self, call: Call, status: int, now: float) -> None:
        self.events.append(f"ring_ended {status}")
        self.next(call, now)

    def bridged(self, call: Call, now: float) -> None:
        self.events.append("bridged")

    def ended(self, call: Call, now: float) -> None:
        self.events.append("ended")

    def dtmf(self, call: Call, key: str) -> None:
        self.keys.append(key)

    def path(self) -> tuple[str, ...]:
        return ("plan/start", *self.events)


class Rig:
    def __init__(self, modes: tuple[str, ...], steps: list[tuple[object, ...]]) -> None:
        self.net = net = Network()
        self.cdrs: list[CallRecord] = []
        self.alice = Phone(net, net.add_endpoint("alice", "10.0.0.1", 5060, seed=1))
        self.pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2)
        self.bobs = [Phone(net, net.add_endpoint(f"bob{i}", f"10.0.0.{3 + i}", 5060, seed=3 + i), mode=mode)
                     for i, mode in enumerate(modes)]
        self.manager = CallManager(self.pbx.endpoint, net, lambda: None, None, "10.0.0.2", self.cdrs.append,
                                   NetClock(net))
        self.script = Script(self, steps)
        self.calls: list[Call] = []
        self.pbx.tu = self._pbx_tu

    def _pbx_tu(self, node: Node, event: Event) -> None:
        if self.manager.handle(event, self.net.now):
            return
        if isinstance(event, RequestReceived) and event.transaction is not None \
                and event.request.method == "INVITE":
            info = CallInfo(Direction.INBOUND, caller="201", caller_name="Alice", callee="main")
            call = self.manager.start_controlled(event.request, event.transaction, event.peer, info,
                                                 self.script, self.net.now)
            assert call is not None
            self.calls.append(call)
            self.script.next(call, self.net.now)

    def assert_clean(self) -> None:
        m = self.manager
        assert m.calls == {} and m.legs == {} and m.dialogs == {} and m.by_invite == {}
        assert m.sides.pending == {}
        assert m.sides.acked == {} and m.early == {}
        assert self.net.pending_timers() == 0
        assert self.pbx.endpoint.transaction_count == 0


def test_a_busy_round_hands_back_to_the_controller_which_rings_the_next_member() -> None:
    rig = Rig(("busy", "answer"), [("ring", 0, 20.0), ("ring", 1, 20.0)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx)
    rig.net.call_at(10.0, rig.alice.bye)
    rig.net.run(until=60.0)
    # The busy member is the controller's business, not the caller's: 180 from the second member, 200, and
    # the 200 to the caller's BYE.
    assert rig.alice.statuses == [100, 180, 200, 200]
    assert rig.script.events == ["ring_ended 486", "bridged", "ended"]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED and [leg.status for leg in cdr.legs] == [486, 200]
    assert cdr.path == ("plan/start", "ring_ended 486", "bridged", "ended")
    rig.assert_clean()


def test_a_ring_timeout_cancels_the_round_and_the_next_round_is_not_confused_by_the_late_487() -> None:
    rig = Rig(("ring", "answer"), [("ring", 0, 5.0), ("ring", 1, 20.0)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx)
    rig.net.call_at(15.0, rig.alice.bye)
    rig.net.run(until=60.0)
    assert rig.script.events == ["ring_ended 480", "bridged", "ended"]
    (cdr,) = rig.cdrs
    assert [leg.status for leg in cdr.legs] == [487, 200]
    rig.assert_clean()


def test_the_controller_ends_an_unanswered_call_with_its_own_status() -> None:
    rig = Rig(("busy",), [("ring", 0, 20.0), ("hangup", 404)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx)
    rig.net.run(until=60.0)
    assert rig.alice.statuses[-1] == 404
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.NOT_FOUND and cdr.hangup_cause == "plan says so"
    rig.assert_clean()


def test_answered_locally_then_ringing_reinvites_the_caller_onto_the_callee() -> None:
    rig = Rig(("answer",), [("answer",), ("ring", 0, 20.0)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx)
    rig.net.call_at(10.0, rig.alice.bye)
    rig.net.run(until=60.0)
    assert rig.alice.statuses == [100, 200, 200]  # our 200 to the INVITE, then to alice's BYE
    reinvites = [r for r in rig.alice.requests if r.method == "INVITE"]
    assert len(reinvites) == 1
    # The re-INVITE offers the callee's media (released here: bob's address), not the engine's prompts.
    assert b"c=IN IP4 10.0.0.3" in reinvites[0].body and b"m=audio 40000" in reinvites[0].body
    assert rig.alice.bodies[0] == ENGINE_SDP
    assert [r.method for r in rig.bobs[0].requests] == ["INVITE", "ACK", "BYE"]
    acks = [d for d in rig.net.sent if is_request("ACK")(d) and sent_from(rig.pbx)(d)
            and d.dst == rig.alice.node.peer]
    assert len(acks) == 1  # our ACK for alice's 2xx to the re-INVITE
    assert rig.script.events == ["answered", "bridged", "ended"]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED and cdr.hangup_cause == "caller hung up"
    rig.assert_clean()


def test_a_served_call_takes_info_dtmf_answers_refreshes_itself_and_ends_on_bye() -> None:
    rig = Rig((), [("answer",)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx)

    def info(body: bytes, ctype: str) -> None:
        assert rig.alice.dialog is not None
        req = rig.alice.dialog.request("INFO", body, ctype)
        rig.alice.ep.send_request(req, rig.alice.dialog.peer, rig.net.now)

    rig.net.call_at(2.0, lambda: info(b"Signal=5\r\nDuration=160\r\n", "application/dtmf-relay"))
    rig.net.call_at(2.5, lambda: info(b"#", "application/dtmf"))
    rig.net.call_at(2.7, lambda: info(b"hello", "text/plain"))
    rig.net.call_at(3.0, lambda: rig.alice.reinvite("sendonly"))
    rig.net.call_at(5.0, rig.alice.bye)
    rig.net.run(until=60.0)
    assert rig.script.keys == ["5", "#"]
    # INVITE (100, 200), three INFOs (a body that is no DTMF is still taken), re-INVITE (100, 200), BYE.
    assert rig.alice.statuses == [100, 200, 200, 200, 200, 100, 200, 200]
    assert rig.alice.bodies[-1] == ENGINE_SDP  # the re-INVITE is answered with the engine's session
    assert rig.bobs == [] and rig.script.events == ["answered", "ended"]
    (cdr,) = rig.cdrs
    assert cdr.disposition is Disposition.ANSWERED and cdr.legs == ()
    rig.assert_clean()


def test_the_caller_hangs_up_while_a_served_call_rings_someone() -> None:
    rig = Rig(("ring",), [("answer",), ("ring", 0, 30.0)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx)
    rig.net.call_at(4.0, rig.alice.bye)
    rig.net.run(until=60.0)
    assert [r.method for r in rig.bobs[0].requests] == ["INVITE"]  # the CANCEL is an event, not a request
    cancels = [d for d in rig.net.sent if is_request("CANCEL")(d) and sent_from(rig.pbx)(d)]
    assert len(cancels) == 1
    assert rig.script.events == ["answered", "ended"]
    (cdr,) = rig.cdrs
    assert [leg.status for leg in cdr.legs] == [487]
    assert rig.calls[0].state is CallState.ENDED
    rig.assert_clean()


def test_session_timer_headers_are_kept_on_a_served_call() -> None:
    rig = Rig((), [("answer",)])
    rig.alice.call("sip:main@10.0.0.2", rig.pbx, extra=(("Session-Expires", "1800"), ("Supported", "timer")))
    rig.net.call_at(3.0, rig.alice.bye)
    rig.net.run(until=60.0)
    oks = [d for d in rig.net.sent if sent_from(rig.pbx)(d) and d.data.startswith(b"SIP/2.0 200")
           and b"CSeq: 1 INVITE" in d.data]
    assert oks and b"Session-Expires: 1800;refresher=uac" in oks[0].data
    rig.assert_clean()
