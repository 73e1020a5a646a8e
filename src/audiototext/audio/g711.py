"""G.711 (telephone audio, 8 kHz): μ-law and A-law bytes → float32 samples in [-1, 1).

Each byte is one sample; decoding is a 256-entry table (ITU-T G.711's expansion rules),
built once. Used where audio arrives as G.711 (the OpenAI-compatible realtime socket).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["G711_RATE_HZ", "decode_alaw", "decode_mulaw"]

G711_RATE_HZ = 8000
_BIAS = 0x84  # μ-law's offset, added before and removed after the segment shift


def _mulaw_table() -> NDArray[np.float32]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF  # μ-law bytes are stored inverted
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    values = np.where(code & 0x80, -magnitude, magnitude)
    return (values / 32768.0).astype(np.float32)


def _alaw_table() -> NDArray[np.float32]:
    code = np.arange(256, dtype=np.int32) ^ 0x55  # A-law inverts every other bit
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    values = np.where(code & 0x80, magnitude, -magnitude)  # A-law: the set sign bit is +
    return (values / 32768.0).astype(np.float32)


_MULAW = _mulaw_table()
_ALAW = _alaw_table()


def decode_mulaw(data: bytes) -> NDArray[np.float32]:
    """μ-law bytes (one sample each) → float32."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> NDArray[np.float32]:
    """A-law bytes (one sample each) → float32."""
    return _ALAW[np.frombuffer(data, dtype=np.uint8)]
