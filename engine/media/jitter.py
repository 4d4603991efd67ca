"""A small fixed-capacity jitter buffer keyed by RTP sequence number, for recording what a caller says.

Packets go in as they arrive (out of order, duplicated, with gaps); frames come out in sequence order.
Release is driven by arrivals, not by a clock, which is what a recorder wants (it does not play out in real
time): the frame at the head leaves as soon as it is there; a missing head is given up on (released as
``None``, a lost frame the caller fills with silence: packet loss concealment by silence) once ``depth``
newer packets are waiting behind it, or when the buffer is full. ``flush()`` releases everything at the
end of a recording, gaps included.

Duplicates and packets older than the head (already released or given up) are dropped and counted, however
far behind: a sender that restarts lower changes its SSRC, and the caller starts a new buffer for a new
SSRC. A packet beyond the window releases what is before it, as lost frames where missing (a burst of loss
keeps its duration in the recording). A jump of more than ``max_gap`` forward re-synchronises instead, once
a second packet in sequence with the first confirms it (a single stray packet is dropped; RFC 3550 A.1's
probation): what was buffered is released, then the new sequence continues.
Sequence numbers compare modulo 2^16.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.media.rtp import seq_add, seq_diff

Frame = bytes | None


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    duplicates: int = 0
    late: int = 0
    lost: int = 0
    resyncs: int = 0


class JitterBuffer:
    """Reorders payloads by sequence number; see the module docstring for the release rule."""

    __slots__ = ("_head", "_probe", "_slots", "capacity", "depth", "max_gap", "stats")

    def __init__(self, capacity: int = 32, depth: int = 3, max_gap: int = 500) -> None:
        """Args:
            capacity: the most packets held (a window of sequence numbers from the head).
            depth: how many newer packets may wait behind a missing one before it is declared lost
                (3 at 20 ms: 60 ms of reordering tolerated).
            max_gap: the longest forward jump filled with lost frames (500 at 20 ms: 10 s of loss keeps
                the recording's timing); a longer one re-synchronises instead.

        Raises:
            ValueError: ``capacity`` < 2, ``depth`` not in 0..capacity-1, ``max_gap`` < capacity or above
                32767.
        """
        if capacity < 2:
            raise ValueError(f"capacity {capacity} must be at least 2")
        if not 0 <= depth < capacity:
            raise ValueError(f"depth {depth} must lie in 0..{capacity - 1}")
        if not capacity <= max_gap <= 0x7FFF:
            raise ValueError(f"max_gap {max_gap} must lie in {capacity}..32767")
        self.capacity = capacity
        self.depth = depth
        self.max_gap = max_gap
        self._head: int | None = None  # the next sequence number to release
        self._slots: dict[int, bytes] = {}
        self._probe: tuple[int, bytes] | None = None
        self.stats = JitterStats()

    def __len__(self) -> int:
        return len(self._slots)

    def put(self, sequence: int, payload: bytes) -> list[Frame]:
        """Insert one packet's payload.

        Returns:
            The frames now releasable, in order (``None`` for each lost packet).
        """
        self.stats.received += 1
        released: list[Frame] = []
        if self._head is None:
            self._head = sequence
        offset = seq_diff(sequence, self._head)
        if offset > self.max_gap:
            probe = self._probe
            if probe is None or sequence != seq_add(probe[0], 1):
                # One packet far off is a stray (a very late duplicate, a stranger); wait for a second in
                # sequence with it before believing the sender jumped (RFC 3550 A.1's probation).
                self._probe = (sequence, payload)
                self.stats.late += 1
                return released
            released.extend(self.flush())
            self.stats.resyncs += 1
            self._head = probe[0]
            self._slots[probe[0]] = probe[1]
            self._probe = None
        elif offset < 0:
            self.stats.late += 1
            return released
        elif offset >= self.capacity:
            self._advance_to(seq_add(sequence, 1 - self.capacity), released)
        if sequence in self._slots:
            self.stats.duplicates += 1
            return released
        self._slots[sequence] = payload
        self._release(released)
        return released

    def flush(self) -> list[Frame]:
        """Release everything held, in order, with ``None`` for the gaps; the buffer is then empty and the
        next packet starts a new sequence."""
        released: list[Frame] = []
        head = self._head
        if head is not None:
            while self._slots:
                payload = self._slots.pop(head, None)
                if payload is None:
                    self.stats.lost += 1
                released.append(payload)
                head = seq_add(head, 1)
        self._head = None
        return released

    def _advance_to(self, target: int, released: list[Frame]) -> None:
        """Release (or give up) every frame before ``target``: a burst of loss longer than the window."""
        head = self._head
        assert head is not None
        while seq_diff(target, head) > 0:
            payload = self._slots.pop(head, None)
            if payload is None:
                self.stats.lost += 1
            released.append(payload)
            head = seq_add(head, 1)
        self._head = head

    def _release(self, released: list[Frame]) -> None:
        slots = self._slots
        head = self._head
        assert head is not None  # set by put() before any slot exists
        while slots:
            payload = slots.pop(head, None)
            if payload is None:
                newest = max(seq_diff(seq, head) for seq in slots)
                if len(slots) <= self.depth and newest < self.capacity:
                    break
                self.stats.lost += 1
            released.append(payload)
            head = seq_add(head, 1)
        self._head = head
