"""Legs and bridges (issue 11, point 2): bridging legs of two calls, replacing a leg, unbridging, holding
and resuming, and how calls end once their legs are moved about.

The signalling runs on the in-memory network with exact timing (tests/sip/harness.py); the media is real:
the CallManager anchors every call in an ``RtpRelay`` on 127.0.0.1 and the phones' SDP names real UDP
sockets, so every "who hears whom" below is an RTP packet that did or did not arrive.

Topology: alice (10.0.0.1) calls bob (10.0.0.3) and carol (10.0.0.4) calls dave (10.0.0.5), both through
the pbx (10.0.0.2): call A is alice <-> bob, call B is carol <-> dave.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from engine.call.b2bua import Branch, Call, CallInfo, CallManager, Destination
from engine.call.bridging import BridgeError
from engine.call.legs import Side
from engine.media.io import RtpRelay
from engine.model.cdr import CallRecord, Direction
from engine.sip.events import Event, RequestReceived
from engine.sip.message import make_response
from tests.call.phone import SDP_TEMPLATE, Phone
from tests.call.test_b2bua import NetClock
from tests.media.test_io import free_range
from tests.sip.harness import Network, Node

HOST = "127.0.0.1"


@dataclass(eq=False)
class RtpPhone(Phone):
    """A phone whose SDP names a real UDP socket on 127.0.0.1; ``refuse`` answers re-INVITEs with 488."""

    rtp: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    refuse: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rtp.bind((HOST, 0))
        self.rtp.setblocking(False)
        inner = self.node.tu
        assert inner is not None

        def tu(node: Node, event: Event) -> None:
            if self.refuse and isinstance(event, RequestReceived) and event.transaction is not None \
                    and event.request.method == "INVITE" and event.request.to.tag is not None:
                self.requests.append(event.request)
                self.ep.respond(event.transaction, make_response(event.request, 488), self.net.now)
                return
            inner(node, event)

        self.node.tu = tu

    def sdp(self) -> bytes:
        return SDP_TEMPLATE.format(sid=42, ver=self.sdp_version, host=HOST, port=self.rtp.getsockname()[1],
                                   direction=self.direction).encode()

    def last_invite_sdp(self) -> bytes:
        return next(r.body for r in reversed(self.requests) if r.method == "INVITE")


class Rig:
    def __init__(self) -> None:
        self.net = net = Network()
        self.loop = asyncio.new_event_loop()
        self.relay = RtpRelay(HOST, *free_range(8), loop=self.loop)
        self.cdrs: list[CallRecord] = []
        hosts = {"alice": "10.0.0.1", "bob": "10.0.0.3", "carol": "10.0.0.4", "dave": "10.0.0.5"}
        self.phones = {name: RtpPhone(net, net.add_endpoint(name, host, 5060, seed=seed))
                       for seed, (name, host) in enumerate(hosts.items(), 10)}
        self.pbx = net.add_endpoint("pbx", "10.0.0.2", 5060, seed=2)
        self.manager = CallManager(self.pbx.endpoint, net, lambda: None, self.relay, HOST, self.cdrs.append,
                                   NetClock(net))
        self.pbx.tu = self._pbx_tu

    def _pbx_tu(self, node: Node, event: Event) -> None:
        if self.manager.handle(event, self.net.now):
            return
        if isinstance(event, RequestReceived) and event.transaction is not None \
                and event.request.method == "INVITE":
            callee = self.phones[event.request.uri.split(":", 1)[1].split("@", 1)[0]]
            branch = Branch(f"sip:{callee.node.name}@{callee.node.host}:5060", callee.node.peer)
            destination = Destination(branches=(branch,), from_address="<sip:caller@pbx.test>",
                                      to_address="<sip:callee@pbx.test>")
            info = CallInfo(Direction.INTERNAL, caller="201", caller_name="", callee="202")
            self.manager.start_call(event.request, event.transaction, event.peer, destination, info,
                                    self.net.now)

    def call(self, caller: str, callee: str) -> Call:
        before = set(self.manager.calls)
        self.phones[caller].call(f"sip:{callee}@10.0.0.2", self.pbx)
        self.net.run(self.net.now + 3.0)
        (new,) = set(self.manager.calls) - before
        call = self.manager.calls[new]
        assert call.caller_side is not None and call.callee_side is not None
        return call

    def run(self, seconds: float = 2.0) -> None:
        self.net.run(self.net.now + seconds)

    # -- media -------------------------------------------------------------------------------------
    def hears(self, listener: str, talker: str, side: Side) -> bool:
        """``talker`` sends one RTP packet to its relay port (``side``'s); True when ``listener`` gets it."""
        assert side.media is not None
        payload = f"{talker}-{self.net.now}-{id(side)}".encode()
        self.phones[talker].rtp.sendto(payload, (HOST, side.media.port))
        got: list[bytes] = []
        sock = self.phones[listener].rtp

        async def pump() -> None:
            for _ in range(50):
                await asyncio.sleep(0.004)
                try:
                    while True:
                        got.append(sock.recvfrom(4096)[0])
                except BlockingIOError:
                    pass
                if payload in got:
                    return

        self.loop.run_until_complete(pump())
        return payload in got

    def close(self) -> None:
        self.relay.close_all()
        for phone in self.phones.values():
            phone.rtp.close()
        self.loop.close()

    def assert_clean(self) -> None:
        m = self.manager
        assert m.calls == {} and m.legs == {} and m.dialogs == {} and m.by_invite == {}
        assert m.sides.pending == {} and m.early == {}
        assert self.relay.session_count == 0
        self.run(40.0)  # Timer M of the INVITEs and the BYEs' transactions run out
        assert m.sides.acked == {}
        assert self.net.pending_timers() == 0
        assert self.pbx.endpoint.transaction_count == 0


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        made.close()


def sides(call: Call) -> tuple[Side, Side]:
    assert call.caller_side is not None and call.callee_side is not None
    return call.caller_side, call.callee_side


def byes(phone: RtpPhone) -> int:
    return sum(1 for r in phone.requests if r.method == "BYE")


def test_an_answered_call_is_a_two_party_bridge_and_rtp_flows_both_ways(rig: Rig) -> None:
    alice, bob = sides(rig.call("alice", "bob"))
    assert alice.bridge is bob.bridge and alice.bridge is not None
    assert alice.other is bob and bob.other is alice
    assert rig.hears("bob", "alice", alice) and rig.hears("alice", "bob", bob)
    rig.phones["alice"].bye()
    rig.run()
    assert byes(rig.phones["bob"]) == 1
    assert len(rig.cdrs) == 1 and rig.cdrs[0].hangup_cause == "caller hung up"
    rig.assert_clean()


def test_bridging_legs_of_two_calls_re_points_the_relay_without_re_inviting_anyone(rig: Rig) -> None:
    """An attended transfer's end: alice (call A's caller) talks to dave (call B's callee); bob and carol
    are hung up; each call ends with its last leg, and alice's BYE ends dave's leg and so call B."""
    a_caller, a_callee = sides(rig.call("alice", "bob"))
    b_caller, b_callee = sides(rig.call("carol", "dave"))
    invites = {name: sum(1 for r in p.requests if r.method == "INVITE") for name, p in rig.phones.items()}
    rig.manager.bridging.bridge(a_caller, b_callee)
    assert a_caller.other is b_callee and a_callee.other is None and b_caller.other is None
    assert rig.hears("dave", "alice", a_caller) and rig.hears("alice", "dave", b_callee)
    assert not rig.hears("carol", "bob", a_callee) and not rig.hears("bob", "carol", b_caller)
    rig.manager.hang_up_leg(a_callee, rig.net.now)
    rig.manager.hang_up_leg(b_caller, rig.net.now)
    rig.run()
    assert byes(rig.phones["bob"]) == 1 and byes(rig.phones["carol"]) == 1
    assert byes(rig.phones["alice"]) == 0 and byes(rig.phones["dave"]) == 0
    assert rig.cdrs == [] and len(rig.manager.calls) == 2  # each call still has a leg up
    assert rig.hears("dave", "alice", a_caller)
    assert invites == {name: sum(1 for r in p.requests if r.method == "INVITE")
                       for name, p in rig.phones.items()}  # nobody was re-INVITEd
    rig.phones["alice"].bye()
    rig.run()
    assert byes(rig.phones["dave"]) == 1
    assert sorted(r.hangup_cause for r in rig.cdrs) == ["bridged call: caller hung up", "caller hung up"]
    rig.assert_clean()


def test_an_in_dialog_offer_goes_to_the_leg_bridged_in_from_another_call(rig: Rig) -> None:
    a_caller, _ = sides(rig.call("alice", "bob"))
    _, b_callee = sides(rig.call("carol", "dave"))
    rig.manager.bridging.bridge(a_caller, b_callee)
    dave_invites = sum(1 for r in rig.phones["dave"].requests if r.method == "INVITE")
    rig.phones["alice"].reinvite("sendonly")  # alice holds: dave, not bob, is told
    rig.run()
    assert sum(1 for r in rig.phones["dave"].requests if r.method == "INVITE") == dave_invites + 1
    assert b"a=sendonly" in rig.phones["dave"].last_invite_sdp()
    assert all(r.method != "INVITE" or b"sendonly" not in r.body for r in rig.phones["bob"].requests)
    assert rig.phones["alice"].statuses[-1] == 200
    rig.manager.shutdown(rig.net.now)
    rig.run()
    rig.assert_clean()


def test_replace_puts_the_new_leg_in_the_old_ones_place_and_hangs_the_old_one_up(rig: Rig) -> None:
    a_caller, a_callee = sides(rig.call("alice", "bob"))
    b_caller, b_callee = sides(rig.call("carol", "dave"))
    rig.manager.replace(a_callee, b_callee, rig.net.now)  # dave takes bob's place with alice
    rig.run()
    assert a_callee.ended and byes(rig.phones["bob"]) == 1
    assert a_caller.other is b_callee
    assert rig.hears("dave", "alice", a_caller) and rig.hears("alice", "dave", b_callee)
    assert b_caller.other is None and not b_caller.ended  # carol waits, unbridged: hers to hang up
    rig.phones["carol"].bye()
    rig.run()
    assert len(rig.manager.calls) == 2 and byes(rig.phones["dave"]) == 0
    rig.phones["dave"].bye()  # the callee of B hangs up: alice (of A) goes, both calls end
    rig.run()
    assert byes(rig.phones["alice"]) == 1
    assert len(rig.cdrs) == 2
    rig.assert_clean()
    with pytest.raises(BridgeError):
        rig.manager.replace(a_callee, b_callee, rig.net.now)


def test_unbridged_legs_hear_nothing_until_bridged_again(rig: Rig) -> None:
    alice, bob = sides(rig.call("alice", "bob"))
    rig.manager.bridging.unbridge(alice)
    assert alice.other is None and bob.other is None and alice.bridge is None
    assert not rig.hears("bob", "alice", alice) and not rig.hears("alice", "bob", bob)
    rig.phones["alice"].reinvite("sendonly")  # nobody to pass it to: the engine answers it
    rig.run()
    assert rig.phones["alice"].statuses[-1] == 200
    assert all(r.method != "INVITE" or b"sendonly" not in r.body for r in rig.phones["bob"].requests)
    rig.manager.bridging.bridge(alice, bob)
    assert rig.hears("bob", "alice", alice) and rig.hears("alice", "bob", bob)
    rig.phones["bob"].bye()
    rig.run()
    assert byes(rig.phones["alice"]) == 1
    rig.assert_clean()


def test_hold_re_invites_sendonly_and_stops_the_media_resume_brings_both_back(rig: Rig) -> None:
    alice, bob = sides(rig.call("alice", "bob"))
    results: list[int] = []
    assert rig.manager.bridging.hold(bob, rig.net.now, results.append)
    assert not rig.manager.bridging.hold(bob, rig.net.now)  # already held
    rig.run()
    assert results == [200] and bob.held
    held_sdp = rig.phones["bob"].last_invite_sdp()
    assert b"a=sendonly" in held_sdp and b"a=sendrecv" not in held_sdp
    assert not rig.hears("bob", "alice", alice) and not rig.hears("alice", "bob", bob)
    rig.phones["alice"].reinvite("sendrecv")  # alice's new offer is not passed to a held bob
    rig.run()
    assert rig.phones["alice"].statuses[-1] == 200
    assert rig.phones["bob"].last_invite_sdp() == held_sdp
    assert rig.manager.bridging.resume(bob, rig.net.now, results.append)
    rig.run()
    assert results == [200, 200] and not bob.held
    resumed = rig.phones["bob"].last_invite_sdp()
    assert b"a=sendrecv" in resumed and b"a=sendonly" not in resumed
    assert rig.hears("bob", "alice", alice) and rig.hears("alice", "bob", bob)
    versions = [int(body.split(b"o=")[1].split()[2]) for body in (held_sdp, resumed)]
    assert versions[1] == versions[0] + 1  # RFC 3264 §8: each changed offer bumps the version
    assert not rig.manager.bridging.resume(bob, rig.net.now)  # not held
    rig.phones["alice"].bye()
    rig.run()
    rig.assert_clean()


def test_a_refused_hold_leaves_the_leg_as_it_was(rig: Rig) -> None:
    alice, bob = sides(rig.call("alice", "bob"))
    before = bob.last_sdp
    rig.phones["bob"].refuse = True
    results: list[int] = []
    assert rig.manager.bridging.hold(bob, rig.net.now, results.append)
    rig.run()
    assert results == [488] and not bob.held and bob.last_sdp == before
    assert rig.hears("bob", "alice", alice) and rig.hears("alice", "bob", bob)
    assert len(rig.manager.calls) == 1  # the call goes on
    rig.phones["bob"].bye()
    rig.run()
    rig.assert_clean()


def test_hold_waits_its_turn_while_an_invite_is_open_on_the_dialog(rig: Rig) -> None:
    _, bob = sides(rig.call("alice", "bob"))
    rig.phones["alice"].reinvite("sendonly")  # forwarded to bob: an INVITE of ours is open towards bob
    rig.net.run(rig.net.now + 0.15)  # the re-INVITE has reached the pbx (0.125 s), bob's answer has not
    assert not rig.manager.bridging.hold(bob, rig.net.now)  # §14.1: one INVITE at a time
    rig.run()
    assert rig.manager.bridging.hold(bob, rig.net.now)
    rig.run()
    assert bob.held
    rig.phones["alice"].bye()  # ending a call with a held leg
    rig.run()
    rig.assert_clean()


def test_a_bye_ending_a_hold_in_flight_tells_the_hold_it_failed(rig: Rig) -> None:
    _, bob = sides(rig.call("alice", "bob"))
    results: list[int] = []
    rig.net.drop(lambda d: d.data.startswith(b"SIP/2.0 200") and b"INVITE" in d.data.split(b"CSeq:")[1][:20],
                 times=None)
    assert rig.manager.bridging.hold(bob, rig.net.now, results.append)
    rig.net.run(rig.net.now + 0.5)
    rig.phones["alice"].bye()
    rig.run()
    assert results == [487]
    rig.assert_clean()


def test_operations_refuse_what_the_legs_state_does_not_allow(rig: Rig) -> None:
    alice, bob = sides(rig.call("alice", "bob"))
    with pytest.raises(BridgeError):
        rig.manager.bridging.bridge(alice, alice)
    rig.phones["bob"].bye()
    rig.run()
    assert bob.ended and alice.ended
    with pytest.raises(BridgeError):
        rig.manager.bridging.bridge(alice, bob)
    assert not rig.manager.bridging.hold(alice, rig.net.now)
    rig.manager.hang_up_leg(alice, rig.net.now)  # already over: nothing happens
    assert len(rig.cdrs) == 1
    rig.assert_clean()


def test_a_media_released_leg_cannot_be_bridged_into_another_call(rig: Rig) -> None:
    a_caller, _ = sides(rig.call("alice", "bob"))
    _, b_callee = sides(rig.call("carol", "dave"))
    b_callee.media = None  # as a call whose media the policy released
    with pytest.raises(BridgeError, match="anchors"):
        rig.manager.bridging.bridge(a_caller, b_callee)
    rig.manager.shutdown(rig.net.now)
    rig.run()
    rig.assert_clean()


def test_calls_that_were_bridged_across_leave_no_reference_cycle(rig: Rig) -> None:
    a_caller, a_callee = sides(rig.call("alice", "bob"))
    b_caller, b_callee = sides(rig.call("carol", "dave"))
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        rig.manager.replace(a_callee, b_callee, rig.net.now)
        rig.manager.bridging.hold(b_callee, rig.net.now)
        rig.run()
        rig.manager.hang_up_leg(b_caller, rig.net.now)
        rig.phones["alice"].bye()
        rig.run()
        del a_caller, a_callee, b_caller, b_callee
        assert rig.manager.calls == {} and len(rig.cdrs) == 2
        gc.collect()
        leaked = [type(o).__name__ for o in gc.garbage if type(o).__module__.startswith("engine.")]
        assert leaked == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    rig.assert_clean()


def test_the_bridged_leg_keeps_its_own_dialog_headers(rig: Rig) -> None:
    """The re-INVITE dave gets after a cross-call bridge is in dave's own dialog (his Call-ID and tags),
    with our SDP for dave's relay port."""
    a_caller, _ = sides(rig.call("alice", "bob"))
    _, b_callee = sides(rig.call("carol", "dave"))
    rig.manager.bridging.bridge(a_caller, b_callee)
    rig.phones["alice"].reinvite("sendonly")
    rig.run()
    invite = next(r for r in reversed(rig.phones["dave"].requests) if r.method == "INVITE")
    assert invite.call_id == b_callee.dialog.call_id
    assert b_callee.media is not None and f"m=audio {b_callee.media.port} ".encode() in invite.body
    assert invite.get("content-type") == "application/sdp"
    rig.manager.shutdown(rig.net.now)
    rig.run()
    rig.assert_clean()


def test_a_hold_the_phone_never_answers_finally_is_given_up_after_64_t1(rig: Rig) -> None:
    """Our re-INVITE gets 100 Trying and no final response: after 64*T1 it is CANCELled, ``done`` hears 408
    and the leg is as it was (§14.1), the call goes on."""
    alice, bob = sides(rig.call("alice", "bob"))
    rig.net.drop(lambda d: d.data.startswith(b"SIP/2.0 200") and b"INVITE" in d.data.split(b"CSeq:")[1][:20],
                 times=None)
    results: list[int] = []
    assert rig.manager.bridging.hold(bob, rig.net.now, results.append)
    rig.run(40.0)
    assert results == [408] and not bob.held
    assert any(d.data.startswith(b"CANCEL sip:bob@") for d in rig.net.sent)
    assert rig.hears("bob", "alice", alice) and rig.hears("alice", "bob", bob)
    assert len(rig.manager.calls) == 1
    rig.phones["alice"].bye()
    rig.run()
    rig.assert_clean()
