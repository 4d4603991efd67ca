"""The RTP relay on real UDP sockets on 127.0.0.1, in a real event loop (asyncio and uvloop).

Each test's "phones" are plain non-blocking sockets; a test fails if anything reaches the loop's exception
handler.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from engine.media.clock import MediaClock
from engine.media.g711 import PT_PCMA
from engine.media.hold import HoldStream, default_music
from engine.media.io import RelayMusic, RtpRelay
from engine.media.relay import RelayExhausted
from engine.media.rtp import RtpPacket

HOST = "127.0.0.1"
RTP = b"\x80\x00\x00\x01" + b"\x00" * 8 + b"\xff" * 160  # 172 bytes: 20 ms of G.711


def free_range(pairs: int) -> tuple[int, int]:
    """A port range of ``pairs`` even/odd pairs below the ephemeral range, every port free right now."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(20000, 32000, 2)
        probes: list[socket.socket] = []
        try:
            for port in range(first, first + 2 * pairs):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(sock)
                sock.bind((HOST, port))
        except OSError:
            continue
        finally:
            for sock in probes:
                sock.close()
        return first, first + 2 * pairs - 1
    raise RuntimeError("no free port range found")


class Phone:
    """One UDP socket standing for a phone (or its NAT binding)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # bursts wait for the test
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    @property
    def addr(self) -> tuple[str, int]:
        return (HOST, self.port)

    def send(self, port: int, data: bytes = RTP) -> None:
        self.sock.sendto(data, (HOST, port))

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
                return data, addr
            except BlockingIOError:
                if loop.time() > deadline:
                    raise TimeoutError(f"nothing arrived at {self.port}") from None
                await asyncio.sleep(0.002)

    async def silent(self, wait: float = 0.1) -> bool:
        """True when nothing arrives within ``wait`` seconds."""
        try:
            await self.recv(wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@contextmanager
def phones(count: int) -> Iterator[list[Phone]]:
    made = [Phone() for _ in range(count)]
    try:
        yield made
    finally:
        for phone in made:
            phone.close()


def test_relays_rtp_and_rtcp_both_ways_from_the_ports_the_peers_know(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        with phones(4) as (a, a_rtcp, b, b_rtcp):
            session = relay.open_session()
            assert session.a.port % 2 == 0 and session.b.port % 2 == 0
            session.a.set_remote(HOST, a.port, rtcp_port=a_rtcp.port)
            session.b.set_remote(HOST, b.port, rtcp_port=b_rtcp.port)
            a.send(session.a.port, b"from a")
            assert await b.recv() == (b"from a", (HOST, session.b.port))
            b.send(session.b.port, b"from b")
            assert await a.recv() == (b"from b", (HOST, session.a.port))
            a_rtcp.send(session.a.port + 1, b"rtcp a")
            assert await b_rtcp.recv() == (b"rtcp a", (HOST, session.b.port + 1))
            b_rtcp.send(session.b.port + 1, b"rtcp b")
            assert await a_rtcp.recv() == (b"rtcp b", (HOST, session.a.port + 1))
            assert (session.packets_a_to_b, session.packets_b_to_a, session.dropped) == (2, 2, 0)
            assert await a.silent() and await b.silent()  # nothing echoed, nothing crossed RTP/RTCP
            stats = relay.stats
            assert (stats.packets, stats.bytes, stats.dropped, stats.errors) == (4, 24, 0, 0)
            session.close()

    run(scenario)


def test_latches_to_the_nat_address_the_phone_really_sends_from(run: Any) -> None:
    """The SDP names a private address (here: a socket nobody answers from); the first packet wins."""

    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        with phones(3) as (sdp_address, nat_binding, b):
            session = relay.open_session()
            session.a.set_remote(HOST, sdp_address.port)
            session.b.set_remote(HOST, b.port)
            b.send(session.b.port, b"early")
            assert (await sdp_address.recv())[0] == b"early"  # before latching: the SDP address
            assert not session.a.latched
            nat_binding.send(session.a.port, b"hello")
            assert (await b.recv())[0] == b"hello"
            assert session.a.latched and session.a.remote == nat_binding.addr
            b.send(session.b.port, b"late")
            assert (await nat_binding.recv())[0] == b"late"
            assert await sdp_address.silent()
            session.close()

    run(scenario)


def test_drops_until_the_destination_is_known_then_learns_both_sides(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        with phones(2) as (a, b):
            session = relay.open_session()  # no SDP addresses at all
            a.send(session.a.port, b"lost")
            await asyncio.sleep(0.05)
            assert session.dropped == 1 and session.packets_a_to_b == 0
            b.send(session.b.port, b"to a")  # b latches; a was latched by its lost packet
            assert (await a.recv())[0] == b"to a"
            a.send(session.a.port, b"to b")
            assert (await b.recv())[0] == b"to b"
            assert await b.silent()
            session.close()

    run(scenario)


def test_packets_from_a_stranger_are_dropped_after_latching(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        with phones(3) as (a, b, stranger):
            session = relay.open_session()
            session.a.set_remote("192.168.1.20", 4000)  # private: never matches a real source
            session.b.set_remote(HOST, b.port)
            a.send(session.a.port, b"real")
            assert (await b.recv())[0] == b"real"
            seen = session.last_activity
            await asyncio.sleep(0.01)
            stranger.send(session.a.port, b"injected")
            assert await b.silent()
            assert session.a.remote == a.addr and session.a.dropped == 1
            assert session.last_activity == seen  # a stranger does not keep the call alive
            session.close()

    run(scenario)


def test_set_remote_again_relatches_to_the_new_source(run: Any) -> None:
    """A re-INVITE (the phone moved, or changed port): after set_remote, the next source is learnt."""

    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        with phones(3) as (old, new, b):
            session = relay.open_session()
            session.a.set_remote(HOST, old.port)
            session.b.set_remote(HOST, b.port)
            old.send(session.a.port)
            await b.recv()
            session.a.set_remote("10.9.9.9", 5000)
            new.send(session.a.port, b"moved")
            assert (await b.recv())[0] == b"moved"
            b.send(session.b.port, b"to new")
            assert (await new.recv())[0] == b"to new"
            old.send(session.a.port, b"stale")
            assert await b.silent() and await old.silent()
            session.close()

    run(scenario)


def test_exhaustion_and_close_giving_ports_back(run: Any) -> None:
    async def scenario() -> None:
        first, last = free_range(4)  # two sessions' worth
        relay = RtpRelay(HOST, first, last)
        one, two = relay.open_session(), relay.open_session()
        assert relay.session_count == 2
        used = {one.a.port, one.b.port, two.a.port, two.b.port}
        assert used == set(range(first, last, 2))
        with pytest.raises(RelayExhausted):
            relay.open_session()
        assert relay.allocator.in_use == 4  # a failed open leaks nothing
        one.close()
        one.close()  # idempotent
        assert relay.session_count == 1 and relay.allocator.available == 2
        for port in (one.a.port, one.a.port + 1, one.b.port, one.b.port + 1):  # really unbound
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind((HOST, port))
            probe.close()
        three = relay.open_session()
        assert {three.a.port, three.b.port} == {one.a.port, one.b.port}
        relay.close_all()
        assert relay.session_count == 0 and relay.allocator.in_use == 0
        assert two.closed and three.closed

    run(scenario)


def test_ports_held_by_another_process_are_skipped(run: Any) -> None:
    async def scenario() -> None:
        first, last = free_range(3)
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        squatter.bind((HOST, first + 1))  # the RTCP port of the first pair
        try:
            relay = RtpRelay(HOST, first, last)
            session = relay.open_session()
            assert {session.a.port, session.b.port} == {first + 2, first + 4}
            with pytest.raises(RelayExhausted, match="no bindable RTP port pair"):
                relay.open_session()
            assert relay.allocator.in_use == 2
            session.close()
        finally:
            squatter.close()

    run(scenario)


def test_last_activity_and_bursts_drained_whole(run: Any) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        relay = RtpRelay(HOST, *free_range(2), loop=loop)
        with phones(2) as (a, b):
            session = relay.open_session()
            opened = session.last_activity
            assert opened <= loop.time()
            session.b.set_remote(HOST, b.port)
            await asyncio.sleep(0.02)
            for i in range(300):  # more than one callback's worth (DRAIN_MAX)
                a.send(session.a.port, i.to_bytes(2, "big") + RTP[2:])
            got = [(await b.recv())[0][:2] for _ in range(300)]
            assert got == [i.to_bytes(2, "big") for i in range(300)]
            assert session.last_activity > opened
            assert session.packets_a_to_b == 300
            session.close()

    run(scenario)


def test_a_failing_send_is_counted_not_raised(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        with phones(1) as (a,):
            session = relay.open_session()
            session.b.set_remote("255.255.255.255", 9)  # no SO_BROADCAST: sendto fails with EACCES
            a.send(session.a.port)
            await asyncio.sleep(0.05)
            assert session.dropped == 1 and session.errors == 0
            session.close()
            assert relay.stats.dropped == 1

    run(scenario)


def test_the_default_loop_is_the_running_one_at_first_open(run: Any) -> None:
    relay = RtpRelay(HOST, *free_range(2))  # built outside any loop, as a composition root may

    async def scenario() -> None:
        session = relay.open_session()
        session.close()

    run(scenario)


def test_a_side_is_re_pointed_at_a_side_of_another_session_and_disconnected(run: Any) -> None:
    """Bridging legs of two calls (a transfer): side a of one session relays with side b of another, from
    the ports each phone already knows; the two left over relay nothing; a disconnected side drops."""

    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(4))
        with phones(4) as (alice, bob, carol, dave):
            one, two = relay.open_session(), relay.open_session()
            for side, phone in ((one.a, alice), (one.b, bob), (two.a, carol), (two.b, dave)):
                side.set_remote(HOST, phone.port)
            assert one.a.connected_to is one.b and one.b.connected_to is one.a
            one.a.connect(two.b)  # alice <-> dave; bob and carol are left unconnected
            assert one.a.connected_to is two.b and two.b.connected_to is one.a
            assert one.b.connected_to is None and two.a.connected_to is None
            alice.send(one.a.port, b"alice")
            assert await dave.recv() == (b"alice", (HOST, two.b.port))
            dave.send(two.b.port, b"dave")
            assert await alice.recv() == (b"dave", (HOST, one.a.port))
            bob.send(one.b.port, b"bob")
            carol.send(two.a.port, b"carol")
            assert await alice.silent() and await dave.silent()
            assert await bob.silent() and await carol.silent()
            assert (one.b.dropped, two.a.dropped) == (1, 1)
            one.a.disconnect()  # hold: received and dropped both ways
            alice.send(one.a.port, b"held")
            dave.send(two.b.port, b"held too")
            assert await dave.silent() and await alice.silent()
            assert one.a.connected_to is None and two.b.connected_to is None
            one.a.connect(two.b)
            two.close()  # closing a session unpairs whatever another session had connected to it
            assert one.a.connected_to is None
            alice.send(one.a.port, b"after close")
            assert await dave.silent()
            assert one.a.dropped == 2
            with pytest.raises(ValueError):
                one.a.connect(one.a)
            one.close()

    run(scenario)


def test_relay_music_sends_the_hold_stream_out_of_a_side_to_its_phone_until_stopped(run: Any) -> None:
    """Music on hold for a bridged leg (issue 19): the frames of the shared hold stream leave from the
    side's own port (the one the phone knows) under our own SSRC, the first with the marker bit, in
    sequence, one per media clock tick; the held peer's packets are not relayed meanwhile; stop() ends it."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        relay = RtpRelay(HOST, *free_range(2))
        clock = MediaClock(loop)
        stream = HoldStream(default_music())
        with phones(2) as (alice, bob):
            session = relay.open_session()
            session.a.set_remote(HOST, alice.port)
            session.b.set_remote(HOST, bob.port)
            session.b.disconnect()  # bob holds
            music = RelayMusic(session.a, stream, PT_PCMA, clock, random.Random(1))
            bob.send(session.b.port, b"held bob")
            packets = [await alice.recv() for _ in range(5)]
            assert {addr for _, addr in packets} == {(HOST, session.a.port)}
            parsed = [RtpPacket.parse(data) for data, _ in packets]
            assert [p.payload_type for p in parsed] == [PT_PCMA] * 5
            assert parsed[0].marker and not any(p.marker for p in parsed[1:])
            assert [(p.sequence - parsed[0].sequence) & 0xFFFF for p in parsed] == [0, 1, 2, 3, 4]
            assert [p.timestamp - parsed[0].timestamp for p in parsed] == [0, 160, 320, 480, 640]
            assert len({p.ssrc for p in parsed}) == 1
            assert all(len(p.payload) == 160 for p in parsed)
            assert b"held bob" not in [data for data, _ in packets]
            music.stop()
            music.stop()
            assert clock.session_count == 0
            await asyncio.sleep(0.05)
            while not await alice.silent(0.05):  # frames already in flight
                pass
            assert await alice.silent(0.1)
            assert music.packets_sent >= 5
            session.close()

    run(scenario)
