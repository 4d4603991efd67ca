"""WAV bytes: decode (RIFF/WAVE, PCM 8/16/24/32-bit, IEEE float, G.711 µ-law/A-law, WAVE_FORMAT_EXTENSIBLE),
encode (16-bit PCM), and conversion of uploads to the engine's one audio format, 8 kHz 16-bit mono.

The resampler is a rational polyphase FIR (windowed sinc, Kaiser window) in numpy: upsample by L, low-pass,
downsample by M, computing only the outputs that are kept. The low-pass passes 0-3.4 kHz (the telephone
band) and stops at the lower of the two Nyquist frequencies, attenuating by about 70 dB, so nothing above
4 kHz in a 44.1 kHz upload aliases into the call. The caller does the file access.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.media.g711 import ALAW_DECODE, ULAW_DECODE
from engine.media.relay import MediaError

SAMPLE_RATE_HZ: Final = 8000
FORMAT_PCM: Final = 1
FORMAT_FLOAT: Final = 3
FORMAT_ALAW: Final = 6
FORMAT_ULAW: Final = 7
FORMAT_EXTENSIBLE: Final = 0xFFFE
#: The resampler's passband edge (the telephone band's top) and stopband attenuation.
PASSBAND_HZ: Final = 3400.0
STOPBAND_DB: Final = 70.0
#: Input sample rates accepted (anything a recorder or an editor writes).
MIN_RATE_HZ: Final = 4000
MAX_RATE_HZ: Final = 384_000
_OUTPUT_BLOCK: Final = 4096  # outputs per vectorised block (bounds the working set of long uploads)

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]


class WavError(MediaError):
    """Not a WAV file we can read; ``field`` names the part (``riff``, ``fmt.format``, ``data``...)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WavAudio:
    """Decoded audio: ``samples`` are float64 in [-1, 1), shape (frames, channels)."""

    sample_rate_hz: int
    channels: int
    samples: FloatArray

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0]) / self.sample_rate_hz


def decode_wav(data: bytes) -> WavAudio:
    """Decode WAV bytes.

    Raises:
        WavError: not RIFF/WAVE, no ``fmt `` or ``data`` chunk, an unsupported format or sample width, a
            sample rate or channel count out of range, a chunk running past the end.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("riff", "not a RIFF/WAVE file")
    fmt: bytes | None = None
    body: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        start = offset + 8
        end = start + size
        if chunk_id == b"data":
            # Tolerance: a streaming writer leaves 0 or 0xFFFFFFFF in a size it never patched, and a cut-off
            # upload ends early; take the samples that are there (whole frames only, see _pcm).
            body = data[start:] if size in (0, 0xFFFF_FFFF) or end > len(data) else data[start:end]
        elif chunk_id == b"fmt ":
            if end > len(data):
                raise WavError("fmt", "chunk runs past the end of the file")
            fmt = data[start:end]
        if fmt is not None and body is not None:
            break
        offset = end + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise WavError("fmt", "no fmt chunk")
    if body is None:
        raise WavError("data", "no data chunk")
    if len(fmt) < 16:
        raise WavError("fmt", f"{len(fmt)} bytes, at least 16 needed")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise WavError("fmt.format", "WAVE_FORMAT_EXTENSIBLE without its sub-format")
        (tag,) = struct.unpack_from("<H", fmt, 24)  # the GUID's first two bytes are the format tag
    if not 1 <= channels <= 32:
        raise WavError("fmt.channels", f"{channels} channels")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise WavError("fmt.sample_rate", f"{rate} Hz out of range {MIN_RATE_HZ}-{MAX_RATE_HZ}")
    width = bits // 8 if bits % 8 == 0 else 0
    if tag in (FORMAT_ULAW, FORMAT_ALAW):
        if bits != 8:
            raise WavError("fmt.bits", f"G.711 with {bits} bits per sample")
        table = ULAW_DECODE if tag == FORMAT_ULAW else ALAW_DECODE
        raw = np.frombuffer(body, dtype=np.uint8, count=_whole(len(body), channels))
        samples = table[raw].astype(np.float64) / 32768.0
    elif tag == FORMAT_PCM:
        if width not in (1, 2, 3, 4):
            raise WavError("fmt.bits", f"{bits}-bit PCM (8, 16, 24 or 32 supported)")
        if block_align != width * channels:
            raise WavError("fmt.block_align", f"{block_align}, expected {width * channels}")
        samples = _pcm(body, width, channels)
    elif tag == FORMAT_FLOAT:
        if width not in (4, 8):
            raise WavError("fmt.bits", f"{bits}-bit float (32 or 64 supported)")
        dtype = np.dtype("<f4") if width == 4 else np.dtype("<f8")
        count = _whole(len(body) // width, channels)
        samples = np.clip(np.frombuffer(body, dtype=dtype, count=count).astype(np.float64), -1.0, 1.0)
    else:
        raise WavError("fmt.format", f"format tag {tag:#06x} (PCM, float, µ-law or A-law supported)")
    return WavAudio(rate, channels, samples.reshape(-1, channels))


def _whole(items: int, channels: int) -> int:
    return items - items % channels


def _pcm(body: bytes, width: int, channels: int) -> FloatArray:
    usable = len(body) - len(body) % (width * channels)
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(body, dtype=np.uint8, count=usable).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(body, dtype="<i2", count=usable // 2).astype(np.float64) / 32768.0
    if width == 3:
        raw = np.frombuffer(body, dtype=np.uint8, count=usable).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value & 0x800000, value - 0x1000000, value)
        return value.astype(np.float64) / 8388608.0
    return np.frombuffer(body, dtype="<i4", count=usable // 4).astype(np.float64) / 2147483648.0


def encode_wav(samples: Int16Array, sample_rate_hz: int = SAMPLE_RATE_HZ, channels: int = 1) -> bytes:
    """16-bit PCM WAV bytes of interleaved int16 ``samples``.

    Raises:
        ValueError: ``channels`` < 1, or the sample count is not a multiple of ``channels``.
    """
    pcm = np.asarray(samples, dtype="<i2")
    if channels < 1 or pcm.size % channels:
        raise ValueError(f"channels {channels} does not divide {pcm.size} samples")
    body = pcm.tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(body),
        b"WAVE",
        b"fmt ",
        16,
        FORMAT_PCM,
        channels,
        sample_rate_hz,
        sample_rate_hz * 2 * channels,
        2 * channels,
        16,
        b"data",
        len(body),
    )
    return header + body


def decode_8k_mono16(data: bytes) -> Int16Array:
    """The samples of any WAV ``decode_wav`` reads, as 8 kHz mono int16 (converted when it is not).

    Raises:
        WavError: see ``decode_wav``.
    """
    audio = decode_wav(data)
    return _to_8k_mono(audio)


def convert_to_8k_mono16(data: bytes) -> bytes:
    """Convert an uploaded WAV (any rate, channels, 8-32-bit PCM, float, µ-law or A-law) to 8 kHz 16-bit
    mono WAV bytes: channels averaged, resampled with the anti-aliasing polyphase filter, rounded, clipped.

    Raises:
        WavError: the input is not a WAV file we can read (``field`` says which part).
    """
    return encode_wav(decode_8k_mono16(data))


def _to_8k_mono(audio: WavAudio) -> Int16Array:
    mono = audio.samples.mean(axis=1) if audio.channels > 1 else audio.samples[:, 0]
    resampled = resample(mono, audio.sample_rate_hz, SAMPLE_RATE_HZ)
    return np.clip(np.rint(resampled * 32768.0), -32768, 32767).astype(np.int16)


def resample(x: FloatArray, rate_in_hz: int, rate_out_hz: int) -> FloatArray:
    """Resample a float signal by the rational factor ``rate_out_hz / rate_in_hz`` (polyphase windowed sinc).

    The output has ``ceil(len(x) * rate_out / rate_in)`` samples, aligned with the input (the filter's
    delay is compensated). Equal rates return a copy.

    Raises:
        ValueError: a rate not positive.
    """
    if rate_in_hz <= 0 or rate_out_hz <= 0:
        raise ValueError(f"sample rates must be positive ({rate_in_hz} -> {rate_out_hz})")
    x = np.asarray(x, dtype=np.float64)
    if rate_in_hz == rate_out_hz or x.size == 0:
        return x.copy()
    g = math.gcd(rate_in_hz, rate_out_hz)
    up, down = rate_out_hz // g, rate_in_hz // g
    taps = _lowpass(rate_in_hz, rate_out_hz, up)
    # Polyphase: phase p holds taps p, p+up, p+2up, ...; output n uses phase (n*down) % up against the
    # input samples ending at (n*down) // up. The filter's centre is delayed by (len-1)/2 upsampled samples.
    per_phase = -(-taps.size // up)
    padded = np.zeros(per_phase * up)
    padded[: taps.size] = taps
    phases = padded.reshape(per_phase, up).T * up  # (up, per_phase); gain up restores the level
    delay = (taps.size - 1) // 2
    n_out = -(-x.size * up // down)
    xp = np.concatenate([np.zeros(per_phase), x, np.zeros(per_phase + 1)])
    out = np.empty(n_out)
    back = np.arange(per_phase)
    for first in range(0, n_out, _OUTPUT_BLOCK):
        n = np.arange(first, min(first + _OUTPUT_BLOCK, n_out))
        t = n * down + delay  # position in the upsampled signal, delay compensated
        base, phase = np.divmod(t, up)
        idx = base[:, None] - back[None, :] + per_phase  # x[base - k] in xp's indexing
        out[n] = np.einsum("ij,ij->i", xp[np.clip(idx, 0, xp.size - 1)], phases[phase])
    return out


def _lowpass(rate_in_hz: int, rate_out_hz: int, up: int) -> FloatArray:
    """Kaiser-windowed sinc at the upsampled rate: passband to min(3.4 kHz, 0.85 Nyquist), stopband from the
    lower Nyquist."""
    nyquist = min(rate_in_hz, rate_out_hz) / 2.0
    stop = nyquist
    passband = min(PASSBAND_HZ, 0.85 * nyquist)
    rate_up = rate_in_hz * up
    cutoff = (passband + stop) / 2.0 / rate_up  # cycles per upsampled sample
    transition = (stop - passband) / rate_up * 2.0 * math.pi  # radians per sample
    # Kaiser's formulas for the window length and shape at the wanted attenuation.
    length = math.ceil((STOPBAND_DB - 7.95) / (2.285 * transition)) | 1
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    n = np.arange(length) - (length - 1) / 2.0
    taps: FloatArray = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.kaiser(length, beta)
    return taps
