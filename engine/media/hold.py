"""Hold music shared by every caller of a queue: one clip, encoded once per codec, looped on the media clock.

A waiting caller must cost a packet send, not a decode and an encode (issue 12: a thousand callers on hold
in a fraction of a core). A ``HoldStream`` holds the clip's samples and, the first time a codec asks, their
G.711 encoding (padded to whole frames); ``frame(codec, tick)`` is then a slice of those bytes at the
position the media clock's tick gives. Every session that plays the stream (``MediaSession.hold``) sends
the same slice on the same tick: all callers hear one stream in step, as a radio station sounds, and the
per-caller work is the RTP header and ``sendto``. No sockets, no clock (the tick is an argument).

``HoldStreams`` keeps one stream per clip file for the process: every caller on hold to that clip shares it,
and a clip replaced under the same name (size or modification time changed) or uploaded after a first
attempt found nothing is read again on the next hold, not played from the old copy until a restart.
"""

from __future__ import annotations

import logging
import os
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from engine.media.g711 import G711Codec
from engine.media.prompts import AudioFileCache, PromptError
from engine.media.tone import silence, tone

logger = logging.getLogger(__name__)

FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz, the media clock's ptime


class FrameSource(Protocol):
    """What a media session sends whenever no prompt plays (``MediaSession.hold``): a hold stream, or a
    conference participant's mix (``engine.media.mixer.Participant``)."""

    def frame(self, codec: G711Codec, tick: int) -> bytes: ...


class AudioSink(Protocol):
    """Where a media session hands the caller's audio payloads (``MediaSession.sink``): a conference
    participant's jitter buffer."""

    def receive(self, ssrc: int, sequence: int, payload: bytes) -> None: ...


def default_music() -> npt.NDArray[np.int16]:
    """The system hold music when a queue names no clip: a calm two-note figure (440 Hz and 660 Hz, each
    400 ms, 200 ms apart), tones a test can tell apart by frequency."""
    parts = [tone(440.0, 400, -15.0), silence(200), tone(660.0, 400, -15.0), silence(200)]
    return np.concatenate(parts)


class HoldStream:
    """One looped clip for any number of listeners (see the module docstring).

    Args:
        samples: 8 kHz 16-bit mono audio; an empty clip plays silence.
        frame_samples: samples per frame (the media clock's ptime).
    """

    __slots__ = ("_encoded", "_frame", "_samples")

    def __init__(self, samples: npt.NDArray[np.int16], frame_samples: int = FRAME_SAMPLES) -> None:
        tail = -samples.size % frame_samples
        if samples.size == 0:
            tail = frame_samples
        self._samples = np.concatenate([samples.astype(np.int16), np.zeros(tail, dtype=np.int16)])
        self._frame = frame_samples
        self._encoded: dict[int, bytes] = {}

    @property
    def frames(self) -> int:
        """The loop's length in frames."""
        return self._samples.size // self._frame

    def frame(self, codec: G711Codec, tick: int) -> bytes:
        """The payload of media clock tick ``tick`` in ``codec`` (encoded once per codec, then sliced).

        Raises:
            Nothing.
        """
        encoded = self._encoded.get(codec.payload_type)
        if encoded is None:
            encoded = self._encoded[codec.payload_type] = codec.encode(self._samples)
        start = (tick % self.frames) * self._frame
        return encoded[start : start + self._frame]


class OneShot(HoldStream):
    """A clip played once from the first frame asked for, then silence: an announcement sent out of a relay
    side the way hold music is (the parker hears the orbit number, ``engine.call.park``)."""

    __slots__ = ("_first",)

    def __init__(self, samples: npt.NDArray[np.int16], frame_samples: int = FRAME_SAMPLES) -> None:
        super().__init__(np.concatenate([samples.astype(np.int16), np.zeros(frame_samples, dtype=np.int16)]),
                         frame_samples)
        self._first: int | None = None

    @property
    def seconds(self) -> float:
        """How long the clip plays."""
        return self.frames * self._frame / 8000.0

    def frame(self, codec: G711Codec, tick: int) -> bytes:
        if self._first is None:
            self._first = tick
        return super().frame(codec, min(tick - self._first, self.frames - 1))


class HoldStreams:
    """The process's hold streams by clip path (None: the system music), each read once per version of its
    file: the file's (size, modification time) is checked on every ``get``, one ``stat`` per hold.

    Args:
        files: the WAV reader (small clips also stay in its cache).
    """

    __slots__ = ("_files", "_streams")

    def __init__(self, files: AudioFileCache) -> None:
        self._files = files
        self._streams: dict[str | None, tuple[tuple[int, int] | None, HoldStream]] = {}

    def get(self, path: str | None) -> HoldStream:
        """The shared stream of the clip at ``path``; a clip that is missing or unreadable plays the system
        music (a waiting caller must hear something) and is tried again once its file changes.

        Raises:
            Nothing.
        """
        version = _file_version(path)
        entry = self._streams.get(path)
        if entry is not None and entry[0] == version:
            return entry[1]
        samples = default_music()
        if path is not None:
            try:
                samples = self._files.load(path)
            except PromptError as exc:
                logger.warning("hold music %s: %s; playing the system music", path, exc)
        stream = HoldStream(samples)
        self._streams[path] = (version, stream)
        return stream


def _file_version(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
