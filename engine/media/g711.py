"""G.711 µ-law and A-law <-> 16-bit linear PCM through numpy lookup tables (ITU-T G.711, bit-exact with
the ITU-T G.191 Software Tool Library reference ``g711.c``).

Encoding is one fancy-index into a 65,536-entry table (indexed by the int16 sample reinterpreted as
uint16), decoding one into a 256-entry table: no per-sample Python. The tables are built once at import by
the segment arithmetic of the recommendation, vectorised.

A note on µ-law and negative samples: the ITU reference takes the one's complement of a negative sample
before quantising (``(~x >> 2) + 33``), so -1..-4 encode as 0x7F ("negative zero", decoding to 0). The
Sun/CCITT code that the old ``audioop`` module used negates instead (``-(x >> 2)``) and maps them to 0x7E
(-8). We follow the ITU. A-law is the same in both.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]

#: The payload types of RFC 3551 (static).
PT_PCMU: Final = 0
PT_PCMA: Final = 8
#: The byte that encodes digital silence (linear 0) in each law; what comfort-silence frames are made of.
ULAW_SILENCE: Final = 0xFF
ALAW_SILENCE: Final = 0xD5


class G711Error(ValueError):
    """A payload type that is not G.711."""


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    # One's complement of negative samples, then the 14-bit magnitude biased by 33 (G.711 table 2a).
    magnitude = np.where(x < 0, ~x, x) >> 2
    magnitude = np.minimum(magnitude + 33, 0x1FFF)
    # Segment s (1..8): the biased magnitude lies in [32 << s, 64 << s) (segment 1 starts at 33).
    segment = np.searchsorted(np.array([64, 128, 256, 512, 1024, 2048, 4096]), magnitude, side="right") + 1
    mantissa = (magnitude >> segment) & 0x0F
    code = ((8 - segment) << 4) | (0x0F - mantissa)
    code = np.where(x >= 0, code | 0x80, code)
    table = np.empty(65536, dtype=np.uint8)
    table[x.astype(np.int16).view(np.uint16)] = code
    return table


def _build_ulaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int32)
    magnitude = np.where(x < 0, ~x, x) >> 4  # 0..2047, one's complement for negatives
    # Segment e (G.711 table 1a): 0 below 16, 1 for 16..31, then one more per doubling; its mantissa is
    # the four bits below the leading one (segments 0 and 1 share the step size, hence no shift there).
    doublings = np.searchsorted(np.array([32, 64, 128, 256, 512, 1024]), magnitude, side="right")
    exponent = np.where(magnitude < 16, 0, doublings + 1)
    mantissa = np.where(magnitude < 32, magnitude, magnitude >> doublings) & 0x0F
    code = (exponent << 4) | mantissa
    code = np.where(x >= 0, code | 0x80, code) ^ 0x55
    table = np.empty(65536, dtype=np.uint8)
    table[x.astype(np.int16).view(np.uint16)] = code
    return table


def _build_alaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int32)
    toggled = (code ^ 0x55) & 0x7F
    exponent = toggled >> 4
    mantissa = toggled & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    magnitude = (mantissa << 4) + 8
    magnitude = np.where(exponent > 1, magnitude << np.maximum(exponent - 1, 0), magnitude)
    return np.where(code > 127, magnitude, -magnitude).astype(np.int16)


ULAW_ENCODE: Final = _build_ulaw_encode()
ULAW_DECODE: Final = _build_ulaw_decode()
ALAW_ENCODE: Final = _build_alaw_encode()
ALAW_DECODE: Final = _build_alaw_decode()
for _table in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _table.flags.writeable = False


def ulaw_encode(samples: Int16Array) -> bytes:
    """µ-law bytes of int16 ``samples`` (one byte each)."""
    return ULAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def ulaw_decode(payload: bytes) -> Int16Array:
    """int16 samples of a µ-law payload."""
    return ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_encode(samples: Int16Array) -> bytes:
    """A-law bytes of int16 ``samples``."""
    return ALAW_ENCODE[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()


def alaw_decode(payload: bytes) -> Int16Array:
    """int16 samples of an A-law payload."""
    return ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


class G711Codec:
    """The codec of one negotiated payload type: encode/decode and its silence byte.

    Attributes:
        payload_type: 0 (PCMU) or 8 (PCMA).
        silence: the byte encoding linear 0.
    """

    __slots__ = ("_decode", "_encode", "payload_type", "silence")

    def __init__(self, payload_type: int) -> None:
        """Raises:
        G711Error: ``payload_type`` is neither 0 (PCMU) nor 8 (PCMA).
        """
        if payload_type == PT_PCMU:
            self._encode, self._decode, self.silence = ULAW_ENCODE, ULAW_DECODE, ULAW_SILENCE
        elif payload_type == PT_PCMA:
            self._encode, self._decode, self.silence = ALAW_ENCODE, ALAW_DECODE, ALAW_SILENCE
        else:
            raise G711Error(f"payload_type {payload_type} is not G.711 (0 PCMU or 8 PCMA)")
        self.payload_type = payload_type

    def encode(self, samples: Int16Array) -> bytes:
        return self._encode[np.asarray(samples, dtype=np.int16).view(np.uint16)].tobytes()

    def decode(self, payload: bytes) -> Int16Array:
        return self._decode[np.frombuffer(payload, dtype=np.uint8)]
