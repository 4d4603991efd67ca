"""Sound clips over HTTP (SQLite and PostgreSQL): a WAV of any rate and channel count is uploaded, converted
to 8 kHz 16-bit mono, stored atomically where the engine reads clips, and usable by dial plans; a file that
is no WAV is refused with 422 naming the part and changes nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.company import compile_plan
from engine.dialplan.plan import PlayClipOp
from engine.media.wav import decode_wav, encode_wav
from engine.store import sound_clip_path
from tests.api.conftest import Api

WAV = {"Content-Type": "audio/wav"}


def tone(hz: float, seconds: float, rate_hz: int, channels: int) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    mono = (0.4 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return encode_wav(np.repeat(mono, channels), rate_hz, channels)


def dominant_hz(wav: bytes) -> float:
    audio = decode_wav(wav)
    samples = audio.samples[:, 0]
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * audio.sample_rate_hz / len(samples)


def test_clips_live_in_the_sounds_directory_of_the_data_dir(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    assert sound_clip_path(base, "welcome") == base / "sounds" / "welcome.wav"


def test_upload_converts_stores_and_a_plan_plays_it(api: Api) -> None:
    data_dir = api.store.data_dir
    version = api.store.config_version()
    with api.client() as c:
        up = c.put("/api/sound-clips/welcome", content=tone(440.0, 1.5, 44_100, 2), headers=WAV)
        assert up.status_code == 200, up.text
        body = up.json()
        assert body["name"] == "welcome" and body["file"] == "sounds/welcome.wav"
        assert body["sample_rate_hz"] == 8000 and abs(body["duration_seconds"] - 1.5) < 0.01
        stored = sound_clip_path(data_dir, "welcome").read_bytes()
        audio = decode_wav(stored)
        assert (audio.sample_rate_hz, audio.channels) == (8000, 1) and body["bytes"] == len(stored)
        assert abs(dominant_hz(stored) - 440.0) < 2.0
        assert c.get("/api/sound-clips/welcome").content == stored
        assert [p.name for p in (data_dir / "sounds").iterdir()] == ["welcome.wav"]  # no temporary left
        assert c.get("/api/routing/sound_clips/welcome").json()["spec"] == {
            "name": "welcome",
            "file": "sounds/welcome.wav",
        }
        assert api.store.config_version() == version + 1
        audit = c.get("/api/audit", params={"action": "sound_clip."}).json()
        assert [(a["action"], a["target"]) for a in audit] == [("sound_clip.upload", "sound_clips:welcome")]

        graph = {
            "start": "hello",
            "nodes": {
                "hello": {"type": "play_clip", "clip": "welcome", "next": {"next": "bye"}},
                "bye": {"type": "hangup"},
            },
        }
        assert c.post("/api/dial-plans", json={"name": "greet", "graph": graph}).status_code == 201
        compiled = compile_plan(api.store.config_snapshot(), data_dir)
        assert compiled is not None
        plays = [n.op for n in compiled.nodes if n.plan == "greet" and isinstance(n.op, PlayClipOp)]
        assert [op.clip for op in plays] == [str(sound_clip_path(data_dir, "welcome"))]

        # Replacing the audio keeps the object; a clip a plan uses cannot be deleted (its file stays).
        again = c.put("/api/sound-clips/welcome", content=tone(1000.0, 0.5, 16_000, 1), headers=WAV)
        assert again.status_code == 200 and abs(again.json()["duration_seconds"] - 0.5) < 0.01
        assert abs(dominant_hz(sound_clip_path(data_dir, "welcome").read_bytes()) - 1000.0) < 4.0
        assert len(c.get("/api/routing/sound_clips").json()) == 1
        used = c.delete("/api/routing/sound_clips/welcome")
        assert used.status_code == 422, used.text
        assert sound_clip_path(data_dir, "welcome").exists()
        assert c.delete("/api/dial-plans/greet").status_code == 204
        assert c.delete("/api/routing/sound_clips/welcome").status_code == 204
        assert not sound_clip_path(data_dir, "welcome").exists()
        assert c.get("/api/sound-clips/welcome").status_code == 404


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"", "file.riff"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "file."),
        (b"ID3\x03\x00 an mp3 file", "file.riff"),
    ],
)
def test_a_file_that_is_no_wav_is_refused_naming_the_part(api: Api, content: bytes, field: str) -> None:
    version = api.store.config_version()
    with api.client() as c:
        r = c.put("/api/sound-clips/menu", content=content, headers=WAV)
        assert r.status_code == 422, r.text
        assert r.json()["field"].startswith(field), r.json()
        assert "not a WAV file" in r.json()["detail"]
        assert c.get("/api/routing/sound_clips").json() == []
    assert api.store.config_version() == version
    assert not (api.store.data_dir / "sounds" / "menu.wav").exists()


def test_bad_names_and_content_types_are_refused(api: Api) -> None:
    wav = tone(440.0, 0.2, 8000, 1)
    with api.client() as c:
        bad_name = c.put("/api/sound-clips/..hidden", content=wav, headers=WAV)
        assert bad_name.status_code == 422 and bad_name.json()["field"] == "name"
        text = c.put("/api/sound-clips/menu", content=wav, headers={"Content-Type": "text/plain"})
        assert text.status_code == 422 and text.json()["field"] == "content-type"
        ok = c.put("/api/sound-clips/menu", content=wav, headers={"Content-Type": "audio/x-wav"})
        assert ok.status_code == 200, ok.text
