"""SRTP at the relay (issue 16, part 2): a side whose phone speaks SRTP decrypts what it receives and
encrypts what it sends, on real sockets in a real loop (asyncio and uvloop); the phone's end is libsrtp
itself (pylibsrtp sessions with the keys of each direction), so what is checked is real SRTP."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pylibsrtp
import pytest

from engine.media.clock import MediaClock
from engine.media.g711 import PT_PCMU
from engine.media.hold import HoldStream, default_music
from engine.media.io import RelayMusic, RtpRelay
from engine.media.rtp import RtpPacket
from engine.media.srtp import PROFILE, SrtpContext

from .test_io import HOST, RTP, free_range, phones

PHONE_KEY, OUR_KEY = os.urandom(30), os.urandom(30)
RTCP = b"\x80\xc8\x00\x06" + b"\x00\x00\x12\x34" + b"\x01" * 20  # a sender report, 28 bytes


def phone_session(key: bytes, outbound: bool) -> pylibsrtp.Session:
    kind = pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=kind, srtp_profile=PROFILE))


def rtp(seq: int, payload: bytes = b"\xff" * 160) -> bytes:
    return RTP[:2] + seq.to_bytes(2, "big") + RTP[4:12] + payload


def test_an_srtp_side_and_a_plain_side_are_translated_both_ways(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        phone_out, phone_in = phone_session(PHONE_KEY, True), phone_session(OUR_KEY, False)
        with phones(4) as (a, a_rtcp, b, b_rtcp):
            session = relay.open_session()
            session.a.set_remote(HOST, a.port, rtcp_port=a_rtcp.port)
            session.b.set_remote(HOST, b.port, rtcp_port=b_rtcp.port)
            session.a.secure(PHONE_KEY, OUR_KEY)
            for seq in range(1, 4):
                packet = rtp(seq)
                protected = phone_out.protect(packet)
                assert protected != packet and len(protected) == len(packet) + 10  # 80-bit tag
                a.send(session.a.port, protected)
                assert await b.recv() == (packet, (HOST, session.b.port))  # plain towards the UDP phone
                b.send(session.b.port, rtp(100 + seq, b"\x55" * 160))
                data, _ = await a.recv()
                assert data[12:-10] != b"\x55" * 160  # encrypted towards the SRTP phone
                assert phone_in.unprotect(data) == rtp(100 + seq, b"\x55" * 160)
            a_rtcp.send(session.a.port + 1, phone_out.protect_rtcp(RTCP))
            assert (await b_rtcp.recv())[0] == RTCP
            b_rtcp.send(session.b.port + 1, RTCP)
            assert phone_in.unprotect_rtcp((await a_rtcp.recv())[0]) == RTCP
            assert session.dropped == 0
            session.close()

    run(scenario)


def test_forged_replayed_and_plain_packets_from_the_srtp_phone_are_dropped(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        phone_out = phone_session(PHONE_KEY, True)
        with phones(2) as (a, b):
            session = relay.open_session()
            session.a.set_remote(HOST, a.port)
            session.b.set_remote(HOST, b.port)
            session.a.secure(PHONE_KEY, OUR_KEY)
            good = phone_out.protect(rtp(1))
            a.send(session.a.port, good)
            assert (await b.recv())[0] == rtp(1)
            a.send(session.a.port, good)  # replayed
            forged = bytearray(phone_out.protect(rtp(2)))
            forged[20] ^= 1
            a.send(session.a.port, bytes(forged))  # one bit flipped in the payload
            a.send(session.a.port, rtp(3))  # plain RTP where SRTP is due
            assert await b.silent(0.2)
            assert session.a.srtp is not None and session.a.srtp.failed == 3
            assert session.dropped == 3
            a.send(session.a.port, phone_out.protect(rtp(4)))  # the stream goes on
            assert (await b.recv())[0] == rtp(4)
            session.close()

    run(scenario)


def test_the_same_keys_again_keep_the_sessions_and_new_ones_rekey(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        session = relay.open_session()
        session.a.secure(PHONE_KEY, OUR_KEY)
        first = session.a.srtp
        session.a.secure(PHONE_KEY, OUR_KEY)
        assert session.a.srtp is first  # a re-INVITE with the same key: the replay window goes on
        new_key = os.urandom(30)
        session.a.secure(new_key, OUR_KEY)
        assert session.a.srtp is not first and session.a.srtp is not None
        assert session.a.srtp.receive_key == new_key
        session.close()

    run(scenario)


def test_hold_music_towards_an_srtp_phone_is_encrypted(run: Any) -> None:
    async def scenario() -> None:
        relay = RtpRelay(HOST, *free_range(2))
        phone_in = phone_session(OUR_KEY, False)
        clock = MediaClock(asyncio.get_running_loop())
        with phones(1) as (a,):
            session = relay.open_session()
            session.a.set_remote(HOST, a.port)
            session.a.secure(PHONE_KEY, OUR_KEY)
            session.a.disconnect()
            music = RelayMusic(session.a, HoldStream(default_music()), PT_PCMU, clock, random.Random(1))
            packets = [(await a.recv())[0] for _ in range(3)]
            plain = [RtpPacket.parse(phone_in.unprotect(data)) for data in packets]
            assert [len(p.payload) for p in plain] == [160] * 3
            assert all(p.payload not in data for p, data in zip(plain, packets, strict=True))
            music.stop()
            session.close()

    run(scenario)


def test_keys_must_be_30_bytes() -> None:
    with pytest.raises(ValueError, match="30 bytes"):
        SrtpContext(b"short", OUR_KEY)
