"""Conference mixing cost in one process (issue 13): the mixer alone, no sockets.

Each participant gets one 20 ms G.711 frame a tick (``Participant.receive``, what the media session does for
each RTP packet) and its session's ``frame()`` (what the media clock's tick sends); the room mixes on the
first ``frame()``. Half the participants talk (a tone), half send silence: the speaker selection picks the
loudest 3. Reports CPU microseconds per participant per tick (median of 5 runs) and what that leaves for
participants per core on mixing alone (20 ms / cost); the RTP receive and send per packet come on top.

usage: python bench/mixer.py [--ticks 500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from engine.media.g711 import PT_PCMU, G711Codec
from engine.media.mixer import FRAME_SAMPLES, Participant, Room

CODEC = G711Codec(PT_PCMU)


def frames(hz: float, count: int) -> list[bytes]:
    t = np.arange(count * FRAME_SAMPLES) / 8000
    audio = np.round(0.2 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16) if hz else np.zeros(t.size,
                                                                                                 np.int16)
    return [CODEC.encode(audio[i : i + FRAME_SAMPLES]) for i in range(0, audio.size, FRAME_SAMPLES)]


def run(rooms: int, size: int, ticks: int) -> float:
    """CPU µs per participant per tick for ``rooms`` rooms of ``size``."""
    loops = [frames(300.0 + 37 * i, 50) if i % 2 == 0 else frames(0.0, 50) for i in range(size)]
    members: list[tuple[Participant, list[bytes]]] = []
    for _ in range(rooms):
        room = Room()
        for i in range(size):
            p = Participant(CODEC)
            room.add(p)
            members.append((p, loops[i]))
    start = time.process_time()
    for tick in range(ticks):
        for p, audio in members:
            p.receive(1, tick & 0xFFFF, audio[tick % len(audio)])
        for p, _ in members:
            p.frame(CODEC, tick)
    return (time.process_time() - start) / ticks / len(members) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=500)
    args = parser.parse_args()
    for rooms, size in ((1, 50), (20, 5)):
        cost = statistics.median(run(rooms, size, args.ticks) for _ in range(5))
        print(f"{rooms} room(s) of {size}: {cost:.1f} us per participant per tick, "
              f"{20000 / cost:.0f} participants per core on mixing alone")


if __name__ == "__main__":
    main()
