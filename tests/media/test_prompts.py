"""System prompts: every key of prompts.txt in both languages (8 kHz mono 16-bit, speech, plausible length);
say_number / say_count / say_digits / say_datetime in English and German."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from engine.media.prompts import (
    LANGUAGES,
    PROMPTS_ROOT,
    AudioFileCache,
    PromptError,
    PromptLibrary,
    read_prompt_list,
    say_count,
    say_datetime,
    say_digits,
    say_number,
)
from engine.media.silence import level_dbfs
from engine.media.wav import decode_wav, encode_wav
from engine.script import Sound

TEXTS = read_prompt_list()
REQUIRED = [f"digit-{d}" for d in range(10)] + [
    "star",
    "pound",
    "invalid-option",
    "goodbye",
    "enter-password",
    "password-wrong",
    "feature-unavailable",
    "dial-by-name-instructions",
    "no-match",
    "transferring",
    "vm-enter-mailbox",
    "vm-enter-pin",
    "vm-invalid-pin",
    "vm-you-have",
    "vm-new-message",
    "vm-new-messages",
    "vm-saved-message",
    "vm-saved-messages",
    "vm-no-messages",
    "vm-main-menu",
    "vm-message-menu",
    "vm-first-message",
    "vm-next-message",
    "vm-no-more-messages",
    "vm-message-deleted",
    "vm-message-saved",
    "vm-received",
    "vm-from",
    "vm-unknown-caller",
    "vm-options-menu",
    "vm-record-after-tone",
    "vm-review-menu",
    "vm-recording-saved",
    "vm-temp-menu",
    "vm-temp-is-on",
    "vm-temp-is-off",
    "vm-enter-new-pin",
    "vm-reenter-pin",
    "vm-pin-changed",
    "vm-pin-mismatch",
    "vm-person-at-extension",
    "vm-not-available",
    "vm-busy",
    "vm-mailbox-full",
    "vm-message-too-short",
    "vm-goodbye",
]


def test_required_keys_are_listed() -> None:
    assert set(REQUIRED) <= set(TEXTS)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_prompt_exists_as_8k_mono_16bit_speech(language: str) -> None:
    for key, texts in TEXTS.items():
        data = (PROMPTS_ROOT / language / f"{key}.wav").read_bytes()
        assert data[20:22] == b"\x01\x00", key  # PCM
        audio = decode_wav(data)
        assert (audio.sample_rate_hz, audio.channels) == (8000, 1), key
        assert data[34:36] == b"\x10\x00", key  # 16 bits
        samples = np.rint(audio.samples[:, 0] * 32768).astype(np.int16)
        # Speech energy: normalised to -3 dBFS peak, loud frames present.
        assert np.max(np.abs(samples)) > 16000, key
        assert max(level_dbfs(samples[i : i + 160]) for i in range(0, samples.size - 160, 160)) > -25, key
        # Plausible length: about 25-140 ms per character of text, at least 0.2 s.
        chars = len(texts[language])
        assert 0.2 <= audio.duration_s <= max(1.0, 0.14 * chars), (key, audio.duration_s, chars)
        assert audio.duration_s >= 0.025 * chars, (key, audio.duration_s, chars)
    files = {p.stem for p in (PROMPTS_ROOT / language).glob("*.wav")}
    assert files == set(TEXTS)


def keys(sounds: tuple[Sound, ...]) -> list[str]:
    return [s.key for s in sounds]


@pytest.mark.parametrize(
    ("n", "english", "german"),
    [
        (0, ["num-0"], ["num-0"]),
        (7, ["num-7"], ["num-7"]),
        (11, ["num-11"], ["num-11"]),
        (16, ["num-16"], ["num-16"]),
        (21, ["num-20", "num-1"], ["num-1-prefix", "num-and", "num-20"]),
        (70, ["num-70"], ["num-70"]),
        (99, ["num-90", "num-9"], ["num-9", "num-and", "num-90"]),
        (100, ["num-1", "num-hundred"], ["num-1-prefix", "num-hundred"]),
        (101, ["num-1", "num-hundred", "num-1"], ["num-1-prefix", "num-hundred", "num-1"]),
        (
            999,
            ["num-9", "num-hundred", "num-90", "num-9"],
            ["num-9", "num-hundred", "num-9", "num-and", "num-90"],
        ),
        (316, ["num-3", "num-hundred", "num-16"], ["num-3", "num-hundred", "num-16"]),
        (
            121,
            ["num-1", "num-hundred", "num-20", "num-1"],
            ["num-1-prefix", "num-hundred", "num-1-prefix", "num-and", "num-20"],
        ),
    ],
)
def test_say_number(n: int, english: list[str], german: list[str]) -> None:
    assert keys(say_number(n, "en")) == english
    assert keys(say_number(n, "de")) == german
    assert all(k in TEXTS for k in english + german)


def test_say_number_out_of_range() -> None:
    with pytest.raises(PromptError) as info:
        say_number(1000, "en")
    assert info.value.field == "n"
    with pytest.raises(PromptError) as info:
        say_number(1, "fr")
    assert info.value.field == "language"


def test_say_count() -> None:
    assert keys(say_count(1, "vm-new-message", "vm-new-messages", "de")) == ["count-one", "vm-new-message"]
    assert keys(say_count(2, "vm-new-message", "vm-new-messages", "de")) == ["num-2", "vm-new-messages"]
    assert keys(say_count(21, "vm-new-message", "vm-new-messages", "en")) == [
        "num-20",
        "num-1",
        "vm-new-messages",
    ]
    assert TEXTS["count-one"]["de"] == "eine"


def test_say_digits() -> None:
    assert keys(say_digits("12*#0")) == ["digit-1", "digit-2", "star", "pound", "digit-0"]
    with pytest.raises(PromptError):
        say_digits("1a")


def test_say_datetime() -> None:
    when = dt.datetime(2026, 3, 3, 15, 45)  # a Tuesday
    assert keys(say_datetime(when, "en")) == [
        "day-1",
        "month-3",
        "ord-3",
        "time-at",
        "num-3",
        "num-40",
        "num-5",
        "time-pm",
    ]
    assert keys(say_datetime(when, "de")) == [
        "day-1",
        "ord-3",
        "month-3",
        "time-at",
        "num-15",
        "time-oclock",
        "num-5",
        "num-and",
        "num-40",
    ]
    assert keys(say_datetime(dt.datetime(2026, 1, 31, 0, 5), "en"))[-4:] == [
        "num-12",
        "time-oh",
        "num-5",
        "time-am",
    ]
    assert keys(say_datetime(dt.datetime(2026, 1, 31, 1, 0), "de"))[-2:] == ["num-1-prefix", "time-oclock"]
    for sounds in (
        say_datetime(dt.datetime(2026, m, d, h, mi), lang)
        for m, d, h, mi in ((2, 28, 23, 59), (12, 31, 12, 0))
        for lang in LANGUAGES
    ):
        assert all(s.key in TEXTS for s in sounds)


def test_library_caches_and_names_errors() -> None:
    library = PromptLibrary()
    first = library.get("de", "goodbye")
    assert library.get("de", "goodbye") is first
    assert not first.flags.writeable
    for language, key, field in (
        ("en", "no-such-prompt", "key"),
        ("en", "../x", "key"),
        ("xx", "goodbye", "language"),
    ):
        with pytest.raises(PromptError) as info:
            library.get(language, key)
        assert info.value.field == field


def test_file_cache_rereads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "greeting.wav"
    path.write_bytes(encode_wav(np.full(800, 100, dtype=np.int16)))
    cache = AudioFileCache()
    assert cache.load(str(path)).tolist() == [100] * 800
    path.write_bytes(encode_wav(np.full(400, 7, dtype=np.int16)))
    assert cache.load(str(path)).tolist() == [7] * 400
    with pytest.raises(PromptError) as info:
        cache.load(str(tmp_path / "missing.wav"))
    assert info.value.field == "path"
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(PromptError):
        cache.load(str(tmp_path / "bad.wav"))


def test_every_prompt_the_engine_names_is_recorded() -> None:
    """Each ``Sound("key")`` written in engine/ and each evaluator prompt key is a listed, recorded prompt:
    a key that is not would play as silence on a real call (the password node's "wrong-password" and dial
    by name's "for extension ... press" did, until they were listed)."""
    import re

    import engine
    from engine.dialplan.evaluate import PROMPT_KEYS

    named: set[str] = set(PROMPT_KEYS)
    for path in Path(engine.__file__).resolve().parent.rglob("*.py"):
        named |= set(re.findall(r'Sound\("([a-z0-9-]+)"\)', path.read_text(encoding="utf-8")))
    assert len(named) > 40
    assert sorted(named - set(TEXTS)) == []
    library = PromptLibrary()
    for language in LANGUAGES:
        for key in sorted(named):
            assert len(library.get(language, key)) > 0, (language, key)
