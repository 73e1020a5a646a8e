"""Client pieces without a model: the adaptive encoder choice, codecs, the blocking client."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import numpy as np
import pytest

from audiototext.client import AdaptiveEncoding, Client, Level, StreamSettings, TranscriptUpdate
from audiototext.wire._proto import transcription_pb2 as pb
from audiototext.wire.codec import (
    ChunkDecoder,
    ChunkError,
    Encoding,
    OpusEncoder,
    decode_pcm16,
    encode_pcm16,
)
from server.fake_engine import FakeRecognizer
from server.grpc_harness import running_server, speech_like


def test_adaptive_steps_down_on_slow_acks_and_back_up_when_quiet() -> None:
    ctl = AdaptiveEncoding(quiet_s=5.0)
    assert ctl.level == Level("PCM16")
    t = 0.0
    seq = 1
    t += 0.1
    assert ctl.on_ack(seq, 900.0, t, seq + 1)  # an ack took 900 ms: the link is saturated
    seq += 1
    assert ctl.level == Level("OPUS", 32_000)
    first_opus = ctl.level
    t += 0.1
    assert ctl.on_ack(seq, 900.0, t, seq + 1)  # still too slow: one more step down
    seq += 1
    assert ctl.level == Level("OPUS", 16_000)
    # Old PCM chunks still arriving slowly say nothing about the new level.
    assert not ctl.on_ack(0, 5000.0, t, seq)
    for _ in range(200):  # 20 s of fast acks
        t += 0.1
        ctl.on_ack(seq, 20.0, t, seq + 1)
        seq += 1
    assert ctl.level == Level("PCM16")
    assert [lvl for _, lvl in ctl.switches] == [
        first_opus,
        Level("OPUS", 16_000),
        first_opus,
        Level("PCM16"),
    ]


def test_adaptive_disabled_never_switches() -> None:
    ctl = AdaptiveEncoding(enabled=False)
    for seq in range(1, 50):
        assert not ctl.on_ack(seq, 5000.0, seq * 0.1, seq + 1)
    assert ctl.level == Level("PCM16")


def test_one_encoding_table_matches_the_proto_and_every_ladder_level() -> None:
    wire = {v.name: v.number for v in pb.AudioEncoding.DESCRIPTOR.values}
    assert {e.name: int(e) for e in Encoding} == {
        ("UNSPECIFIED" if n == "AUDIO_ENCODING_UNSPECIFIED" else n): v for n, v in wire.items()
    }
    assert Encoding.UNSPECIFIED not in Encoding.audio()
    for level in (*AdaptiveEncoding().ladder, Level("FLOAT32")):
        assert Encoding[level.encoding] in Encoding.audio()
    # Message fields take the member's name.
    chunk = pb.AudioChunk(seq=1, encoding=Encoding.OPUS.name)
    # The generated stubs type enum values as their own int subclass; they are plain ints.
    assert chunk.encoding == cast(int, pb.OPUS) == Encoding.OPUS


def test_pcm16_round_trip_and_clipping() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)
    y = decode_pcm16(encode_pcm16(x))
    assert np.allclose(y[:3], x[:3], atol=1 / 32768)
    assert y[3] == pytest.approx(32767 / 32768) and y[4] == -1.0


def test_opus_round_trip_keeps_the_signal() -> None:
    t = np.arange(32_000) / 16_000
    x = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    enc = OpusEncoder(16_000, 1, 24_000)
    dec = ChunkDecoder(16_000, 1)
    out = [
        dec.decode(enc.encode(x[i : i + 1600]), Encoding.OPUS, i) for i in range(0, 32_000, 1600)
    ]
    out.append(dec.decode(enc.flush(), Encoding.OPUS, 99))
    y = np.concatenate(out)
    assert abs(y.shape[0] - x.shape[0]) < 1600
    # Same tone, same loudness (Opus is lossy and delays a little).
    assert np.sqrt(np.mean(y[4000:28000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.15)


def test_decoder_rejects_what_is_not_audio() -> None:
    dec = ChunkDecoder(16_000, 2)
    with pytest.raises(ChunkError, match="PCM16 frames"):
        dec.decode(b"\0" * 6, Encoding.PCM16, 1)  # 1.5 stereo frames
    with pytest.raises(ChunkError, match="NaN"):
        dec.decode(np.array([np.nan, 0], "<f4").tobytes(), Encoding.FLOAT32, 2)
    with pytest.raises(ChunkError, match=r"\[-1, 1\]"):
        dec.decode(np.array([1e9, 0], "<f4").tobytes(), Encoding.FLOAT32, 3)
    with pytest.raises(ChunkError, match="length"):
        dec.decode(b"\x00", Encoding.OPUS, 4)


def test_blocking_client() -> None:
    audio = speech_like(5.0, seed=2)
    ready = threading.Event()
    stop = threading.Event()
    port: list[int] = []

    def serve() -> None:
        async def main() -> None:
            async with running_server(FakeRecognizer()) as srv:
                port.append(srv.port)
                ready.set()
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        with Client(f"127.0.0.1:{port[0]}") as client:
            stream = client.stream(StreamSettings(compression="opus"))
            for i in range(0, audio.shape[0], 1600):
                stream.send(audio[i : i + 1600])
            stream.finish()
            finals = [r for r in stream.results() if isinstance(r, TranscriptUpdate) and r.is_final]
            stream.close()
    finally:
        stop.set()
        thread.join(30)
    assert finals and all(f.text.startswith(f"u{i + 1} ") for i, f in enumerate(finals))
