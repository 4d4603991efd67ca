"""WAV decode/encode and upload conversion to 8 kHz 16-bit mono (polyphase anti-aliasing resampler)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from engine.media import g711
from engine.media.wav import WavError, convert_to_8k_mono16, decode_wav, encode_wav, resample


def wav_bytes(
    body: bytes, rate: int, channels: int, bits: int, tag: int = 1, extensible: bool = False
) -> bytes:
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0)
        fmt += struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # an odd-sized chunk before data (padded)
    chunks += b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def pcm24(x: np.ndarray) -> bytes:
    v = np.clip(np.rint(x * 8388607), -8388608, 8388607).astype(np.int32)
    b = v.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
    return b.tobytes()


def tone(hz: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)


def dominant_hz(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def rms_db(samples: np.ndarray) -> float:
    x = samples.astype(np.float64) / 32768.0
    return 10 * np.log10(np.mean(x * x) + 1e-20)


def test_44k1_stereo_24bit_to_8k_mono() -> None:
    left = tone(1000, 44100, 1.0)
    right = tone(1000, 44100, 1.0)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    out = decode_wav(convert_to_8k_mono16(wav_bytes(pcm24(stereo), 44100, 2, 24)))
    assert (out.sample_rate_hz, out.channels) == (8000, 1)
    assert out.samples.shape[0] == 8000  # one second
    samples = np.rint(out.samples[:, 0] * 32768).astype(np.int16)
    assert abs(dominant_hz(samples[400:-400]) - 1000) < 2
    level = rms_db(samples[400:-400])
    assert abs(level - 20 * np.log10(0.5 / np.sqrt(2))) < 0.2


@pytest.mark.parametrize("hz", [4500, 6000, 10000, 15000])
def test_above_nyquist_does_not_alias_into_the_band(hz: int) -> None:
    # A 4.5 kHz tone would alias to 3.5 kHz at 8 kHz without the low-pass; it must be (nearly) gone.
    body = (tone(hz, 44100, 1.0) * 32767).astype("<i2").tobytes()
    out = decode_wav(convert_to_8k_mono16(wav_bytes(body, 44100, 1, 16)))
    samples = np.rint(out.samples[:, 0] * 32768).astype(np.int16)
    assert rms_db(samples[400:-400]) < -60


def test_passband_edge_and_transition() -> None:
    for hz, low, high in ((3000, -0.1, 0.1), (3400, -0.5, 0.1), (3900, -200, -20)):
        y = resample(tone(hz, 48000, 0.5), 48000, 8000)[200:-200]
        gain = 20 * np.log10(np.sqrt(np.mean(y * y)) / (0.5 / np.sqrt(2)) + 1e-20)
        assert low <= gain <= high, (hz, gain)


@pytest.mark.parametrize(
    ("rate", "bits", "tag"), [(16000, 16, 1), (22050, 8, 1), (48000, 32, 1), (11025, 32, 3), (8000, 16, 1)]
)
def test_other_pcm_formats(rate: int, bits: int, tag: int) -> None:
    x = tone(440, rate, 0.5)
    if tag == 3:
        body = x.astype("<f4").tobytes()
    elif bits == 8:
        body = np.rint(x * 127 + 128).astype(np.uint8).tobytes()
    elif bits == 16:
        body = np.rint(x * 32767).astype("<i2").tobytes()
    else:
        body = np.rint(x * 2147483647).astype("<i4").tobytes()
    out = decode_wav(convert_to_8k_mono16(wav_bytes(body, rate, 1, bits, tag, extensible=bits == 32)))
    samples = np.rint(out.samples[:, 0] * 32768).astype(np.int16)
    assert samples.size == 4000
    assert abs(dominant_hz(samples[200:-200]) - 440) < 3


@pytest.mark.parametrize(("tag", "encode"), [(7, g711.ulaw_encode), (6, g711.alaw_encode)])
def test_g711_wav(tag: int, encode: object) -> None:
    x = np.rint(tone(700, 8000, 0.25) * 20000).astype(np.int16)
    body = encode(x)  # type: ignore[operator]
    out = convert_to_8k_mono16(wav_bytes(body, 8000, 1, 8, tag))
    decode = g711.ulaw_decode if tag == 7 else g711.alaw_decode
    assert out[44:] == decode(body).astype("<i2").tobytes()


def test_encode_decode_round_trip() -> None:
    x = np.arange(-500, 500, dtype=np.int16)
    audio = decode_wav(encode_wav(x))
    assert np.array_equal(np.rint(audio.samples[:, 0] * 32768).astype(np.int16), x)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"ID3\x03\x00" + b"\x00" * 100, "riff"),
        (b"RIFF\x04\x00\x00\x00WAVE", "fmt"),
        (wav_bytes(b"\x00" * 10, 8000, 1, 16)[:36] + b"junk\x00\x00\x00\x00", "data"),
        (wav_bytes(b"\x00" * 10, 8000, 1, 16, tag=2), "fmt.format"),
        (wav_bytes(b"\x00" * 10, 8000, 1, 12), "fmt.bits"),
        (wav_bytes(b"\x00" * 10, 100, 1, 16), "fmt.sample_rate"),
        (wav_bytes(b"\x00" * 10, 8000, 0, 16), "fmt.channels"),
    ],
)
def test_not_a_wav_we_can_read(data: bytes, field: str) -> None:
    with pytest.raises(WavError) as info:
        convert_to_8k_mono16(data)
    assert info.value.field == field
