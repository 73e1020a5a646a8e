"""G.711 decoding against FFmpeg's own decoders (through PyAV), every one of the 256 codes."""

from __future__ import annotations

import av
import numpy as np
import pytest

from audiototext.audio.g711 import decode_alaw, decode_mulaw


def _ffmpeg_decode(codec: str, data: bytes) -> np.ndarray:
    ctx = av.CodecContext.create(codec, "r")
    ctx.sample_rate, ctx.layout = 8000, "mono"  # type: ignore[attr-defined]
    frames = ctx.decode(av.Packet(data))  # type: ignore[attr-defined]
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


@pytest.mark.parametrize(
    ("codec", "decode"), [("pcm_mulaw", decode_mulaw), ("pcm_alaw", decode_alaw)]
)
def test_every_code_decodes_as_ffmpeg_does(codec: str, decode: object) -> None:
    codes = bytes(range(256))
    reference = _ffmpeg_decode(codec, codes).astype(np.int32)
    ours = decode(codes)  # type: ignore[operator]
    assert ours.dtype == np.float32 and ours.shape == (256,)
    np.testing.assert_array_equal(np.round(ours * 32768).astype(np.int32), reference)


def test_empty_input_gives_no_samples() -> None:
    assert decode_mulaw(b"").shape == (0,) and decode_alaw(b"").shape == (0,)
