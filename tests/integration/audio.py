"""Test audio: write tone WAVs for the phones to play, and measure what they recorded.

``write_tone`` makes 8 kHz 16-bit mono PCM (what G.711 carries, and what baresip's aufile insists on).
``dominant_frequency`` looks only at the parts of a recording that carry signal: a call's recording starts
and ends with silence (before the far end plays, after it stops, during a hold), and silence must neither
dilute the spectrum nor pass for a result. A recording without any signal is an error, never a frequency.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

RATE_HZ: Final = 8000
FRAME_S: Final = 0.02  # RTP's usual ptime: signal/silence is decided per 20 ms frame
#: A frame carries signal above this RMS (full scale 1.0): -40 dBFS, far above G.711's idle noise and far
#: below a test tone.
SIGNAL_RMS: Final = 0.01
WINDOW_S: Final = 0.25  # spectrum segments: 4 Hz bins, refined by interpolation


class AudioError(ValueError):
    """A WAV that cannot be measured: unreadable, empty, not 16-bit PCM, or without any signal."""


def write_tone(
    path: Path | str,
    frequency_hz: float = 1000.0,
    seconds: float = 3.0,
    *,
    rate_hz: int = RATE_HZ,
    amplitude: float = 0.4,
) -> Path:
    """Write a sine tone as 16-bit mono PCM WAV.

    Args:
        path: where to write.
        frequency_hz: the tone's frequency (below half of ``rate_hz``).
        seconds: its length.
        rate_hz: sample rate; 8000 suits G.711 and baresip's aufile.
        amplitude: peak level, 0 < amplitude <= 1 of full scale.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: a frequency at or above Nyquist, a non-positive length or an amplitude out of range.
    """
    if not 0 < frequency_hz < rate_hz / 2:
        raise ValueError(f"frequency {frequency_hz} Hz is not below Nyquist ({rate_hz / 2} Hz)")
    if seconds <= 0 or not 0 < amplitude <= 1:
        raise ValueError(f"bad tone: {seconds} s at amplitude {amplitude}")
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    samples = np.round(amplitude * 32767 * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2")
    return _write(Path(path), samples, rate_hz)


def write_silence(path: Path | str, seconds: float, *, rate_hz: int = RATE_HZ) -> Path:
    """Write digital silence as 16-bit mono PCM WAV (raises ValueError for a non-positive length)."""
    if seconds <= 0:
        raise ValueError(f"bad length {seconds} s")
    return _write(Path(path), np.zeros(int(seconds * rate_hz), dtype="<i2"), rate_hz)


def _write(path: Path, samples: npt.NDArray[np.int16], rate_hz: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(samples.tobytes())
    return path


def read_wav(path: Path | str) -> tuple[npt.NDArray[np.float64], int]:
    """The samples of a 16-bit PCM WAV scaled to [-1, 1) (first channel only) and the sample rate.

    Raises:
        AudioError: the file is missing, not a WAV, or not 16-bit PCM.
    """
    try:
        with wave.open(str(path)) as w:
            if w.getsampwidth() != 2:
                raise AudioError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit PCM")
            channels, rate = w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioError(f"{path}: not a readable WAV ({type(exc).__name__}: {exc})") from exc
    samples = np.frombuffer(raw, dtype="<i2")[::channels].astype(np.float64) / 32768.0
    return samples, rate


def wav_duration(path: Path | str) -> float:
    """Length of a WAV in seconds (raises AudioError like ``read_wav``)."""
    samples, rate = read_wav(path)
    return len(samples) / rate


def _signal_frames(samples: npt.NDArray[np.float64], rate: int) -> tuple[npt.NDArray[np.bool_], int]:
    n = max(1, int(rate * FRAME_S))
    count = len(samples) // n
    frames = samples[: count * n].reshape(count, n)
    rms = np.sqrt(np.mean(frames * frames, axis=1)) if count else np.zeros(0)
    return rms > SIGNAL_RMS, n


def signal_seconds(path: Path | str) -> float:
    """How many seconds of the WAV carry signal (20 ms frames above -40 dBFS RMS); raises AudioError like
    ``read_wav``."""
    samples, rate = read_wav(path)
    loud, n = _signal_frames(samples, rate)
    return float(np.count_nonzero(loud)) * n / rate


def dominant_frequency(path: Path | str) -> float:
    """The strongest frequency in the parts of a recording that carry signal.

    Averages Hann-windowed power spectra over 0.25 s segments of each stretch of consecutive signal frames
    (so the jumps where silence was cut out add no spurious spectrum), then refines the peak bin by parabolic
    interpolation: accurate to well under 1 Hz for a clean tone.

    Args:
        path: a 16-bit PCM WAV.

    Returns:
        The frequency in Hz.

    Raises:
        AudioError: the file is unreadable or empty, or no 20 ms frame rises above -40 dBFS RMS; the
            message gives its length and peak level.
    """
    samples, rate = read_wav(path)
    if len(samples) == 0:
        raise AudioError(f"{path}: the WAV holds no samples")
    loud, n = _signal_frames(samples, rate)
    if not loud.any():
        peak = float(np.max(np.abs(samples)))
        raise AudioError(
            f"{path}: silent - {len(samples) / rate:.2f} s, peak {peak:.4f} of full scale, no 20 ms frame "
            f"above {SIGNAL_RMS} RMS"
        )
    size = max(n, int(rate * WINDOW_S))
    power = np.zeros(size // 2 + 1)
    window = np.hanning(size)
    edges = np.diff(np.concatenate(([0], loud.astype(np.int8), [0])))
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        run = samples[start * n : stop * n]
        for at in range(0, len(run), size):
            seg = run[at : at + size]
            if len(seg) < size // 2 and at > 0:
                continue  # a short tail adds leakage, not information
            padded = np.zeros(size)
            padded[: len(seg)] = seg * (window if len(seg) == size else np.hanning(len(seg)))
            power += np.abs(np.fft.rfft(padded)) ** 2
    power[0] = 0.0  # DC offset is no tone
    k = int(np.argmax(power))
    shift = 0.0
    if 0 < k < len(power) - 1:
        a, b, c = np.log(power[k - 1 : k + 2] + 1e-30)
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return float((k + shift) * rate / size)


def tone_amplitude(samples: npt.NDArray[np.floating] | npt.NDArray[np.integer], frequency_hz: float,
                   rate_hz: int = RATE_HZ) -> float:
    """The amplitude (of full scale 1.0) of the ``frequency_hz`` component of ``samples``: a Goertzel-style
    single-bin DFT over a Hann window, so a tone of amplitude A gives about A and a tone 200 Hz away about 0.

    ``samples`` are floats in [-1, 1) or int16 values (scaled by 32768).

    Raises:
        AudioError: no samples.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise AudioError("no samples to measure")
    if np.issubdtype(np.asarray(samples).dtype, np.integer):
        x = x / 32768.0
    window = np.hanning(x.size)
    t = np.arange(x.size) / rate_hz
    bin_value = np.dot(x * window, np.exp(-2j * np.pi * frequency_hz * t))
    return float(2 * np.abs(bin_value) / window.sum())
