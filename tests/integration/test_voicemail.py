"""Voicemail end to end (issue 5's acceptance): real pjsua2 phones against a real ``pbx serve``.

A caller reaches a line that is not registered, or registered and not answering, hears the system default
greeting (checked prompt by prompt against the shipped prompts), the 1000 Hz beep, and leaves a 3 s tone;
the owner's phone gets the MWI NOTIFY; the owner dials ``*99``, enters ``0000#``, hears "one new message",
plays it (the tone comes back), saves it with ``9`` (the message moves to the saved folder on disk, MWI says
0/1); records a temporary greeting (``0``, ``4``, ``1``, a tone of another frequency, ``#``), reviews it
(``2``) and accepts it (``1``); the next caller hears that tone as the greeting; ``0``, ``4``, ``2``
switches it off and the default greeting is back. ``*98`` + another mailbox (and bare ``*98``, which asks
for the mailbox) opens that mailbox with its PIN; three wrong PINs end the call, two do not. A phone that
SUBSCRIBEs gets its NOTIFYs in the subscription. A greeting uploaded with ``pbx voicemail greeting set``
beside the running engine is heard by the next caller.

The company is German (country DE), so the engine speaks the German prompts; the tests compare with those.
What a phone hears is recorded by pjsua2 into a WAV that grows while the call goes on, and the tests wait on
that audio: a prompt is "heard" when the recording contains the prompt's samples (normalised
cross-correlation against engine/media/prompts/de/*.wav, which survives G.711), a tone when 20 ms frames are
dominated by its frequency. So there are no fixed sleeps for prompts: each step waits, with a deadline, for
what the phone must hear before the next key is pressed. Keys are RFC 4733 events sent by pjsua2.
"""

from __future__ import annotations

import json
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pytest

from engine.media.prompts import PromptLibrary
from engine.voicemail.flows import MENU_TIMEOUT_S

from ..peers.softphone import Event, Softphone
from .audio import RATE_HZ, SIGNAL_RMS, dominant_frequency, read_wav, signal_seconds, write_tone
from .harness import PbxServer, require_module, run_pbx
from .test_calls_phones import rtp_range

pytestmark = pytest.mark.integration

Samples = npt.NDArray[np.float64]

REALM: Final = "pbx.test"
OWNER: Final = "201"
OTHER: Final = "202"
CALLER: Final = "203"
RING_TIMEOUT_S: Final = 3.0
#: Test tones: multiples of 50 Hz, so a 20 ms frame holds whole periods and one DFT bin catches them.
BEEP_HZ: Final = 1000.0
MESSAGE_HZ: Final = 600.0
TEMPORARY_HZ: Final = 850.0
UPLOADED_HZ: Final = 450.0
MESSAGE_S: Final = 3.0
FRAME: Final = RATE_HZ // 50  # 20 ms
#: A prompt is heard when some stretch of the recording matches it this well (normalised cross-correlation);
#: a prompt through G.711 and pjsua2 scores above 0.95, another prompt or a tone below 0.5.
HEARD: Final = 0.8
#: How the phone's jitter buffer shifts the rest of a prompt (in samples) when, under load, it runs empty and
#: makes up 10 ms frames (later, by up to 130 ms) or loses one or two (earlier): what the recordings of
#: loaded runs show (see ``find_slipped``).
SLIPS: Final = (-160, -80, *range(80, 1041, 80))
#: A piece that matches only with its slips undone must then match as well as prompts do (above 0.95) ...
REPAIRED: Final = 0.9
#: ... and a piece that matches this little is another sound, not a slipped one (not tried).
TRY_REPAIR: Final = 0.45
PROMPTS: Final = PromptLibrary()
LANG: Final = "de"  # the company is in Germany: the plans' default language


def password(ext: str) -> str:
    return f"secret-{ext}"


def company_yaml() -> str:
    return f"""version: 1
company:
  name: Voicemail Test GmbH
  sip_realm: {REALM}
  timezone: Europe/Berlin
  country: DE
  area_code: "30"
users:
  - {{first_name: Olga, last_name: Owner, extension: "{OWNER}", sip_password: {password(OWNER)}}}
  - {{first_name: Otto, last_name: Other, extension: "{OTHER}", sip_password: {password(OTHER)}}}
  - {{first_name: Cara, last_name: Caller, extension: "{CALLER}", sip_password: {password(CALLER)}}}
"""


# -- what a phone hears --------------------------------------------------------------------------------------


def prompt(key: str) -> Samples:
    """A shipped English prompt as floats in [-1, 1)."""
    return PROMPTS.get(LANG, key).astype(np.float64) / 32768.0


def default_greeting(extension: str) -> list[str]:
    """The system default greeting's prompts: "The person at extension 2 0 1 is not available ..."."""
    return ["vm-person-at-extension", *(f"digit-{d}" for d in extension), "vm-not-available"]


def read_growing(path: Path) -> Samples:
    """The samples a pjsua2 recorder has written so far (its WAV header is only finished at the end)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return np.zeros(0)
    at = data.find(b"data")
    if at < 0:
        return np.zeros(0)
    raw = data[at + 8 :]
    return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def find(heard: Samples, expected: Samples, start: int = 0) -> tuple[float, int]:
    """Where ``expected`` best matches ``heard[start:]``: (normalised cross-correlation, sample offset)."""
    h = heard[start:]
    n = len(expected)
    if n == 0 or len(h) < n:
        return 0.0, -1
    size = 1 << int(np.ceil(np.log2(len(h) + n)))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(expected, size)), size)[: len(h) - n + 1]
    energy = np.concatenate(([0.0], np.cumsum(h * h)))
    window = energy[n:] - energy[:-n]
    ncc = corr / (max(float(np.linalg.norm(expected)), 1e-9) * np.sqrt(np.maximum(window, 1e-12)))
    ncc[window < n * SIGNAL_RMS**2] = 0.0  # silence matches nothing
    k = int(np.argmax(ncc))
    return float(ncc[k]), start + k


def _slipped(heard: Samples, piece: Samples, starts: Sequence[int]) -> tuple[float, int, int]:
    """The best match of ``piece`` from near one of ``starts`` (where some part of it fits exactly) with
    slips inside it: (score, from, to), (0.0, -1, -1) when none fits in ``heard``.

    The piece is cut into 5 ms blocks; block j is heard at ``start + 5 ms * j + 10 ms * m``, where the
    shift m may change between blocks by one of ``SLIPS``: up when the phone made up frames (heard then, but
    no part of the piece), down when it lost some (the piece's blocks in between are not heard; once per
    piece, so that no word can be left out). The path of least squared error is found by dynamic
    programming, a slip costing what two blocks bring, so that none is made up; the score is the normalised
    correlation along it (a block with a slip inside it matches a little worse)."""
    block, unit = 40, 80  # samples: 5 ms blocks, slips of 10 ms frames
    ratio = unit // block
    n = len(piece)
    blocks = -(-n // block)
    p = np.concatenate((piece, np.zeros(blocks * block - n))).reshape(blocks, block)
    own = np.sum(p * p, axis=1)
    moves = np.array([s // unit for s in SLIPS])
    span = int(np.max(np.abs(moves))) + 1
    count = 2 * span + 1  # shifts m = -span .. span, as states 0 .. 2 * span
    states = np.arange(count)
    source = states[None, :] - moves[:, None]  # the state a move comes from
    source_ok = (source >= 0) & (source < count)
    source = np.clip(source, 0, count - 1)
    skipped = ratio * np.maximum(0, -moves)  # blocks lost with a move down
    down = moves < 0
    cost = 2 * float(np.sum(own)) / blocks
    inf = np.inf
    best = (0.0, -1, -1)
    done: set[int] = set()
    for start in starts:
        first, last = start - span * unit, start + span * unit + blocks * block
        if (
            first < 0
            or last > len(heard)
            or any(abs(start - s) <= unit and (start - s) % unit == 0 for s in done)
        ):
            continue
        done.add(start)
        h = heard[first:last].reshape(-1, block)
        cols = np.arange(blocks)[:, None] + ratio * states[None, :]  # heard block of (j, m)
        c = np.take_along_axis(p @ h.T, cols, axis=1)  # block j heard with shift m
        e = np.sum(h * h, axis=1)[cols]
        gain = 2 * c - e  # what a block brings: minus its squared error, up to a constant
        # value[j, lost, m]: the best path to block j heard with shift m, having lost frames (1) or not (0);
        # came[j, lost, m]: (block, lost, shift) before it
        value = np.full((blocks, 2, count), -inf)
        came = np.zeros((blocks, 2, count, 3), dtype=np.int64)
        value[0, 0] = gain[0]
        for j in range(1, blocks):
            rows = np.where(down, j - 1 - skipped, j - 1)
            for lost in (0, 1):
                layer = np.where(down, 0, lost)  # frames are lost from a path that had lost none
                ok = source_ok & (rows >= 0)[:, None] & ((~down) | (lost == 1))[:, None]
                moved = np.where(ok, value[np.maximum(rows, 0)[:, None], layer[:, None], source] - cost, -inf)
                pick = np.argmax(moved, axis=0)  # the best move into each state
                into = moved[pick, states]
                stay = value[j - 1, lost]
                slip = into > stay
                value[j, lost] = np.where(slip, into, stay) + gain[j]
                came[j, lost, :, 0] = np.where(slip, rows[pick], j - 1)
                came[j, lost, :, 1] = np.where(slip, layer[pick], lost)
                came[j, lost, :, 2] = np.where(slip, source[pick, states], states)
        lost, m = divmod(int(np.argmax(value[-1])), count)
        j, end, path = blocks - 1, m, []
        while True:
            path.append((j, m))
            if j == 0:
                break
            j, lost, m = (int(x) for x in came[j, lost, m])
        on, at = np.array([b for b, _ in path]), np.array([s for _, s in path])
        power, norm = float(np.sum(e[on, at])), float(np.sum(own[on]))
        if power < n * SIGNAL_RMS**2 or norm <= 0.0:
            continue  # silence matches nothing
        score = float(np.sum(c[on, at])) / float(np.sqrt(norm * power))
        if score > best[0]:
            best = (score, start + (path[-1][1] - span) * unit, start + n + (end - span) * unit)
    return best


def find_slipped(
    heard: Samples, piece: Samples, lo: int, hi: int, *, repair: bool = True
) -> tuple[float, int, int]:
    """Where ``piece`` best matches ``heard`` starting in [lo, hi], the phone's jitter buffer allowed to have
    slipped inside it (unless not ``repair``): (score, from, to) in samples, or (0.0, -1, -1) before enough
    is heard.

    Under load the phone's jitter buffer runs empty and makes up frames ("plc invoked" in pjsua's log), or
    loses some: everything after that point comes a multiple of 10 ms later or earlier (``SLIPS``, measured
    in the recordings), and a piece with a slip inside matches no single offset (0.68 for one in
    "goodbye"). So a piece that matches neither as a whole nor not at all (``TRY_REPAIR``) is also tried
    with slips (``_slipped``); it must then match as well as an unslipped piece does (``REPAIRED``): all its
    sound there, in order, at the offsets slips give. Where to try: most of its quarters are clean, so the
    best place of each quarter near there, taken back to the start of the piece, is where some part of it
    fits exactly.
    """
    n = len(piece)
    score, at = find(heard[: hi + n], piece, lo)
    if at < 0:
        return 0.0, -1, -1
    best = (score, at, at + n)
    if score >= HEARD or not repair:
        return best
    lowest, reach = lo + min(SLIPS), hi + max(SLIPS)
    near, around = find(heard[: reach + n], piece, max(0, lowest))  # after a longer slip too
    if max(score, near) < TRY_REPAIR:
        return best
    quarter = n // 4
    starts = {at, around}
    for j in range(4):
        part = piece[j * quarter : (j + 1) * quarter]
        _, found = find(heard[: reach + (j + 1) * quarter], part, max(0, lowest + j * quarter))
        if found >= 0:
            starts.add(found - j * quarter)
    repaired = _slipped(heard, piece, sorted(starts))
    return repaired if repaired[0] >= REPAIRED and repaired[0] > score else best


def find_prompt(heard: Samples, expected: Samples, start: int = 0) -> tuple[float, int, int]:
    """Where ``expected`` (a prompt) was heard in ``heard[start:]``: (score, from, to) in samples.

    A jitter buffer may add or drop a frame anywhere in a prompt, which one correlation over the whole does
    not survive. So the first 0.5 s is found anywhere after ``start``, and the rest in 0.25 s pieces, each
    within 60 ms of where the previous one ended, a slip inside a piece allowed (``find_slipped``); the
    score is the second-worst piece's (one piece may be spoilt all the same), pauses left out: prompts that
    differ only in their last word ("ist eingeschaltet" / "ist ausgeschaltet") are told apart. The last piece
    may be cut short (by a hang-up).

    The first 0.2 s of the prompt is left out, and the prompt may have begun up to that much before
    ``start``: the start of a call's audio may be lost before the phone's recorder is attached (the prompt
    began before sample 0), and a ``start`` that is the end of the previous prompt (``to``, from the
    prompts' lengths) comes too late when the phone dropped a frame in that prompt's closing pause, while
    the next prompt followed without a gap. Both happen on a loaded machine; searching only from
    ``start + 0.2 s`` then missed the prompt. ``from`` is never before 0.
    """
    skip, head, step, slack = RATE_HZ // 5, RATE_HZ // 2, RATE_HZ // 4, RATE_HZ * 6 // 100
    piece = expected[skip : skip + head]
    score, first = find(heard, piece, start)
    if first < 0:
        return 0.0, -1, -1
    # a slipped head is tried near where it matched best (its sound is there, most of it at that offset)
    reach = max(SLIPS) + FRAME
    score, first, at = find_slipped(heard, piece, max(start, first - reach), first + reach)
    begin = max(0, first - skip)
    scores = [score]
    pieces = range(skip + head, len(expected), step)
    # Slips are tried while the prompt may still be heard: one piece may be spoilt when there are four
    # scores or more (see _robust), none when fewer. (That also keeps the polls of an absent prompt cheap.)
    voiced = sum(1 for i in pieces if np.sqrt(np.mean(expected[i : i + step] ** 2)) >= 2 * SIGNAL_RMS)
    spare = 1 if 1 + voiced >= 4 else 0
    for i in pieces:
        piece = expected[i : i + step]
        if len(piece) < step // 2:
            at += len(piece)
            break
        if i + step >= len(expected) and at + len(piece) > len(heard):
            # The last piece, cut short: a hang-up right after a prompt ends it while the phone's jitter
            # buffer still holds its last frames (the prompts end in silence). Match what arrived.
            piece = piece[: max(0, len(heard) - at)]
            if len(piece) < step // 2:
                at = len(heard)
                break
        pause = np.sqrt(np.mean(piece * piece)) < 2 * SIGNAL_RMS
        repair = not pause and sum(1 for x in scores if x < HEARD) <= spare
        found, _, end = find_slipped(heard, piece, max(0, at - slack), at + slack, repair=repair)
        if end < 0:
            return 0.0, begin, -1
        if pause:
            at += len(piece)  # a pause matches anything
            continue
        scores.append(found)
        at = end
    return _robust(scores), begin, at


def _robust(scores: list[float]) -> float:
    """The second-worst score (one piece may be spoilt by a slipped frame), the worst when there are few."""
    ranked = sorted(scores)
    return ranked[1] if len(ranked) >= 4 else ranked[0]


def find_sequence(heard: Samples, keys: Sequence[str], start: int = 0) -> list[tuple[str, float, int, int]]:
    """Each prompt of ``keys`` searched for after the previous one: [(key, score, from, to)], up to the first
    one not heard."""
    found: list[tuple[str, float, int, int]] = []
    at = start
    for key in keys:
        score, begin, end = find_prompt(heard, prompt(key), at)
        found.append((key, score, begin, end))
        if score < HEARD:
            break
        at = end - FRAME
    return found


def tone_runs(samples: Samples, hz: float, start: int = 0, bridge: int = 1) -> list[tuple[int, int]]:
    """Stretches [from, to) in samples where 20 ms frames are dominated by ``hz``, gaps of up to ``bridge``
    frames bridged (a phone on a loaded box drops a few packets; a stretch played twice is seconds apart)."""
    first = start // FRAME
    count = len(samples) // FRAME - first
    if count <= 0:
        return []
    frames = samples[first * FRAME : (first + count) * FRAME].reshape(count, FRAME)
    power = np.sum(frames * frames, axis=1)
    probe = np.exp(-2j * np.pi * hz * np.arange(FRAME) / RATE_HZ)
    share = 2 * np.abs(frames @ probe) ** 2 / (FRAME * np.maximum(power, 1e-12))
    tone = (power > FRAME * SIGNAL_RMS**2) & (share > 0.7)
    tone[1:-1] |= tone[:-2] & tone[2:]
    runs: list[tuple[int, int]] = []
    edges = np.diff(np.concatenate(([0], tone.astype(np.int8), [0])))
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        a_at, b_at = (first + int(a)) * FRAME, (first + int(b)) * FRAME
        if runs and a_at - runs[-1][1] <= bridge * FRAME:
            runs[-1] = (runs[-1][0], b_at)
        else:
            runs.append((a_at, b_at))
    return runs


class Ear:
    """What one phone hears in one call, recorded to ``path`` and inspected while it grows."""

    def __init__(self, phone: Softphone, path: Path) -> None:
        self.phone = phone
        self.path = path
        phone.record(path)

    def samples(self) -> Samples:
        return read_growing(self.path)

    def wait(self, what: str, check: Callable[[Samples], Any], timeout: float) -> Any:
        """Poll the recording until ``check(samples)`` returns something truthy; fail with ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.samples()
            result = check(samples)
            if result:
                return result
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{self.phone.name} never heard {what} within {timeout} s ({len(samples) / RATE_HZ:.1f} "
                    f"s recorded in {self.path}; last check: {check(samples)!r})\n{self.phone.describe()}"
                )
            time.sleep(0.1)

    def heard(
        self, keys: Sequence[str], start: int = 0, timeout: float = 20.0
    ) -> list[tuple[str, float, int, int]]:
        """Wait until the prompts ``keys`` were heard in order after sample ``start``; their matches."""

        def check(samples: Samples) -> list[tuple[str, float, int, int]] | None:
            found = find_sequence(samples, keys, start)
            return found if len(found) == len(keys) and found[-1][1] >= HEARD else None

        result: list[tuple[str, float, int, int]] = self.wait(f"the prompts {list(keys)}", check, timeout)
        return result

    def end_of(self, keys: Sequence[str], start: int = 0, timeout: float = 20.0) -> int:
        """Wait for ``keys`` (in order); the sample offset where the last one ends."""
        return self.heard(keys, start, timeout)[-1][3]

    def begins(self, key: str, start: int = 0, timeout: float = 20.0) -> int:
        """Wait until prompt ``key`` has started (its first 0.7 s heard after ``start``, or from up to 0.2 s
        before it: see ``find_prompt``): keys pressed now interrupt it (barge-in). Returns where it started
        (not before 0)."""
        head = prompt(key)[: int(0.7 * RATE_HZ)]

        def check(samples: Samples) -> int | None:
            score, first, end = find_prompt(samples, head, start)
            return first + 1 if score >= HEARD and end > 0 else None  # + 1: an offset of 0 is found too

        at: int = self.wait(f"the start of {key}", check, timeout)
        return at - 1

    def tone(
        self, hz: float, min_s: float, start: int = 0, timeout: float = 20.0, *, ended: bool = False
    ) -> tuple[int, int]:
        """Wait for ``hz`` lasting ``min_s`` after sample ``start`` (and, with ``ended``, over by now)."""

        def check(samples: Samples) -> tuple[int, int] | None:
            for a, b in tone_runs(samples, hz, start):
                if (b - a) >= min_s * RATE_HZ and (not ended or b < len(samples) - 2 * FRAME):
                    return a, b
            return None

        result: tuple[int, int] = self.wait(f"{hz:.0f} Hz for {min_s} s", check, timeout)
        return result

    def beep(self, start: int = 0, timeout: float = 20.0) -> tuple[int, int]:
        """Wait for the record beep (1000 Hz, 250 ms) to be over; its [from, to) in samples."""
        a, b = self.tone(BEEP_HZ, 0.15, start, timeout, ended=True)
        assert 0.15 * RATE_HZ <= b - a <= 0.4 * RATE_HZ, (
            f"a 1000 Hz stretch of {(b - a) / RATE_HZ:.2f} s is no beep"
        )
        return a, b

    def stop(self) -> Samples:
        """Finish the recording; all of it."""
        event = self.phone.stop_record()
        samples, rate = read_wav(str(event["path"]))
        assert rate == RATE_HZ
        return samples


def segment_frequency(samples: Samples, a: int, b: int, tmp: Path) -> float:
    """The dominant frequency of ``samples[a:b]`` (via audio.dominant_frequency on a scratch WAV)."""
    path = tmp / f"segment-{a}-{b}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(np.round(samples[a:b] * 32767).astype("<i2").tobytes())
    return dominant_frequency(path)


# -- the rig -------------------------------------------------------------------------------------------------


@dataclass
class Rig:
    server: PbxServer
    tmp: Path
    spawn: Any
    phones: list[Softphone] = field(default_factory=list)
    ears: int = 0

    @property
    def registrar(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def uri(self, user: str) -> str:
        return f"sip:{user}@{self.registrar}"

    def phone(self, name: str, ext: str, *, register: bool = True, **kw: Any) -> Softphone:
        """A pjsua2 phone of line ``ext``: registered (and waited for), or not registered but able to call
        (its credentials answer the INVITE's challenge)."""
        phone = Softphone.pjsua2(
            name,
            self.tmp,
            user=ext,
            password=password(ext),
            registrar=self.registrar if register else None,
            spawn=self.spawn,
            max_seconds=170.0,
            **kw,
        )
        self.phones.append(phone)
        phone.start()
        if register:
            phone.wait_registered()
        return phone

    def dial(self, phone: Softphone, user: str) -> Ear:
        """``phone`` calls ``user``; once answered, what it hears is recorded. (Asked for before the answer,
        pjsua2 would create the recorder inside its media callback, which crashed it once in a few dozen
        calls here; the first tens of ms a late recorder misses are not compared, see ``find_prompt``.)"""
        phone.call(self.uri(user))
        phone.wait_state("CONFIRMED", timeout=RING_TIMEOUT_S + 15.0)
        phone.wait_for("media_state", lambda e: e.get("state") == "active")
        self.ears += 1
        return Ear(phone, self.tmp / f"{phone.name}-heard-{self.ears}.wav")

    def box(self, number: str) -> Path:
        return self.server.data_dir / "voicemail" / number

    def messages(self, number: str) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text()) | {"_wav": str(p.with_suffix(".wav"))}
            for p in sorted(self.box(number).glob("msg-*.json"))
        ]

    def settings(self, number: str) -> dict[str, Any]:
        return dict(json.loads((self.box(number) / "mailbox.json").read_text()))

    def until(self, what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() >= deadline:
                pytest.fail(f"never {what} within {timeout} s\n{self.server.log_tail()}")
            time.sleep(0.1)


@pytest.fixture
def rig(pbx_factory: Any, peers: Any, tmp_path: Path) -> Iterator[Rig]:
    require_module("pjsua2", "pip install pjsua2-python==2.15.1.post1 (part of `pip install -e '.[test]'`)")
    company = tmp_path / "vm-company.yaml"
    company.write_text(company_yaml())
    rtp = rtp_range()
    server = pbx_factory(
        company_file=company,
        name="vm",
        extra_args=["--rtp-ports", f"{rtp[0]}-{rtp[1]}", "--ring-timeout", str(RING_TIMEOUT_S)],
    )
    rig = Rig(server, tmp_path, peers)
    try:
        yield rig
    finally:
        for phone in rig.phones:
            phone.close()


def spoken(path: Path, hz: float, seconds: float) -> Path:
    """What a phone says into a recording: a tone of ``seconds``, then a minute of silence. pjsua2 loops a
    player, and it crashed (SIGSEGV) twice here around player and recorder changes during a call; so no
    stop_play: the player runs until the call ends and is silent after the tone."""
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    tone = np.round(0.4 * 32767 * np.sin(2 * np.pi * hz * t))
    samples = np.concatenate((tone, np.zeros(60 * RATE_HZ))).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(samples.tobytes())
    return path


def ended(e: Event) -> bool:
    return e.get("ev") == "call_state" and e.get("state") == "DISCONNECTED"


# -- the tests -----------------------------------------------------------------------------------------------


def test_unanswered_line_takes_a_message_the_owner_hears_and_saves_it(rig: Rig, tmp_path: Path) -> None:
    tone = spoken(tmp_path / "message.wav", MESSAGE_HZ, MESSAGE_S)
    owner = rig.phone("owner", OWNER)  # registered, never answers
    caller = rig.phone("caller", CALLER)

    ear = rig.dial(caller, OWNER)
    owner.wait_for("incoming_call")
    owner.wait_state("DISCONNECTED", timeout=RING_TIMEOUT_S + 10.0)  # the ring timeout cancels it
    found = ear.heard(default_greeting(OWNER))
    greeting_end = found[-1][3]
    beep = ear.beep(greeting_end - FRAME)
    caller.play(tone)
    time.sleep(MESSAGE_S)
    caller.dtmf("#")
    caller.wait_state("DISCONNECTED", timeout=15.0)
    heard = ear.stop()

    # the greeting: every prompt in order, spoken at full length, then the beep at 1000 Hz
    for key, score, _, _ in found:
        assert score >= HEARD, f"greeting prompt {key} matched only {score:.2f}: {found}"
    speech_s = sum(len(prompt(k)) for k in default_greeting(OWNER)) / RATE_HZ
    assert (greeting_end - found[0][2]) / RATE_HZ == pytest.approx(speech_s, abs=0.5)
    assert abs(segment_frequency(heard, *beep, tmp_path) - BEEP_HZ) <= 10.0
    assert beep[0] >= greeting_end - 2 * FRAME, "the beep comes after the greeting"

    # the message on disk: new, from the caller, the tone for about 3 s
    (message,) = rig.until("a stored message", lambda: rig.messages(OWNER))
    assert message["folder"] == "new" and message["caller"] == CALLER, message
    assert abs(dominant_frequency(message["_wav"]) - MESSAGE_HZ) <= 10.0
    assert signal_seconds(message["_wav"]) == pytest.approx(MESSAGE_S, abs=0.4)

    # the owner's phone is told (unsolicited NOTIFY to its registered contact)
    lit = owner.wait_mwi(lambda e: e["waiting"])
    assert "Messages-Waiting: yes" in lit["body"] and "Voice-Message: 1/0" in lit["body"], lit
    assert f"Message-Account: sip:{OWNER}@{REALM}" in lit["body"], lit

    # *99, PIN, "You have one new message", 1 plays it, 9 (during the message) saves it
    ear = rig.dial(owner, "*99")
    ear.begins("vm-enter-pin")
    owner.dtmf("0000#")  # while the prompt plays
    summary_end = ear.end_of(["vm-you-have", "count-one", "vm-new-message"])
    owner.dtmf("1")
    intro_end = ear.end_of(["vm-first-message"], summary_end)
    played = ear.tone(MESSAGE_HZ, 1.0, intro_end)
    owner.dtmf("9")
    saved_end = ear.end_of(["vm-message-saved", "vm-no-more-messages"], played[1])
    owner.hangup()
    owner.wait_state("DISCONNECTED")
    heard = ear.stop()

    replay = [r for r in tone_runs(heard, MESSAGE_HZ, intro_end, bridge=5) if r[0] < saved_end]
    assert len(replay) == 1, f"one stretch of the message's tone expected, got {replay}"
    a, b = replay[0]
    assert abs(segment_frequency(heard, a, b, tmp_path) - MESSAGE_HZ) <= 10.0
    assert (b - a) / RATE_HZ < MESSAGE_S - 0.3, "9 was pressed during the message: it must stop playing"
    stored, _ = read_wav(message["_wav"])
    onset = int(np.argmax(np.abs(stored) > 0.05))
    score, _ = find(heard, stored[max(0, onset - FRAME) : onset + RATE_HZ // 2], intro_end)
    assert score >= HEARD, f"the played message does not match the stored one (correlation {score:.2f})"

    (message,) = rig.messages(OWNER)
    assert message["folder"] == "saved", message
    dark = owner.wait_mwi(lambda e: not e["waiting"])
    assert "Messages-Waiting: no" in dark["body"] and "Voice-Message: 0/1" in dark["body"], dark


def test_temporary_greeting_recorded_reviewed_accepted_heard_and_switched_off(
    rig: Rig, tmp_path: Path
) -> None:
    greeting = spoken(tmp_path / "temporary.wav", TEMPORARY_HZ, 2.0)
    owner = rig.phone("owner", OWNER, register=False)  # no phone registered: calls go straight to voicemail
    caller = rig.phone("caller", CALLER, register=False)

    # *99, PIN typed while the prompt plays, then 0 (options) 4 (temporary) 1 (record) typed ahead
    ear = rig.dial(owner, "*99")
    ear.begins("vm-enter-pin")
    owner.dtmf("0000#041")
    asked = ear.end_of(["vm-record-after-tone"])  # typed ahead, the menus on the way are cut short
    beep = ear.beep(asked - FRAME)
    owner.play(greeting)
    time.sleep(2.0)
    owner.dtmf("#")
    review = ear.begins("vm-review-menu", beep[1])
    owner.dtmf("2")  # review: the recording plays back, then the review menu again
    back = ear.tone(TEMPORARY_HZ, 1.5, review, ended=True)
    again = ear.begins("vm-review-menu", back[1])
    owner.dtmf("1")  # accept: saved, and switched on
    ear.heard(["vm-recording-saved", "vm-temp-is-on"], again)
    owner.hangup()
    owner.wait_state("DISCONNECTED")
    heard = ear.stop()
    assert abs(segment_frequency(heard, *back, tmp_path) - TEMPORARY_HZ) <= 10.0
    settings = rig.settings(OWNER)
    assert settings["temporary_active"] is True, settings
    stored = rig.box(OWNER) / settings["greetings"]["temporary"]
    assert abs(dominant_frequency(stored) - TEMPORARY_HZ) <= 10.0
    assert signal_seconds(stored) == pytest.approx(2.0, abs=0.4)

    # the next caller hears the temporary greeting, then the beep (and no default greeting)
    ear = rig.dial(caller, OWNER)
    played = ear.tone(TEMPORARY_HZ, 1.5, ended=True)
    ear.beep(played[1] - FRAME)
    caller.hangup()  # before saying anything: no message is kept
    caller.wait_state("DISCONNECTED")
    heard = ear.stop()
    score, _, _ = find_prompt(heard, prompt("vm-person-at-extension"))
    assert score < 0.5, f"the default greeting was heard too ({score:.2f})"
    assert abs(segment_frequency(heard, *played, tmp_path) - TEMPORARY_HZ) <= 10.0

    # 0 4 2 switches it off; the default greeting is back
    ear = rig.dial(owner, "*99")
    ear.begins("vm-enter-pin")
    owner.dtmf("0000#042")
    ear.heard(["vm-temp-is-off"])  # the temporary menu, which tells the state first
    owner.hangup()
    owner.wait_state("DISCONNECTED")
    ear.stop()
    settings = rig.until(
        "switched off on disk", lambda: (s := rig.settings(OWNER))["temporary_active"] is False and s
    )
    assert settings["greetings"].get("temporary"), f"switched off, the greeting is still kept: {settings}"

    ear = rig.dial(caller, OWNER)
    ear.heard(default_greeting(OWNER)[:-1])  # "The person at extension 2 0 1 ..." (all of it: test 1)
    caller.hangup()
    caller.wait_state("DISCONNECTED")
    heard = ear.stop()
    assert not tone_runs(heard, TEMPORARY_HZ), "the temporary greeting is off but was heard"
    assert rig.messages(OWNER) == [], "hanging up at the beep leaves no message"


def test_star98_opens_another_mailbox_and_a_subscribed_phone_gets_mwi(rig: Rig, tmp_path: Path) -> None:
    tone = spoken(tmp_path / "message.wav", MESSAGE_HZ, 1.5)
    other = rig.phone("other", OTHER, mwi_subscribe=True, auto_answer=486)  # busy: calls go to voicemail
    first = other.wait_mwi()  # RFC 3842: the NOTIFY that follows the SUBSCRIBE's 200
    assert not first["waiting"] and first["voice"] == "0/0", first
    assert "Messages-Waiting: no" in first["body"] and first["state"] in ("ACCEPTED", "ACTIVE"), first
    caller = rig.phone("caller", CALLER, register=False)

    # a message for 202: the caller skips the greeting with # and speaks after the beep
    ear = rig.dial(caller, OTHER)
    other.wait_for("call_state", lambda e: e.get("last_code") == 486)
    started = ear.begins("vm-person-at-extension")
    caller.dtmf("#")
    ear.beep(started)
    caller.play(tone)
    time.sleep(1.5)
    caller.dtmf("#")
    ear.heard(["vm-goodbye"])
    caller.wait_state("DISCONNECTED")
    heard = ear.stop()
    assert find_prompt(heard, prompt("vm-busy"))[0] < 0.5, "the greeting was skipped: no 'is on the phone'"
    lit = other.wait_mwi(lambda e: e["waiting"])
    assert "Voice-Message: 1/0" in lit["body"] and lit["state"] == "ACTIVE", lit  # in the subscription
    assert f"Message-Account: sip:{OTHER}@{REALM}" in lit["body"], lit
    time.sleep(0.5)
    assert all(e["state"] != "NULL" for e in other.events if e.get("ev") == "mwi"), "an unsolicited copy too"
    (message,) = rig.messages(OTHER)
    assert message["caller"] == CALLER and message["folder"] == "new"

    # *98202 with 202's PIN: one new message (the caller's own mailbox has none)
    ear = rig.dial(caller, "*98" + OTHER)
    ear.begins("vm-enter-pin")
    caller.dtmf("0000#")
    summary = ear.end_of(["vm-you-have", "count-one", "vm-new-message"])
    ear.begins("vm-main-menu", summary - FRAME)
    caller.dtmf("#")  # goodbye: the engine hangs up
    ear.heard(["goodbye"], summary)
    caller.wait_state("DISCONNECTED")
    ear.stop()

    # bare *98 asks for the mailbox first
    ear = rig.dial(caller, "*98")
    mailbox = ear.begins("vm-enter-mailbox")
    caller.dtmf(OTHER + "#")
    # "vm-enter-pin" starts with the very words of "vm-enter-mailbox" ("Bitte geben Sie ..."): look after
    # those (the keys cut that prompt short and were pressed no earlier than 0.7 s into it)
    asked = ear.begins("vm-enter-pin", mailbox + RATE_HZ)
    caller.dtmf("0000#")
    ear.heard(["vm-you-have", "count-one", "vm-new-message"], asked)
    caller.hangup()
    caller.wait_state("DISCONNECTED")
    ear.stop()
    (message,) = rig.messages(OTHER)
    assert message["folder"] == "new", "the summary alone does not change the message"


def test_three_wrong_pins_end_the_call_two_do_not(rig: Rig) -> None:
    caller = rig.phone("caller", CALLER, register=False)
    ear = rig.dial(caller, "*98" + OWNER)
    asked = ear.begins("vm-enter-pin")

    def wrong(pin: str, asked: int, keys: list[str]) -> tuple[str, float, int, int]:
        """Type ``pin`` while the PIN prompt that began at ``asked`` plays; the last of ``keys`` answering."""
        caller.dtmf(pin + "#")
        found = ear.heard(keys, asked)
        # A timeout counts as a try too, so the keys must be what was answered: their "invalid PIN" comes
        # long before the prompt and the first key's timeout are over (after all of it, a timeout's would).
        late_s = (found[0][2] - asked - len(prompt("vm-enter-pin"))) / RATE_HZ
        assert late_s < MENU_TIMEOUT_S / 2, (
            f"'vm-invalid-pin' began {late_s:.1f} s after the PIN prompt would have ended: a timeout, not "
            f"{pin}#, was answered ({found})"
        )
        return found[-1]

    for pin in ("1111", "2222"):
        at = wrong(pin, asked, ["vm-invalid-pin"])[3]
        asked = ear.begins("vm-enter-pin", at)
    assert not any(ended(e) for e in caller.events), "two wrong PINs must not end the call"
    wrong("3333", asked, ["vm-invalid-pin", "goodbye"])
    caller.wait_state("DISCONNECTED", timeout=10.0)
    heard = ear.stop()
    score, _, _ = find_prompt(heard, prompt("vm-main-menu"))
    assert score < 0.5, "a wrong PIN never reaches the main menu"


def test_a_greeting_uploaded_with_the_cli_is_heard_without_a_restart(rig: Rig, tmp_path: Path) -> None:
    uploaded = write_tone(tmp_path / "uploaded.wav", UPLOADED_HZ, 1.5, rate_hz=16000)  # converted on upload
    caller = rig.phone("caller", CALLER, register=False)
    ear = rig.dial(caller, OTHER)  # the engine opens (and keeps) 202's mailbox: the default greeting
    ear.begins("vm-person-at-extension")
    caller.hangup()
    caller.wait_state("DISCONNECTED")
    ear.stop()

    out = run_pbx(
        "voicemail",
        "greeting",
        "set",
        "--data-dir",
        str(rig.server.data_dir),
        "--extension",
        OTHER,
        "--type",
        "unavailable",
        str(uploaded),
    ).stdout
    assert "unavailable greeting of mailbox 202" in out, out

    ear = rig.dial(caller, OTHER)
    played = ear.tone(UPLOADED_HZ, 1.2, ended=True)
    ear.beep(played[1] - FRAME)
    caller.hangup()
    caller.wait_state("DISCONNECTED")
    heard = ear.stop()
    assert abs(segment_frequency(heard, *played, tmp_path) - UPLOADED_HZ) <= 10.0
    assert find_prompt(heard, prompt("vm-person-at-extension"))[0] < 0.5, (
        "the default greeting, not the upload"
    )
