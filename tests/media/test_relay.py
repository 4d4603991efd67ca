"""The relay's pure decisions: port allocation (even pairs, FIFO reuse) and latching (symmetric RTP)."""

from __future__ import annotations

import pytest

from engine.media.relay import Latch, PortAllocator, RelayExhausted, normalise_address


def test_ports_are_even_with_their_rtcp_port_inside_the_range() -> None:
    alloc = PortAllocator(10001, 10008)  # odd start: the first pair is 10002/10003; 10008 has no pair
    assert alloc.capacity == 3
    assert [alloc.allocate() for _ in range(3)] == [10002, 10004, 10006]
    assert alloc.in_use == 3 and alloc.available == 0
    with pytest.raises(RelayExhausted, match="all 3 RTP port pairs of 10001-10008 are in use"):
        alloc.allocate()


def test_a_released_port_goes_to_the_back_of_the_queue() -> None:
    """A port freed by a call that just ended is reused last, so its stray packets reach no new call."""
    alloc = PortAllocator(20000, 20007)
    first = alloc.allocate()
    alloc.release(first)
    assert [alloc.allocate() for _ in range(4)] == [20002, 20004, 20006, 20000]
    alloc.release(20004)
    alloc.release(20000)
    assert alloc.allocate() == 20004
    assert alloc.allocate() == 20000


def test_double_or_foreign_release_is_refused() -> None:
    alloc = PortAllocator(20000, 20003)
    port = alloc.allocate()
    alloc.release(port)
    with pytest.raises(ValueError, match="not allocated"):
        alloc.release(port)
    with pytest.raises(ValueError, match="not allocated"):
        alloc.release(20001)
    assert alloc.capacity == 2


@pytest.mark.parametrize(("first", "last"), [(80, 2000), (30000, 70000), (30001, 30001), (30000, 30000),
                                              (30010, 30000)])
def test_a_range_without_a_usable_pair_is_refused(first: int, last: int) -> None:
    with pytest.raises(ValueError, match="RTP port range"):
        PortAllocator(first, last)


def test_the_last_port_of_the_range_can_be_an_rtcp_port() -> None:
    alloc = PortAllocator(65534, 65535)
    assert alloc.allocate() == 65534


PHONE_SDP = ("192.168.1.20", 4000)  # what a phone behind NAT writes in its SDP
PHONE_NAT = ("203.0.113.5", 61024)  # where its packets really come from
STRANGER = ("198.51.100.66", 40000)


def test_sends_to_the_sdp_address_until_the_first_packet_then_to_its_source() -> None:
    latch = Latch()
    assert latch.destination is None
    latch.set_remote(*PHONE_SDP)
    assert latch.destination == PHONE_SDP
    assert latch.accept(PHONE_NAT)
    assert latch.latched == PHONE_NAT and latch.destination == PHONE_NAT
    assert latch.accept(PHONE_NAT)


def test_first_packet_latches_even_without_an_sdp_address() -> None:
    latch = Latch()
    assert latch.accept(PHONE_NAT)
    assert latch.destination == PHONE_NAT


def test_after_latching_other_sources_are_refused() -> None:
    latch = Latch()
    latch.set_remote(*PHONE_SDP)
    latch.accept(PHONE_NAT)
    assert not latch.accept(STRANGER)
    assert not latch.accept((PHONE_NAT[0], PHONE_NAT[1] + 1))
    assert latch.destination == PHONE_NAT


def test_the_sdp_address_takes_over_from_whoever_latched_first() -> None:
    """RTP bleed: a stranger who sprays our ports latches first; the real (public) peer still wins."""
    latch = Latch()
    latch.set_remote("192.0.2.10", 11796)
    assert latch.accept(STRANGER)
    assert latch.accept(("192.0.2.10", 11796))
    assert latch.destination == ("192.0.2.10", 11796)
    assert not latch.accept(STRANGER)


def test_set_remote_again_resets_the_latch() -> None:
    """A re-INVITE's SDP: the next packet latches again, from wherever it comes."""
    latch = Latch()
    latch.set_remote(*PHONE_SDP)
    latch.accept(PHONE_NAT)
    latch.set_remote("192.168.1.20", 4002)
    assert latch.latched is None and latch.destination == ("192.168.1.20", 4002)
    moved = ("203.0.113.5", 61500)
    assert latch.accept(moved)
    assert latch.destination == moved
    assert not latch.accept(PHONE_NAT)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "pbx.example.com", "", "300.1.1.1"])
def test_an_address_we_cannot_send_to_waits_for_the_first_packet(host: str) -> None:
    latch = Latch()
    latch.set_remote(host, 4000)
    assert latch.destination is None
    assert latch.accept(PHONE_NAT)
    assert latch.destination == PHONE_NAT


def test_port_zero_waits_and_bad_ports_are_refused() -> None:
    latch = Latch()
    latch.set_remote("192.0.2.1", 0)
    assert latch.destination is None
    with pytest.raises(ValueError, match="out of range"):
        latch.set_remote("192.0.2.1", 65536)


def test_address_forms_per_socket_family() -> None:
    assert normalise_address("192.0.2.1", 4000, ipv6=False) == ("192.0.2.1", 4000)
    assert normalise_address("192.0.2.1", 4000, ipv6=True) == ("::ffff:192.0.2.1", 4000)
    assert normalise_address("2001:DB8:0::1", 4000, ipv6=True) == ("2001:db8::1", 4000)
    assert normalise_address("[2001:db8::1]", 4000, ipv6=True) == ("2001:db8::1", 4000)
    assert normalise_address("2001:db8::1", 4000, ipv6=False) is None


def test_ipv6_sources_match_the_sdp_address_on_host_and_port() -> None:
    latch = Latch(ipv6=True)
    latch.set_remote("2001:db8::10", 6000)
    assert latch.accept(("2001:db8::99", 7000, 0, 0))
    assert latch.accept(("2001:db8::10", 6000, 0, 0))  # the SDP address takes over
    assert latch.destination == ("2001:db8::10", 6000, 0, 0)
