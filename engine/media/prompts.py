"""System prompts: the library of recorded phrases by (language, key), and how to say numbers, digits,
counts and dates with them in English and German.

The phrases are listed in ``prompts/prompts.txt`` (``key|English|German``) and rendered by
``scripts/make_prompts.sh`` into ``prompts/<lang>/<key>.wav`` (8 kHz 16-bit mono). Adding a prompt is one
line there and a rerun of the script.

The ``say_*`` functions are pure: they return ``Sound`` items (``engine.script``) for a flow to put in
a ``Play``. German composition: 21 is "ein" "und" "zwanzig", 101 "ein" "hundert" "eins", 1 alone "eins".
Counted nouns ("eine neue Nachricht" / "zwei neue Nachrichten") come from ``say_count``, whose "one" is the
feminine "eine" in German (the nouns here, Nachricht(en), are feminine).

File access: ``PromptLibrary`` and ``AudioFileCache`` read files (small, and cached); in the event loop call
them from an executor the first time (``engine.media.session`` does).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections import OrderedDict
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.media.relay import MediaError
from engine.media.wav import WavError, decode_8k_mono16
from engine.script import Sound

LANGUAGES: Final = ("en", "de")
DEFAULT_LANGUAGE: Final = "en"
PROMPTS_ROOT: Final = Path(__file__).resolve().parent / "prompts"
PROMPTS_LIST: Final = PROMPTS_ROOT / "prompts.txt"

Int16Array = npt.NDArray[np.int16]


class PromptError(MediaError):
    """A prompt that does not exist or cannot be read, a language we have no prompts for, a number out of
    range; ``field`` names the argument."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def read_prompt_list(path: Path = PROMPTS_LIST) -> dict[str, dict[str, str]]:
    """The prompt texts of ``prompts.txt``: ``{key: {"en": text, "de": text}}``.

    Raises:
        PromptError: a line without exactly three ``|``-separated fields, or a key listed twice.
    """
    texts: dict[str, dict[str, str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("|")
        if len(fields) != 1 + len(LANGUAGES) or not all(f.strip() for f in fields):
            raise PromptError("prompts.txt", f"line {number}: expected key|English|German")
        key = fields[0].strip()
        if key in texts:
            raise PromptError("prompts.txt", f"line {number}: {key} listed twice")
        texts[key] = dict(zip(LANGUAGES, (f.strip() for f in fields[1:]), strict=True))
    return texts


class PromptLibrary:
    """Prompt audio by (language, key), loaded on first use and kept (the whole set is a few MB)."""

    def __init__(self, root: Path = PROMPTS_ROOT) -> None:
        self.root = root
        # Loads may run in several executor threads at once: each cache step is one dict operation (atomic
        # under the GIL), and two threads loading the same prompt both store the same samples.
        self._cache: dict[tuple[str, str], Int16Array] = {}

    def get(self, language: str, key: str) -> Int16Array:
        """The samples (8 kHz int16 mono, read-only) of prompt ``key`` in ``language``.

        Raises:
            PromptError: unknown language, a key that is not a plain name, no such prompt, unreadable WAV.
        """
        cached = self._cache.get((language, key))
        if cached is not None:
            return cached
        if language not in LANGUAGES:
            raise PromptError("language", f"{language!r} (have {', '.join(LANGUAGES)})")
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise PromptError("key", f"{key!r} is not a prompt name")
        path = self.root / language / f"{key}.wav"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PromptError("key", f"no prompt {key!r} in {language!r} ({path})") from None
        try:
            samples = decode_8k_mono16(data)
        except WavError as exc:
            raise PromptError("key", f"prompt {key!r} in {language!r} is unreadable: {exc}") from exc
        samples.flags.writeable = False
        self._cache[(language, key)] = samples
        return samples

    def sequence(self, language: str, keys: tuple[str, ...]) -> Int16Array:
        """The prompts ``keys`` one after another.

        Raises:
            PromptError: see ``get``.
        """
        parts = [self.get(language, key) for key in keys]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


class AudioFileCache:
    """WAV files (``File`` prompt items) by path, converted to 8 kHz mono int16; small files are kept, by
    path, size and modification time (a re-recorded greeting is read again), least recently used first out.

    Safe to call from several executor threads: the shared state is one ``OrderedDict`` whose every step
    here is a single operation (atomic under the GIL); the size bound is recomputed when evicting.
    """

    def __init__(self, max_file_bytes: int = 512 * 1024, max_total_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self._entries: OrderedDict[tuple[str, int, int], Int16Array] = OrderedDict()

    def load(self, path: str) -> Int16Array:
        """The samples of the WAV at ``path``.

        Raises:
            PromptError: the file is missing or unreadable, or not a WAV we can read (``field`` "path").
        """
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise PromptError("path", f"{path}: {exc.strerror}") from None
        key = (path, stat.st_size, stat.st_mtime_ns)
        cached = self._entries.get(key)
        if cached is not None:
            with contextlib.suppress(KeyError):  # evicted meanwhile by another thread
                self._entries.move_to_end(key)
            return cached
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise PromptError("path", f"{path}: {exc.strerror}") from None
        try:
            samples = decode_8k_mono16(data)
        except WavError as exc:
            raise PromptError("path", f"{path}: {exc}") from exc
        samples.flags.writeable = False
        if len(data) <= self.max_file_bytes:
            self._entries[key] = samples
            total = sum(entry.nbytes for entry in list(self._entries.values()))
            while total > self.max_total_bytes:
                try:
                    _, old = self._entries.popitem(last=False)
                except KeyError:
                    break
                total -= old.nbytes
        return samples

    @property
    def cached_files(self) -> int:
        return len(self._entries)


# -- saying things -------------------------------------------------------------------------------------


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise PromptError("language", f"{language!r} (have {', '.join(LANGUAGES)})")


def _number_keys(n: int, language: str) -> list[str]:
    if n < 20:
        return [f"num-{n}"]
    hundreds, rest = divmod(n, 100)
    keys: list[str] = []
    if hundreds:
        prefix = "num-1-prefix" if language == "de" and hundreds == 1 else f"num-{hundreds}"
        keys += [prefix, "num-hundred"]
        if rest == 0:
            return keys
        if rest < 20:
            return [*keys, f"num-{rest}"]
    tens, units = divmod(rest, 10)
    if units == 0:
        return [*keys, f"num-{tens * 10}"]
    if language == "de":
        unit = "num-1-prefix" if units == 1 else f"num-{units}"
        return [*keys, unit, "num-and", f"num-{tens * 10}"]
    return [*keys, f"num-{tens * 10}", f"num-{units}"]


def say_number(n: int, language: str) -> tuple[Sound, ...]:
    """The prompts that say ``n`` (0-999): English "one hundred twenty one", German "ein hundert ein und
    zwanzig" (einhunderteinundzwanzig).

    Raises:
        PromptError: ``n`` outside 0-999 or an unknown language.
    """
    _check_language(language)
    if not 0 <= n <= 999:
        raise PromptError("n", f"{n} outside 0-999")
    return tuple(Sound(key) for key in _number_keys(n, language))


def say_count(n: int, singular_key: str, plural_key: str, language: str) -> tuple[Sound, ...]:
    """A counted noun: "one new message" / "eine neue Nachricht", "2 new messages" / "zwei neue Nachrichten".

    Raises:
        PromptError: ``n`` outside 0-999 or an unknown language.
    """
    if n == 1:
        _check_language(language)
        return (Sound("count-one"), Sound(singular_key))
    return (*say_number(n, language), Sound(plural_key))


def say_digits(digits: str) -> tuple[Sound, ...]:
    """Each key of ``digits`` in turn ("digit-0".."digit-9", "star", "pound"); the language is the call's.

    Raises:
        PromptError: a character that is not a DTMF key.
    """
    sounds: list[Sound] = []
    for ch in digits:
        if ch.isascii() and ch.isdigit():
            sounds.append(Sound(f"digit-{ch}"))
        elif ch == "*":
            sounds.append(Sound("star"))
        elif ch == "#":
            sounds.append(Sound("pound"))
        else:
            raise PromptError("digits", f"{ch!r} in {digits!r} is not a key")
    return tuple(sounds)


def say_datetime(when: dt.datetime, language: str) -> tuple[Sound, ...]:
    """When a message arrived, in the time zone ``when`` carries: English "Monday March third at three
    forty five P M", German "Montag den dritten März um fünfzehn Uhr fünfundvierzig".

    Raises:
        PromptError: an unknown language.
    """
    _check_language(language)
    day = Sound(f"day-{when.weekday()}")
    month = Sound(f"month-{when.month}")
    ordinal = Sound(f"ord-{when.day}")
    at = Sound("time-at")
    if language == "de":
        hour = (Sound("num-1-prefix"),) if when.hour == 1 else say_number(when.hour, language)  # "ein Uhr"
        clock = (*hour, Sound("time-oclock"))
        if when.minute:
            clock += say_number(when.minute, language)
        return (day, ordinal, month, at, *clock)
    hour12 = when.hour % 12 or 12
    if when.minute == 0:
        minutes: tuple[Sound, ...] = (Sound("time-oclock"),)
    elif when.minute < 10:
        minutes = (Sound("time-oh"), *say_number(when.minute, language))
    else:
        minutes = say_number(when.minute, language)
    half = Sound("time-am" if when.hour < 12 else "time-pm")
    return (day, month, ordinal, at, *say_number(hour12, language), *minutes, half)
