"""RTP/RTCP packets: round trips, malformed input raising RtpParseError naming the field, wrap arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.media.rtp import (
    ReceiverReport,
    ReportBlock,
    RtpPacket,
    RtpParseError,
    SenderReport,
    parse_rtcp,
    seq_add,
    seq_diff,
    ts_add,
    ts_diff,
)

HEADER = bytes.fromhex("80000001000000a0deadbeef")


def test_parse_minimal_packet() -> None:
    packet = RtpPacket.parse(HEADER + b"\xff" * 160)
    assert (packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc) == (0, 1, 160, 0xDEADBEEF)
    assert packet.payload == b"\xff" * 160
    assert not packet.marker


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFF_FFFF),
    ssrc=st.integers(0, 0xFFFF_FFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFF_FFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding=st.integers(0, 255),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    assert RtpPacket.parse(packet.serialize()) == packet


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x80\x00", "header"),
        (b"\x40" + HEADER[1:], "version"),
        (bytes([0x83]) + HEADER[1:] + b"\x00" * 4, "csrc"),
        (bytes([0x90]) + HEADER[1:] + b"\x00\x00", "extension"),
        (bytes([0x90]) + HEADER[1:] + b"\x00\x00\x00\x05" + b"\x00" * 8, "extension"),
        (bytes([0xA0]) + HEADER[1:] + b"\x01\x02\x00", "padding"),
        (bytes([0xA0]) + HEADER[1:] + b"\x01\x02\x09", "padding"),
    ],
)
def test_malformed_packets_raise_typed_errors(data: bytes, field: str) -> None:
    with pytest.raises(RtpParseError) as info:
        RtpPacket.parse(data)
    assert info.value.field == field


@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_rtp_parse_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpParseError as exc:
        assert exc.field
    else:
        assert len(packet.payload) + 12 + 4 * len(packet.csrc) + packet.padding <= len(data)


def test_serialize_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="payload_type"):
        RtpPacket(128, 0, 0, 0).serialize()
    with pytest.raises(ValueError, match="extension"):
        RtpPacket(0, 0, 0, 0, extension=(1, b"abc")).serialize()


def test_sequence_and_timestamp_wrap() -> None:
    assert seq_diff(0, 0xFFFF) == 1
    assert seq_diff(0xFFFF, 0) == -1
    assert seq_diff(100, 50) == 50
    assert seq_add(0xFFFF, 2) == 1
    assert ts_diff(80, 0xFFFF_FFB0) == 160
    assert ts_diff(0xFFFF_FFB0, 80) == -160
    assert ts_add(0xFFFF_FFB0, 160) == 80


def test_rtcp_sender_and_receiver_reports_round_trip() -> None:
    block = ReportBlock(
        ssrc=7,
        fraction_lost=12,
        cumulative_lost=-3,
        highest_sequence=70000,
        jitter=40,
        last_sr=0x12345678,
        delay_since_last_sr=65536,
    )
    sr = SenderReport(
        ssrc=1,
        ntp_timestamp=(3_900_000_000 << 32) | 123,
        rtp_timestamp=160,
        packet_count=50,
        octet_count=8000,
        reports=(block,),
    )
    rr = ReceiverReport(ssrc=2, reports=(block, block))
    assert parse_rtcp(sr.serialize() + rr.serialize()) == [sr, rr]


def test_rtcp_skips_other_packet_types_and_rejects_bad_lengths() -> None:
    sdes = bytes([0x81, 202, 0, 1]) + b"\x00\x00\x00\x01"
    rr = ReceiverReport(ssrc=9).serialize()
    assert parse_rtcp(sdes + rr) == [ReceiverReport(ssrc=9)]
    with pytest.raises(RtpParseError) as info:
        parse_rtcp(bytes([0x81, 201, 0, 1]) + b"\x00\x00\x00\x09")  # one report block announced, none there
    assert info.value.field == "rtcp.rr"
    with pytest.raises(RtpParseError) as info:
        parse_rtcp(bytes([0x80, 201, 0, 9]) + b"\x00" * 4)
    assert info.value.field == "rtcp.length"
    with pytest.raises(RtpParseError):
        parse_rtcp(b"")
