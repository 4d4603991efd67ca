"""Playout for a real-time terminal: one frame per tick in sequence order after the prefill, lost frames
and underruns as None, the queue bounded, a new SSRC its own sequence space."""

from __future__ import annotations

import pytest

from engine.media.playout import Playout


def test_prefill_then_one_frame_a_tick_in_order_despite_reordering() -> None:
    p = Playout(prefill=2, high=8)
    p.put(7, 10, b"a")
    assert p.take() is None  # prefilling
    p.put(7, 12, b"c")
    p.put(7, 11, b"b")
    assert [p.take(), p.take(), p.take()] == [b"a", b"b", b"c"]
    assert p.take() is None and p.underruns == 1


def test_a_lost_packet_is_none_in_its_place() -> None:
    p = Playout(prefill=1, high=8)
    for seq in (1, 3, 4, 5, 6):
        p.put(1, seq, bytes([seq]))
    assert [p.take() for _ in range(6)] == [b"\x01", None, b"\x03", b"\x04", b"\x05", b"\x06"]


def test_the_queue_is_bounded_and_a_new_ssrc_starts_over() -> None:
    p = Playout(prefill=0, high=3)
    for seq in range(10):
        p.put(1, seq, bytes([seq]))
    assert p.trimmed > 0
    p.put(2, 500, b"x")
    got = [p.take() for _ in range(6)]
    assert b"x" in got and len([g for g in got if g is not None]) <= 4


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        Playout(prefill=4, high=4)
