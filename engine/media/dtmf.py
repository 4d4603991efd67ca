"""DTMF as RFC 4733 telephone events: the 4-byte payload, a sender of event packets and a receiver that turns
event packets into digits exactly once.

Payload (RFC 4733 §2.3): event (0-9, 10 = ``*``, 11 = ``#``, 12-15 = A-D), E bit, R bit, volume (0-63,
-dBm0), duration in timestamp units. One event is a series of packets that all carry the event's start
timestamp (§2.5.1.2); the first has the RTP marker bit; the duration grows with each update; the last
has the E bit and is sent three times (§2.5.1.4). A long event is split into segments of at most 0xFFFF
duration, each segment a new timestamp without the marker (§2.5.1.3); only the event's last packets
carry the E bit, but a receiver should not count on senders agreeing on that.

The receiver reports a digit at the first packet of a new event it sees, which is the earliest moment
(barge-in wants it) and needs no start packet: an event is identified by its timestamp, so retransmitted and
redundant end packets and late updates of an event already reported change nothing, a lost start packet
(marker) only means the digit is reported on the next update, and a continuation segment of a long event
(new timestamp about 0xFFFF after the previous one, no marker, same event, previous segment full) is not a
new press. Timestamps compare
modulo 2^32, so a stream whose timestamps wrap keeps working; a new SSRC starts afresh.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from engine.media.relay import MediaError
from engine.media.rtp import RtpPacket, seq_add, ts_add, ts_diff

#: Event codes 0-15 as keys (RFC 4733 §3.2, table 1).
EVENT_KEYS: Final = "0123456789*#ABCD"
DEFAULT_PAYLOAD_TYPE: Final = 101
END_REPEATS: Final = 3
MAX_DURATION: Final = 0xFFFF
# A segment counts as full (so that a new timestamp without marker continues it) once its duration came
# within this many units of 0xFFFF: updates arrive every 20-50 ms, and the last ones may be lost.
_SEGMENT_SLACK: Final = 2000

_EVENT = struct.Struct("!BBH")


class DtmfError(MediaError):
    """A malformed telephone-event payload, or a key that is not a DTMF key; ``field`` names which."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def key(self) -> str | None:
        """The DTMF key of the event, or None for codes above 15 (other tones)."""
        return EVENT_KEYS[self.event] if self.event < len(EVENT_KEYS) else None

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """The first event of ``payload`` (any redundant ones after it are ignored).

        Raises:
            DtmfError: fewer than 4 bytes.
        """
        if len(payload) < 4:
            raise DtmfError("payload", f"{len(payload)} bytes, a telephone event has 4")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        """Raises:
        DtmfError: a field out of range.
        """
        if not 0 <= self.event <= 255:
            raise DtmfError("event", f"{self.event} out of range 0-255")
        if not 0 <= self.volume <= 63:
            raise DtmfError("volume", f"{self.volume} out of range 0-63")
        if not 0 <= self.duration <= MAX_DURATION:
            raise DtmfError("duration", f"{self.duration} out of range 0-65535")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


def event_code(key: str) -> int:
    """The event code of a key (``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``).

    Raises:
        DtmfError: not a DTMF key.
    """
    code = EVENT_KEYS.find(key.upper()) if len(key) == 1 else -1
    if code < 0:
        raise DtmfError("key", f"{key!r} is not a DTMF key")
    return code


class DtmfSender:
    """Builds the RTP packets of DTMF events on one stream (sequence numbers continue across events)."""

    def __init__(
        self,
        ssrc: int,
        sequence: int,
        payload_type: int = DEFAULT_PAYLOAD_TYPE,
        samples_per_packet: int = 160,
    ) -> None:
        """Args:
        ssrc: the stream's SSRC.
        sequence: the next RTP sequence number to use.
        payload_type: the negotiated telephone-event payload type.
        samples_per_packet: timestamp units between updates (the packetisation interval).
        """
        self.ssrc = ssrc
        self.sequence = sequence & 0xFFFF
        self.payload_type = payload_type
        self.samples_per_packet = samples_per_packet

    def packets(self, key: str, timestamp: int, duration: int = 800, volume: int = 10) -> list[RtpPacket]:
        """The packets of one key press starting at ``timestamp`` and lasting ``duration`` timestamp units:
        updates every ``samples_per_packet`` (the first with the marker), then the end packet three times.
        Longer than 0xFFFF units, the event continues in segments with new timestamps (no marker).

        Raises:
            DtmfError: not a DTMF key, duration not positive, volume out of 0-63.
        """
        code = event_code(key)
        if duration <= 0:
            raise DtmfError("duration", f"{duration} must be positive")
        if not 0 <= volume <= 63:
            raise DtmfError("volume", f"{volume} out of range 0-63")
        out: list[RtpPacket] = []
        segment_start = timestamp
        remaining = duration
        first = True
        while remaining > 0:
            length = min(remaining, MAX_DURATION)
            last_segment = length == remaining
            elapsed = 0
            while True:
                elapsed = min(elapsed + self.samples_per_packet, length)
                done = elapsed >= length
                # The E bit marks the end of the event, not of a segment; a segment's last packet is still
                # repeated (§2.5.1.4: "for each event and for each segment").
                event = TelephoneEvent(code, done and last_segment, volume, elapsed)
                for _ in range(END_REPEATS if done else 1):
                    out.append(self._packet(event, segment_start, first))
                    first = False
                if done:
                    break
            remaining -= length
            segment_start = ts_add(segment_start, length)
        return out

    def _packet(self, event: TelephoneEvent, timestamp: int, marker: bool) -> RtpPacket:
        packet = RtpPacket(
            self.payload_type,
            self.sequence,
            timestamp & 0xFFFF_FFFF,
            self.ssrc,
            event.serialize(),
            marker=marker,
        )
        self.sequence = seq_add(self.sequence, 1)
        return packet


class DtmfReceiver:
    """Turns the telephone-event packets of one stream into digits, each key press exactly once.

    Attributes:
        malformed: payloads too short to hold an event (ignored).
    """

    __slots__ = ("_code", "_duration", "_ended", "_ssrc", "_timestamp", "malformed")

    def __init__(self) -> None:
        self._ssrc: int | None = None
        self._timestamp = 0
        self._code = -1
        self._ended = True
        self._duration = 0
        self.malformed = 0

    def feed(self, packet: RtpPacket) -> str | None:
        """Account for one telephone-event packet.

        Returns:
            The key (``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``) when this packet is the first seen
            of a new key press, else None (an update, a retransmission, a late packet of an older event,
            a continuation segment, an event code that is not a DTMF key, a malformed payload).
        """
        try:
            event = TelephoneEvent.parse(packet.payload)
        except DtmfError:
            self.malformed += 1
            return None
        if packet.ssrc != self._ssrc:
            self._ssrc = packet.ssrc
        else:
            age = ts_diff(packet.timestamp, self._timestamp)
            if age < 0:
                return None  # a late packet of an earlier event
            if age == 0:
                if event.event == self._code:
                    self._ended = self._ended or event.end
                    self._duration = max(self._duration, event.duration)
                    return None
                # Same timestamp, other event: a new press whose sender reused the timestamp; take it.
            elif (
                not packet.marker
                and event.event == self._code
                and self._duration >= MAX_DURATION - _SEGMENT_SLACK
                and age <= MAX_DURATION + _SEGMENT_SLACK
            ):
                self._timestamp = packet.timestamp  # the next segment of a long event (§2.5.1.3)
                self._ended = event.end
                self._duration = event.duration
                return None
        self._timestamp = packet.timestamp
        self._code = event.event
        self._ended = event.end
        self._duration = event.duration
        return event.key
