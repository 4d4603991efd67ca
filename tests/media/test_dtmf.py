"""RFC 4733 telephone events: the payload, the sender's packet series, the receiver's exactly-once digits."""

from __future__ import annotations

import random

import pytest

from engine.media.dtmf import DtmfError, DtmfReceiver, DtmfSender, TelephoneEvent, event_code
from engine.media.rtp import RtpPacket


def test_payload_round_trip_and_layout() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert event.serialize() == bytes([11, 0x80 | 10, 0x03, 0x20])
    assert TelephoneEvent.parse(event.serialize()) == event
    assert event.key == "#"
    assert TelephoneEvent(16, False, 0, 0).key is None
    with pytest.raises(DtmfError) as info:
        TelephoneEvent.parse(b"\x01\x02")
    assert info.value.field == "payload"
    with pytest.raises(DtmfError):
        event_code("x")


def test_sender_packet_series() -> None:
    sender = DtmfSender(ssrc=5, sequence=0xFFFE)
    packets = sender.packets("5", timestamp=1000, duration=800)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p.timestamp for p in packets} == {1000}
    assert [p.sequence for p in packets] == [(0xFFFE + i) & 0xFFFF for i in range(len(packets))]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}


def test_sender_splits_long_events_into_segments() -> None:
    packets = DtmfSender(ssrc=1, sequence=0).packets("1", timestamp=0xFFFF_0000, duration=70000)
    starts = sorted({p.timestamp for p in packets})
    assert starts == sorted({0xFFFF_0000, (0xFFFF_0000 + 0xFFFF) & 0xFFFF_FFFF})
    assert sum(p.marker for p in packets) == 1
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [e.duration for e in events if e.end] == [70000 - 0xFFFF] * 3
    assert [e.duration for e in events].count(0xFFFF) == 3  # the first segment's last packet, repeated


def feed_all(receiver: DtmfReceiver, packets: list[RtpPacket]) -> str:
    return "".join(key for p in packets if (key := receiver.feed(p)) is not None)


def press(sender: DtmfSender, keys: str, timestamp: int = 0) -> list[RtpPacket]:
    out: list[RtpPacket] = []
    for key in keys:
        out += sender.packets(key, timestamp)
        timestamp = (timestamp + 1600) & 0xFFFF_FFFF
    return out


def test_each_press_once_with_retransmitted_end_packets() -> None:
    sender = DtmfSender(ssrc=9, sequence=100)
    packets = press(sender, "1123#")
    assert feed_all(DtmfReceiver(), packets) == "1123#"
    # Every packet twice (a duplicating network) changes nothing.
    assert feed_all(DtmfReceiver(), [p for p in packets for _ in range(2)]) == "1123#"


def test_lost_start_packets_and_only_end_packets() -> None:
    sender = DtmfSender(ssrc=9, sequence=0)
    first = sender.packets("7", 0)
    second = sender.packets("7", 1600)
    lost_start = first[1:] + [p for p in second if TelephoneEvent.parse(p.payload).end]
    assert feed_all(DtmfReceiver(), lost_start) == "77"


def test_late_packets_of_an_earlier_event_are_ignored() -> None:
    sender = DtmfSender(ssrc=9, sequence=0)
    first = sender.packets("4", 0)
    second = sender.packets("5", 1600)
    assert feed_all(DtmfReceiver(), first[:2] + second[:2] + first[2:] + second[2:]) == "45"


def test_timestamp_wrap_and_long_event_continuation() -> None:
    sender = DtmfSender(ssrc=3, sequence=0)
    packets = sender.packets("9", 0xFFFF_FF00, duration=70000) + sender.packets("9", 0x0002_0000)
    assert feed_all(DtmfReceiver(), packets) == "99"


def test_new_ssrc_starts_afresh_and_garbage_is_counted() -> None:
    receiver = DtmfReceiver()
    assert feed_all(receiver, DtmfSender(ssrc=1, sequence=0).packets("2", 5000)) == "2"
    assert feed_all(receiver, DtmfSender(ssrc=2, sequence=0).packets("3", 100)) == "3"
    assert receiver.feed(RtpPacket(101, 1, 1, 2, b"\x00")) is None
    assert receiver.malformed == 1


def test_random_loss_and_reordering_never_duplicates_digits() -> None:
    rng = random.Random(7)
    keys = "0123456789*#"
    for _ in range(50):
        sender = DtmfSender(ssrc=rng.getrandbits(32), sequence=rng.getrandbits(16))
        packets = press(sender, keys, rng.getrandbits(32))
        kept = [p for p in packets if rng.random() > 0.2]
        # Swap some neighbours within an event (reordering), never across events by more than one packet.
        for i in range(len(kept) - 1):
            if rng.random() < 0.1 and kept[i].timestamp == kept[i + 1].timestamp:
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
        got = feed_all(DtmfReceiver(), kept)
        survived = "".join(
            k
            for k, ts in zip(
                keys, sorted({p.timestamp for p in packets}, key=packets_order(packets)), strict=True
            )
            if any(p.timestamp == ts for p in kept)
        )
        assert got == survived


def packets_order(packets: list[RtpPacket]) -> dict[int, int]:
    order: dict[int, int] = {}
    for p in packets:
        order.setdefault(p.timestamp, len(order))
    return order.__getitem__  # type: ignore[return-value]
