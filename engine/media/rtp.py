"""RTP and RTCP packets (RFC 3550): parse and serialise, and sequence/timestamp arithmetic modulo 2^16/2^32.

``RtpPacket.parse`` checks what a receiver must (version 2, header, CSRC list, extension and padding
lengths within the datagram) and raises ``RtpParseError`` naming the field otherwise; the media shell drops
and counts such packets (STYLE 3.5 rule 5). RTCP is the minimum an endpoint needs: sender and receiver
reports (RFC 3550 §6.4) built and parsed from compound packets; other RTCP packet types are skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from engine.media.relay import MediaError

RTP_VERSION: Final = 2
RTP_HEADER_BYTES: Final = 12
RTCP_SR: Final = 200
RTCP_RR: Final = 201

_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IIIIII")


class RtpParseError(MediaError):
    """A malformed RTP or RTCP packet; ``field`` names what was wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# -- arithmetic ----------------------------------------------------------------------------------------


def seq_diff(a: int, b: int) -> int:
    """``a - b`` for 16-bit sequence numbers, as the signed distance in -32768..32767 (wrap-aware)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_add(seq: int, n: int) -> int:
    return (seq + n) & 0xFFFF


def ts_diff(a: int, b: int) -> int:
    """``a - b`` for 32-bit RTP timestamps, signed (wrap-aware)."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def ts_add(ts: int, n: int) -> int:
    return (ts + n) & 0xFFFF_FFFF


# -- RTP -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1). ``extension`` is ``(profile, data)`` when the X bit is set;
    ``padding`` counts the padding octets (the last of which holds the count)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram.

        Raises:
            RtpParseError: shorter than the header, version not 2, CSRC list, extension or padding running
                past the datagram, a zero padding count.
        """
        if len(data) < RTP_HEADER_BYTES:
            raise RtpParseError("header", f"{len(data)} bytes, at least {RTP_HEADER_BYTES} needed")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError("version", f"{first >> 6}, not 2")
        offset = RTP_HEADER_BYTES
        csrc_count = first & 0x0F
        if offset + 4 * csrc_count > len(data):
            raise RtpParseError("csrc", f"{csrc_count} CSRCs run past the {len(data)}-byte packet")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, offset) if csrc_count else ()
        offset += 4 * csrc_count
        extension = None
        if first & 0x10:
            if offset + 4 > len(data):
                raise RtpParseError("extension", "header extension runs past the packet")
            profile, words = struct.unpack_from("!HH", data, offset)
            end = offset + 4 + 4 * words
            if end > len(data):
                raise RtpParseError("extension", f"{words} words run past the packet")
            extension = (profile, bytes(data[offset + 4 : end]))
            offset = end
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or offset + padding > end:
                raise RtpParseError("padding", f"count {padding} does not fit the packet")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """The datagram (padding octets are zero but the last, which holds the count).

        Raises:
            ValueError: a field out of range (payload type > 127, more than 15 CSRCs, extension data not a
                multiple of 4 bytes, padding > 255).
        """
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload_type {self.payload_type} out of range 0-127")
        if len(self.csrc) > 15:
            raise ValueError(f"csrc: {len(self.csrc)} entries, at most 15")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} out of range 0-255")
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        parts = [
            build_header(self.payload_type, self.sequence, self.timestamp, self.ssrc, self.marker, first),
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, ext = self.extension
            if len(ext) % 4:
                raise ValueError(f"extension: {len(ext)} bytes, not a multiple of 4")
            parts.append(struct.pack("!HH", profile, len(ext) // 4) + ext)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def build_header(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    marker: bool = False,
    first: int = RTP_VERSION << 6,
) -> bytes:
    """The 12-byte fixed header (the media shell's hot path: one ``struct.pack``)."""
    return _HEADER.pack(
        first, payload_type | (0x80 if marker else 0), sequence & 0xFFFF, timestamp & 0xFFFF_FFFF, ssrc
    )


# -- RTCP ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """A reception report block (RFC 3550 §6.4.1). ``cumulative_lost`` is signed 24-bit."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def serialize(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, last_sr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, last_sr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR: the sender's NTP and RTP time of now and its counts, plus reception reports."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP: seconds << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        body = struct.pack(
            "!IIIIII",
            self.ssrc,
            self.ntp_timestamp >> 32,
            self.ntp_timestamp & 0xFFFF_FFFF,
            self.rtp_timestamp,
            self.packet_count,
            self.octet_count,
        )
        return _rtcp(RTCP_SR, self.reports, body)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR: reception reports from a participant that does not send."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = field(default=())

    def serialize(self) -> bytes:
        return _rtcp(RTCP_RR, self.reports, struct.pack("!I", self.ssrc))


RtcpReport = SenderReport | ReceiverReport


def _rtcp(packet_type: int, reports: tuple[ReportBlock, ...], body: bytes) -> bytes:
    if len(reports) > 31:
        raise ValueError(f"reports: {len(reports)} blocks, at most 31")
    payload = body + b"".join(block.serialize() for block in reports)
    return _RTCP_HEADER.pack(RTP_VERSION << 6 | len(reports), packet_type, len(payload) // 4) + payload


def parse_rtcp(data: bytes) -> list[RtcpReport]:
    """The SR and RR packets of a compound RTCP datagram, in order (SDES, BYE, APP, ... are skipped).

    Raises:
        RtpParseError: version not 2, a length running past the datagram, an SR/RR too short for its
            report count, or an empty datagram.
    """
    if len(data) < 4:
        raise RtpParseError("rtcp", f"{len(data)} bytes, at least 4 needed")
    reports: list[RtcpReport] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise RtpParseError("rtcp.length", "trailing bytes shorter than a header")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError("rtcp.version", f"{first >> 6}, not 2")
        end = offset + 4 + 4 * words
        if end > len(data):
            raise RtpParseError("rtcp.length", f"{words} words run past the datagram")
        count = first & 0x1F
        body = offset + 4
        if packet_type == RTCP_SR:
            if body + 24 + 24 * count > end:
                raise RtpParseError("rtcp.sr", f"too short for {count} report blocks")
            ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", data, body)
            blocks = tuple(ReportBlock.parse(data, body + 24 + 24 * i) for i in range(count))
            reports.append(SenderReport(ssrc, ntp_hi << 32 | ntp_lo, rtp_ts, packets, octets, blocks))
        elif packet_type == RTCP_RR:
            if body + 4 + 24 * count > end:
                raise RtpParseError("rtcp.rr", f"too short for {count} report blocks")
            (ssrc,) = struct.unpack_from("!I", data, body)
            blocks = tuple(ReportBlock.parse(data, body + 4 + 24 * i) for i in range(count))
            reports.append(ReceiverReport(ssrc, blocks))
        offset = end
    return reports
