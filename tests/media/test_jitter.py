"""Jitter buffer: reordering, duplicates, loss as None frames, sequence wrap, bursts and resynchronisation."""

from __future__ import annotations

import random

import pytest

from engine.media.jitter import Frame, JitterBuffer


def frame(seq: int) -> bytes:
    return seq.to_bytes(2, "big")


def run(buffer: JitterBuffer, seqs: list[int]) -> list[Frame]:
    out: list[Frame] = []
    for seq in seqs:
        out += buffer.put(seq, frame(seq))
    return out + buffer.flush()


def test_in_order_is_released_at_once() -> None:
    buffer = JitterBuffer()
    assert buffer.put(10, frame(10)) == [frame(10)]
    assert buffer.put(11, frame(11)) == [frame(11)]
    assert len(buffer) == 0


def test_reordering_within_depth_is_repaired() -> None:
    buffer = JitterBuffer(depth=3)
    assert run(buffer, [1, 3, 2, 5, 4, 6]) == [frame(s) for s in range(1, 7)]
    assert buffer.stats.lost == 0


def test_duplicates_and_late_packets_are_dropped_and_counted() -> None:
    buffer = JitterBuffer(depth=2)
    out = run(buffer, [1, 3, 3, 2, 1, 4, 4000])  # 1 again is late (released); 4000 alone is a stray
    assert out == [frame(s) for s in range(1, 5)]
    assert buffer.stats.duplicates == 1
    assert buffer.stats.late == 2


def test_loss_becomes_none_after_depth_newer_packets() -> None:
    buffer = JitterBuffer(depth=2)
    assert buffer.put(1, frame(1)) == [frame(1)]
    assert buffer.put(3, frame(3)) == []
    assert buffer.put(4, frame(4)) == []
    assert buffer.put(5, frame(5)) == [None, frame(3), frame(4), frame(5)]
    assert buffer.stats.lost == 1
    # The lost packet arriving after all is late now.
    assert buffer.put(2, frame(2)) == []
    assert buffer.stats.late == 1


def test_sequence_wrap() -> None:
    seqs = [0xFFFD, 0xFFFF, 0xFFFE, 0, 2, 1, 3]
    assert run(JitterBuffer(), seqs) == [frame(s) for s in [0xFFFD, 0xFFFE, 0xFFFF, 0, 1, 2, 3]]


def test_burst_loss_keeps_its_duration_and_big_jumps_resync() -> None:
    buffer = JitterBuffer(capacity=8, depth=2, max_gap=100)
    out = run(buffer, [1, 2, 50, 51])
    assert out == [frame(1), frame(2), *[None] * 47, frame(50), frame(51)]
    buffer = JitterBuffer(capacity=8, depth=2, max_gap=100)
    out = run(buffer, [1, 2, 5000, 5001])
    assert out == [frame(1), frame(2), frame(5000), frame(5001)]
    assert buffer.stats.resyncs == 1


def test_flush_fills_gaps_and_restarts() -> None:
    buffer = JitterBuffer(depth=5)
    buffer.put(1, frame(1))
    buffer.put(3, frame(3))
    assert buffer.flush() == [None, frame(3)]
    assert buffer.put(900, frame(900)) == [frame(900)]


def test_random_network_never_duplicates_or_misorders() -> None:
    rng = random.Random(3)
    for _ in range(100):
        start = rng.randrange(0x10000)
        seqs = [(start + i) & 0xFFFF for i in range(200) if rng.random() > 0.05]
        for i in range(len(seqs) - 1):  # local reordering by one
            if rng.random() < 0.1:
                seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
        seqs += [s for s in seqs if rng.random() < 0.05]  # late duplicates at the end
        out = [f for f in run(JitterBuffer(), seqs) if f is not None]
        values = [int.from_bytes(f, "big") for f in out]
        offsets = [(v - start) & 0xFFFF for v in values]
        assert offsets == sorted(set(offsets))


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="depth"):
        JitterBuffer(capacity=4, depth=4)
    with pytest.raises(ValueError, match="capacity"):
        JitterBuffer(capacity=1, depth=0)
