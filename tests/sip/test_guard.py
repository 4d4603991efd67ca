"""Issue 18 part 2: the flood and scanner guard (engine.sip.guard) alone and in front of the endpoint."""

from __future__ import annotations

import random

import pytest

from engine.sip.endpoint import EndpointConfig, SipEndpoint
from engine.sip.events import RequestReceived
from engine.sip.guard import GuardConfig, SourceGuard, is_scanner
from engine.sip.transaction import Peer


def options(n: int, host: str = "192.0.2.1", user_agent: str | None = None) -> bytes:
    lines = [
        "OPTIONS sip:pbx.example.com SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:5060;branch=z9hG4bKguard{n};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{host}>;tag=g{n}",
        "To: <sip:pbx.example.com>",
        f"Call-ID: guard-{n}@{host}",
        "CSeq: 1 OPTIONS",
    ]
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_source_gets_its_burst_then_its_rate() -> None:
    guard = SourceGuard(GuardConfig(rate=10, burst=20, ban_after=0))
    assert sum(guard.admit("192.0.2.1", 0.0) for _ in range(30)) == 20
    assert guard.stats["rate_dropped"] == 10
    # half a second later the bucket holds 5 more
    assert sum(guard.admit("192.0.2.1", 0.5) for _ in range(10)) == 5
    # another source has a bucket of its own
    assert sum(guard.admit("192.0.2.2", 0.5) for _ in range(20)) == 20
    # refilled to the burst, never beyond it
    assert sum(guard.admit("192.0.2.1", 100.0) for _ in range(30)) == 20


def test_a_source_that_keeps_flooding_is_banned_and_the_ban_ends() -> None:
    guard = SourceGuard(GuardConfig(rate=10, burst=10, ban_after=50, rate_window_s=10, ban_s=60))
    admitted = [guard.admit("198.51.100.7", 1.0) for _ in range(60)]
    assert admitted[:10] == [True] * 10 and not any(admitted[10:])
    assert guard.stats["bans"] == 1 and guard.banned == 1 and guard.is_banned("198.51.100.7", 1.0)
    # banned: even after its bucket would have refilled, everything is dropped until the ban ends
    assert not guard.admit("198.51.100.7", 30.0)
    assert guard.stats["banned_dropped"] == 1
    assert guard.admit("198.51.100.7", 61.5)  # the ban is over: a fresh bucket
    assert guard.banned == 0


def test_drops_spread_over_windows_do_not_ban() -> None:
    guard = SourceGuard(GuardConfig(rate=1, burst=1, ban_after=5, rate_window_s=10, ban_s=60))
    now = 0.0
    for _ in range(10):  # 4 drops per 11-second window: never 5 in one window
        assert guard.admit("192.0.2.9", now)
        assert sum(guard.admit("192.0.2.9", now) for _ in range(4)) == 0
        now += 11.0
    assert guard.stats["bans"] == 0 and guard.stats["rate_dropped"] == 40


def test_trusted_sources_are_never_limited_or_banned() -> None:
    trunks = {"203.0.113.5"}
    guard = SourceGuard(GuardConfig(rate=1, burst=1, ban_after=1), trusted=trunks.__contains__)
    assert all(guard.admit("203.0.113.5", 0.0) for _ in range(1000))
    assert not guard.scanner("203.0.113.5", 0.0) and guard.banned == 0
    # a source banned before it became a trunk is served once it is one
    assert guard.admit("203.0.113.6", 0.0) and not guard.admit("203.0.113.6", 0.0)
    assert guard.is_banned("203.0.113.6", 0.0)
    trunks.add("203.0.113.6")
    assert guard.admit("203.0.113.6", 0.0) and guard.banned == 0


def test_no_rate_limit_with_rate_0_but_bans_still_hold() -> None:
    guard = SourceGuard(GuardConfig(rate=0))
    assert all(guard.admit("192.0.2.1", 0.0) for _ in range(10_000))
    assert guard.scanner("192.0.2.1", 0.0) and not guard.admit("192.0.2.1", 1.0)


def test_the_tables_are_bounded() -> None:
    guard = SourceGuard(GuardConfig(rate=10, burst=10, ban_after=1, max_sources=100, ban_s=60))
    for i in range(1000):
        guard.admit(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(guard._buckets) == 100
    for i in range(150):  # 150 bans into a table of 100 live bans: the first 100 are kept
        guard.scanner(f"10.1.{i // 256}.{i % 256}", 0.0)
    assert guard.banned == 100 and guard.is_banned("10.1.0.0", 0.0) and not guard.is_banned("10.1.0.149", 0.0)
    # once bans have ended, new ones replace them
    assert guard.scanner("10.2.0.1", 61.0) and guard.is_banned("10.2.0.1", 61.0)


@pytest.mark.parametrize("agent", ["friendly-scanner", "sipvicious 0.3.4", "SIPVicious", "sipcli/v1.8",
                                   "VaxSIPUserAgent/3.1", "sundayddr"])
def test_scanner_user_agents(agent: str) -> None:
    assert is_scanner(agent)


@pytest.mark.parametrize("agent", [None, "", "Yealink SIP-T46U 108.86.0.20", "PolycomVVX-VVX_411-UA/6.4",
                                   "baresip v1.0.0 (x86_64/linux)", "PJSUA v2.15 Linux", "Asterisk PBX 20"])
def test_phones_are_not_scanners(agent: str | None) -> None:
    assert not is_scanner(agent)


@pytest.mark.parametrize(("rate", "burst", "ban_after"), [(-1, 10, 0), (10, 0, 0), (10, 10, -1)])
def test_bad_limits_are_refused(rate: float, burst: float, ban_after: int) -> None:
    with pytest.raises(ValueError):
        GuardConfig(rate=rate, burst=burst, ban_after=ban_after)


# -- in front of the endpoint ----------------------------------------------------------------------------


def endpoint(guard: SourceGuard | None) -> SipEndpoint:
    return SipEndpoint(EndpointConfig(), random_bytes=random.Random(0).randbytes, guard=guard)


def answers(ep: SipEndpoint) -> list[tuple[int, str]]:
    out = []
    for data, peer in ep.datagrams_to_send():
        out.append((int(data.split(b" ", 2)[1]), peer.host))
    return out


def requests_up(ep: SipEndpoint) -> int:
    n = 0
    while (event := ep.next_event()) is not None:
        n += isinstance(event, RequestReceived)
    return n


def test_a_flood_from_one_source_does_not_stop_another() -> None:
    ep = endpoint(SourceGuard(GuardConfig(rate=50, burst=100, ban_after=500, ban_s=300)))
    flooder, phone = Peer("UDP", "192.0.2.66", 5060), Peer("UDP", "192.0.2.10", 5060)
    up_flood = up_phone = 0
    for i in range(2000):  # 2,000 requests in one second from the flooder, one in 100 from the phone
        now = i / 2000
        ep.receive_datagram(options(i, "192.0.2.66"), flooder, now)
        up_flood += requests_up(ep)
        if i % 100 == 0:
            ep.receive_datagram(options(100_000 + i, "192.0.2.10"), phone, now)
            up_phone += requests_up(ep)
    assert up_phone == 20  # every one of the phone's requests reached the application
    assert 100 <= up_flood <= 130  # the burst, the refill until the ban, then nothing
    assert ep.guard is not None and ep.guard.is_banned("192.0.2.66", 1.0)
    assert ep.guard.stats["rate_dropped"] + ep.guard.stats["banned_dropped"] == 2000 - up_flood


def test_a_scanner_gets_no_answer_and_its_source_is_banned() -> None:
    ep = endpoint(SourceGuard(GuardConfig()))
    scanner = Peer("UDP", "198.51.100.9", 5071)
    ep.receive_datagram(options(1, "198.51.100.9", user_agent="friendly-scanner"), scanner, 0.0)
    assert answers(ep) == [] and requests_up(ep) == 0
    # the same source without the tell-tale User-Agent, from another port: still nothing
    ep.receive_datagram(options(2, "198.51.100.9"), Peer("UDP", "198.51.100.9", 5072), 1.0)
    assert answers(ep) == [] and requests_up(ep) == 0
    # a phone is served
    phone = Peer("UDP", "192.0.2.10", 5060)
    ep.receive_datagram(options(3, "192.0.2.10", user_agent="Yealink SIP-T46U"), phone, 1.0)
    assert requests_up(ep) == 1


def test_without_a_guard_every_source_is_served() -> None:
    ep = endpoint(None)
    peer = Peer("UDP", "198.51.100.9", 5071)
    for i in range(500):
        ep.receive_datagram(options(i, "198.51.100.9", user_agent="friendly-scanner"), peer, 0.0)
    assert requests_up(ep) == 500
