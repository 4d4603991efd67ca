"""The media script: what a pure call flow asks of the engine's own media endpoint, and what comes back.

Flows that talk to a caller (the dial plan's auto attendant and prompts, the voicemail deposit and the
``*98``/``*99`` menu) are pure state machines. They never touch audio: they return one *action* at a time
and are resumed with its *outcome*. The call controller (``engine.call``) executes the actions on an
RTP endpoint (``engine.media.session``) and feeds the outcomes back. This keeps every flow unit-testable
without audio, sockets or a clock.

Digits: the controller keeps one buffer of DTMF digits per call (RFC 4733 events and SIP INFO alike).
Digits pressed while a prompt plays stay in the buffer, so a caller may type ahead ("a caller may press
keys while a prompt plays"); ``Collect`` reads the buffer before it waits. ``Play(barge_in=True)`` stops
at the first digit (which stays in the buffer); ``Collect(flush=True)`` drops stale digits first.

Prompt items name audio, they do not hold it: ``Sound`` is a system prompt by key (resolved per language
by ``engine.media.prompts``), ``File`` an absolute path to an 8 kHz 16-bit mono WAV (a sound clip, a
greeting, a message), ``Tone`` a generated tone (the beep), ``Silence`` a pause.

Why this module sits at the bottom of the layers, beside ``engine.clock`` and ``engine.files``, rather than
in ``engine.media``: it is a vocabulary, not media. The dial plans and the voicemail flows speak it and
``engine.media.session`` executes it; if it lived in ``engine.media``, the pure dial-plan core would depend on
the package that owns the sockets and the audio (and the import-linter contracts would have to allow it).
Here nobody above it has to import media to say "play this prompt". It imports nothing from the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DTMF_KEYS: Final = "0123456789*#"

# -- prompt items --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sound:
    """A system prompt by key, e.g. ``"vm-enter-pin"`` or ``"digit-7"``; the language is the call's."""

    key: str


@dataclass(frozen=True, slots=True)
class File:
    """An 8 kHz 16-bit mono WAV file by absolute path (sound clip, greeting, recorded name, message)."""

    path: str


@dataclass(frozen=True, slots=True)
class Tone:
    """A sine tone: ``hz`` for ``ms`` milliseconds (the beep before recording is 1000 Hz for 250 ms)."""

    hz: float
    ms: int
    level_dbfs: float = -9.0


@dataclass(frozen=True, slots=True)
class Silence:
    ms: int


PromptItem = Sound | File | Tone | Silence
BEEP: Final = Tone(1000.0, 250)

# -- actions -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the call (200 OK with the endpoint's SDP) if not yet answered. Outcome: ``Answered``."""


@dataclass(frozen=True, slots=True)
class Play:
    """Play ``items`` in order. With ``barge_in`` the first DTMF digit stops playback (the digit stays
    buffered). Outcome: ``Played``."""

    items: tuple[PromptItem, ...]
    barge_in: bool = True


@dataclass(frozen=True, slots=True)
class Collect:
    """Collect up to ``max_digits`` digits, ending early on a key in ``terminators`` (not included in the
    result), after ``first_timeout_s`` without a first digit or ``inter_digit_timeout_s`` between digits.
    Buffered digits count first unless ``flush``. Outcome: ``Collected``."""

    max_digits: int = 1
    terminators: str = ""
    first_timeout_s: float = 5.0
    inter_digit_timeout_s: float = 3.0
    flush: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """Record what the caller says into ``path`` (8 kHz 16-bit mono WAV, written atomically: a temp file
    renamed into place). Recording stops on a key in ``stop_keys`` (the key is consumed, not buffered),
    after ``silence_s`` of silence (trailing silence is trimmed), at ``max_s``, or when the caller hangs
    up (what was recorded is still written). ``beep`` plays ``BEEP`` first. Outcome: ``Recorded``."""

    path: str
    max_s: float = 120.0
    silence_s: float = 5.0
    stop_keys: str = "#"
    beep: bool = True


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call: BYE when answered, else the final response ``status``/``reason``."""

    status: int = 480
    reason: str = "Temporarily Unavailable"


MediaAction = Answer | Play | Collect | Record | Hangup

# -- outcomes ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    pass


@dataclass(frozen=True, slots=True)
class Played:
    """``interrupted``: a digit stopped playback (it is in the buffer)."""

    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class Collected:
    """``digits`` without the terminator; ``ended`` says why collection stopped; ``terminator`` is the
    key that ended it, if any."""

    digits: str
    ended: Literal["max", "terminator", "timeout"]
    terminator: str = ""


@dataclass(frozen=True, slots=True)
class Recorded:
    """``path`` is None when nothing was kept (no audio at all). ``duration_s`` excludes trimmed
    silence. ``ended``: ``key`` (``key`` says which), ``silence``, ``max`` or ``hangup``."""

    path: str | None
    duration_s: float
    ended: Literal["key", "silence", "max", "hangup"]
    key: str = ""


@dataclass(frozen=True, slots=True)
class HungUp:
    """The caller hung up while an action other than ``Record`` ran; the flow gets one last chance to
    act on it (its reply is ignored but for bookkeeping)."""


MediaOutcome = Answered | Played | Collected | Recorded | HungUp
