"""``pbx voicemail greeting set``: converts an uploaded WAV to 8 kHz mono and assigns it to a line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.cli import EXIT_INVALID, EXIT_OK, main
from engine.media.wav import decode_wav, encode_wav
from engine.store import Store
from engine.voicemail.model import GreetingKind
from engine.voicemail.store import VoicemailStore


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store = Store.open(tmp_path / "data")
    try:
        store.add_user("Ann", "Example", None, "201", "secret-password-1")
    finally:
        store.close()
    return tmp_path / "data"


def stereo_44k(tmp_path: Path, seconds: float = 2.0) -> Path:
    t = np.arange(int(44100 * seconds)) / 44100.0
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    path = tmp_path / "greeting.wav"
    path.write_bytes(encode_wav(np.stack([tone, tone], axis=1).reshape(-1), 44100, channels=2))
    return path


@pytest.mark.parametrize("kind", ["unavailable", "busy", "temporary"])
def test_set_greeting_converts_and_assigns(
    data_dir: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = stereo_44k(tmp_path)
    argv = [
        "voicemail",
        "greeting",
        "set",
        "--data-dir",
        str(data_dir),
        "--extension",
        "201",
        "--type",
        kind,
        str(source),
    ]
    assert main(argv) == EXIT_OK
    assert f"Set the {kind} greeting of mailbox 201 (2.0 s" in capsys.readouterr().out
    box = VoicemailStore.open(data_dir).mailbox("201")
    assert box is not None and set(box.greetings) == {GreetingKind(kind)}
    audio = decode_wav(Path(box.greetings[GreetingKind(kind)]).read_bytes())
    assert (audio.sample_rate_hz, audio.channels) == (8000, 1)
    assert abs(len(audio.samples) - 16000) <= 1
    assert box.temporary_active is False  # assigning never switches the temporary greeting on


def test_unknown_extension_is_invalid(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "voicemail",
        "greeting",
        "set",
        "--data-dir",
        str(data_dir),
        "--extension",
        "999",
        "--type",
        "busy",
        str(stereo_44k(tmp_path)),
    ]
    assert main(argv) == EXIT_INVALID
    assert "extension: no line or mailbox 999" in capsys.readouterr().err
    assert VoicemailStore.open(data_dir).mailbox("999") is None


def test_not_a_wav_is_invalid(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "greeting.wav"
    bogus.write_bytes(b"ID3 this is an mp3")
    argv = [
        "voicemail",
        "greeting",
        "set",
        "--data-dir",
        str(data_dir),
        "--extension",
        "201",
        "--type",
        "unavailable",
        str(bogus),
    ]
    assert main(argv) == EXIT_INVALID
    assert "file:" in capsys.readouterr().err


def test_bad_extension_syntax_is_invalid(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "voicemail",
        "greeting",
        "set",
        "--data-dir",
        str(data_dir),
        "--extension",
        "../201",
        "--type",
        "busy",
        str(stereo_44k(tmp_path)),
    ]
    assert main(argv) == EXIT_INVALID
    assert "extension:" in capsys.readouterr().err


def test_does_not_touch_recordings_in_progress(data_dir: Path, tmp_path: Path) -> None:
    live = VoicemailStore.open(data_dir)
    in_progress = Path(live.scratch_path("call-in-progress"))
    in_progress.write_bytes(b"RIFF....")
    argv = [
        "voicemail",
        "greeting",
        "set",
        "--data-dir",
        str(data_dir),
        "--extension",
        "201",
        "--type",
        "unavailable",
        str(stereo_44k(tmp_path)),
    ]
    assert main(argv) == EXIT_OK
    assert in_progress.exists()
