"""The conference mixer (issue 13): every 20 ms each participant of a room receives the mix of the others.

Pure numpy, no sockets and no clock: the media clock's tick is an argument. A ``Participant`` is what one
caller's media session plugs into: it takes the caller's RTP payloads (``receive``) and, once per tick,
gives the session the payload to send (``frame(codec, tick)``, the same call a ``HoldStream`` answers, so
the session does not know whether it plays hold music or a conference). The first participant of a room to
ask for tick T makes the room mix T for everyone (``Room.mix``); the others get what was computed. So all
rooms run on the one shared media clock, and a room costs one mix per tick whatever its size.

One tick of a room of N:

1. **Playout.** Each participant's next frame comes out of its jitter buffer (``JitterBuffer``, reordering
   by sequence number) through a short playout queue: playing starts once ``PREFETCH_FRAMES`` are there,
   the queue is trimmed back when it grows past ``MAX_QUEUE_FRAMES`` (latency stays bounded when the phone's
   clock runs fast), and a missing frame is concealed (below). The frames of one codec are decoded in one
   table lookup for the whole room.
2. **Talk level.** A participant's talk volume scales its frame (int32, Q12 gains, steps of 3 dB).
3. **Active speakers.** Each frame's level (mean absolute sample) is smoothed (a fast rise, a slow decay
   of ``LEVEL_DECAY`` a tick, so a talker is not dropped between two syllables). Muted participants and
   those under ``SPEECH_FLOOR`` are no talkers. Only the loudest ``max_talkers + 1`` talkers are mixed, as
   large conference servers do: noise and cost do not grow with the room.
4. **N-1 mixes.** Every listener hears the loudest ``max_talkers`` *other* talkers: the sum of the top
   ``max_talkers`` for those not among them (one mix shared by the whole silent room), and the sum of the top
   ``max_talkers + 1`` less their own frame for each of the top talkers. Sums are int32.
5. **Listen volume, saturation, encoding.** The listener's listen gain, clipping to int16, G.711 encoding:
   once per distinct (mix, listen volume, codec), so a room of 50 with 3 talkers encodes about 4 frames.

Packet-loss concealment is the simple kind (repeat and fade, as G.711 Appendix I starts from): a lost frame
repeats the last good one at half the level, a second at a quarter, then silence.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.media.g711 import ALAW_DECODE, PT_PCMA, ULAW_DECODE, G711Codec
from engine.media.jitter import JitterBuffer

FRAME_SAMPLES: Final = 160
"""20 ms at 8 kHz: the media clock's frame."""
MAX_TALKERS: Final = 3
"""Each listener hears at most this many others at once (the loudest)."""
SPEECH_FLOOR: Final = 40.0
"""Mean absolute sample under which a frame is no talker (about -58 dBFS: line noise, comfort noise)."""
LEVEL_DECAY: Final = 0.85
"""A talker's smoothed level falls by this factor a tick when it is quieter (half in ~4 ticks, 80 ms)."""
PREFETCH_FRAMES: Final = 2
"""Frames a participant's playout waits for before it starts (40 ms of jitter absorbed)."""
MAX_QUEUE_FRAMES: Final = 6
"""More frames waiting than this (120 ms) and the oldest are dropped back to ``PREFETCH_FRAMES``."""
CONCEAL_FRAMES: Final = 2
"""Lost frames filled from the last good one (fading); past this, silence."""
VOLUME_STEPS: Final = 4
"""Listen and talk volume go from -4 to +4 steps."""
VOLUME_STEP_DB: Final = 3.0
_Q: Final = 12  # gains in Q12 fixed point: 4096 is unity
_GAINS_Q12: Final = {
    step: round((1 << _Q) * 10 ** (step * VOLUME_STEP_DB / 20))
    for step in range(-VOLUME_STEPS, VOLUME_STEPS + 1)
}
_DECODE: Final = {PT_PCMA: ALAW_DECODE}

Int32Frame = npt.NDArray[np.int32]


class Participant:
    """One caller's media in a room (see the module docstring).

    Attributes:
        codec: the caller's negotiated G.711 codec (what ``receive`` gets and ``frame`` gives).
        muted: not heard by the others (still hears them).
        room: the room the participant is in, or None (then it sends silence).
        level: its smoothed level after the last tick (0: silent, muted or not yet talking).
    """

    __slots__ = (
        "_buffer",
        "_last",
        "_lost",
        "_out",
        "_playing",
        "_queue",
        "_ssrc",
        "codec",
        "level",
        "listen_step",
        "muted",
        "room",
        "talk_step",
    )

    def __init__(self, codec: G711Codec, *, muted: bool = False) -> None:
        self.codec = codec
        self.muted = muted
        self.listen_step = 0
        self.talk_step = 0
        self.room: Room | None = None
        self.level = 0.0
        self._ssrc: int | None = None
        self._buffer = JitterBuffer(capacity=16, depth=2, max_gap=500)
        self._queue: deque[bytes | None] = deque()
        self._playing = False
        self._last: bytes | None = None  # the last good payload (concealment repeats it)
        self._lost = 0
        self._out = bytes([codec.silence]) * FRAME_SAMPLES

    # -- volume --------------------------------------------------------------------------------------

    def change_listen(self, steps: int) -> int:
        """Move the listen volume by ``steps`` (clamped to -4..+4); returns the new step."""
        self.listen_step = max(-VOLUME_STEPS, min(VOLUME_STEPS, self.listen_step + steps))
        return self.listen_step

    def change_talk(self, steps: int) -> int:
        """Move the talk volume by ``steps`` (clamped to -4..+4); returns the new step."""
        self.talk_step = max(-VOLUME_STEPS, min(VOLUME_STEPS, self.talk_step + steps))
        return self.talk_step

    # -- in: RTP payloads ----------------------------------------------------------------------------

    def receive(self, ssrc: int, sequence: int, payload: bytes) -> None:
        """One RTP packet's audio payload (in ``codec``); a new SSRC starts a new sequence space.

        Raises:
            Nothing: a payload that is not one frame long is dropped.
        """
        if len(payload) != FRAME_SAMPLES:
            return
        if ssrc != self._ssrc:
            self._queue.extend(self._buffer.flush())
            self._ssrc = ssrc
        self._queue.extend(self._buffer.put(sequence, payload))

    def _take(self) -> bytes | Int32Frame | None:
        """This tick's frame: a payload, a concealed frame (lost, or the queue ran dry while playing), or
        None (silence: not started, or concealment has run out)."""
        queue = self._queue
        if not self._playing:
            if len(queue) < PREFETCH_FRAMES:
                return self._conceal() if self._lost else None  # a concealment goes on fading
            self._playing = True
        if len(queue) > MAX_QUEUE_FRAMES:
            for _ in range(len(queue) - PREFETCH_FRAMES):
                queue.popleft()
        if not queue:
            self._playing = False  # run dry: a pause, or the phone's clock is slow; prefetch again
            return self._conceal()
        payload = queue.popleft()
        if payload is None:
            return self._conceal()
        self._lost = 0
        self._last = payload
        return payload

    def _conceal(self) -> Int32Frame | None:
        """A lost frame: the last good one at half the level, then a quarter; then silence (None)."""
        self._lost += 1
        if self._last is None or self._lost > CONCEAL_FRAMES:
            return None
        table = _DECODE.get(self.codec.payload_type, ULAW_DECODE)
        return table[np.frombuffer(self._last, dtype=np.uint8)].astype(np.int32) >> self._lost

    # -- out: the FrameSource of the caller's media session ------------------------------------------

    def frame(self, codec: G711Codec, tick: int) -> bytes:
        """The payload to send on media clock tick ``tick``: the room's mix for this participant.

        Raises:
            Nothing.
        """
        room = self.room
        if room is not None:
            room.mix(tick)
        return self._out


class Room:
    """The mixer of one conference: its participants and the last tick it mixed.

    Args:
        max_talkers: how many others each listener hears at most (the loudest).
    """

    __slots__ = ("_levels", "_members", "_rows", "_tick", "max_talkers")

    def __init__(self, max_talkers: int = MAX_TALKERS) -> None:
        """Raises:
        ValueError: ``max_talkers`` below 1.
        """
        if max_talkers < 1:
            raise ValueError(f"max_talkers {max_talkers} must be at least 1")
        self.max_talkers = max_talkers
        self._members: list[Participant] = []
        self._levels = np.zeros(0, dtype=np.float64)
        self._rows = np.zeros((0, FRAME_SAMPLES), dtype=np.int32)
        self._tick: int | None = None

    @property
    def participants(self) -> tuple[Participant, ...]:
        return tuple(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def add(self, participant: Participant) -> None:
        """Mix ``participant`` in from the next tick (it leaves any room it was in).

        Raises:
            Nothing.
        """
        if participant.room is self:
            return
        if participant.room is not None:
            participant.room.remove(participant)
        participant.room = self
        participant.level = 0.0
        self._members.append(participant)
        self._levels = np.append(self._levels, 0.0)
        if len(self._members) > self._rows.shape[0]:
            self._rows = np.zeros((2 * len(self._members), FRAME_SAMPLES), dtype=np.int32)

    def remove(self, participant: Participant) -> None:
        """Stop mixing ``participant`` (it sends silence until it joins a room again); idempotent."""
        if participant.room is not self:
            return
        index = self._members.index(participant)
        del self._members[index]
        self._levels = np.delete(self._levels, index)
        participant.room = None
        participant._out = bytes([participant.codec.silence]) * FRAME_SAMPLES

    # -- one tick ------------------------------------------------------------------------------------

    def mix(self, tick: int) -> None:
        """Compute every participant's frame for ``tick`` (once; later calls for the same tick return).

        Raises:
            Nothing.
        """
        if tick == self._tick:
            return
        self._tick = tick
        members = self._members
        n = len(members)
        if n == 0:
            return
        rows = self._rows[:n]
        self._pull(members, rows)
        gains = [_GAINS_Q12[p.talk_step] for p in members]
        if any(g != 1 << _Q for g in gains):
            rows *= np.array(gains, dtype=np.int32)[:, None]
            rows >>= _Q
        instant = np.abs(rows).mean(axis=1)
        levels = np.maximum(instant, self._levels * LEVEL_DECAY)
        self._levels = levels
        for i, p in enumerate(members):
            if p.muted:
                levels[i] = 0.0
        talkers = self._talkers(levels)
        top = talkers[: self.max_talkers]
        common = rows[top].sum(axis=0) if top.size else np.zeros(FRAME_SAMPLES, dtype=np.int32)
        wider = common + rows[talkers[self.max_talkers]] if talkers.size > self.max_talkers else common
        top_set = {int(i): None for i in top}
        encoded: dict[tuple[int, int, int], bytes] = {}
        for i, p in enumerate(members):
            p.level = float(levels[i])
            own = i if i in top_set else -1
            key = (own, p.listen_step, p.codec.payload_type)
            out = encoded.get(key)
            if out is None:
                heard = common if own < 0 else wider - rows[i]
                gain = _GAINS_Q12[p.listen_step]
                if gain != 1 << _Q:
                    heard = (heard * gain) >> _Q
                out = encoded[key] = p.codec.encode(np.clip(heard, -32768, 32767))
            p._out = out

    def _pull(self, members: list[Participant], rows: Int32Frame) -> None:
        """Each member's next frame into its row: decoded in one lookup per codec, concealed when lost."""
        by_codec: dict[int, tuple[list[int], list[bytes]]] = {}
        for i, p in enumerate(members):
            got = p._take()
            if isinstance(got, bytes):
                indexes, payloads = by_codec.setdefault(p.codec.payload_type, ([], []))
                indexes.append(i)
                payloads.append(got)
            elif got is None:
                rows[i] = 0
            else:
                rows[i] = got
        for payload_type, (indexes, payloads) in by_codec.items():
            table = _DECODE.get(payload_type, ULAW_DECODE)
            decoded = table[np.frombuffer(b"".join(payloads), dtype=np.uint8)].reshape(-1, FRAME_SAMPLES)
            rows[indexes] = decoded

    def _talkers(self, levels: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """Indexes of the loudest ``max_talkers + 1`` talkers above the speech floor, loudest first."""
        candidates = np.flatnonzero(levels > SPEECH_FLOOR)
        wanted = self.max_talkers + 1
        if candidates.size > wanted:
            part = np.argpartition(levels[candidates], -wanted)[-wanted:]
            candidates = candidates[part]
        order = np.argsort(-levels[candidates], kind="stable")
        return candidates[order]
