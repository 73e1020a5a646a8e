"""The stream's policies without a server: the unacknowledged-audio buffer and the encoder."""

from __future__ import annotations

import numpy as np
import pytest

from audiototext.client import Level, StreamSettings
from audiototext.client._encoder import ChunkEncoder, ladder_for
from audiototext.client._unacked import UnackedAudio
from audiototext.wire.codec import Encoding


def _filled(n: int) -> UnackedAudio:
    buf = UnackedAudio()
    for i in range(n):
        buf.add(bytes([i]), Encoding.PCM16, 100.0)
    return buf


def test_acks_drop_chunks_and_return_the_sent_one() -> None:
    buf = _filled(5)
    assert (buf.next_seq, buf.ms) == (6, 500.0)
    assert buf.acknowledge(2) is None  # never sent: no round trip to measure
    assert buf.ms == 300.0
    chunk = buf.next_unsent()
    assert chunk is not None and chunk.seq == 3  # send_seq skipped ahead past the acked ones
    chunk.sent_at = 1.0
    buf.send_seq = 4
    assert buf.inflight_ms() == 100.0
    acked = buf.acknowledge(3)
    assert acked is not None and acked.seq == 3
    assert buf.inflight_ms() == 0.0


def test_a_reconnect_resends_from_where_the_server_stopped() -> None:
    buf = _filled(4)
    buf.send_seq = 5  # all written on the old connection
    assert buf.next_unsent() is None
    buf.send_seq = 3  # the new connection's SessionStarted.next_seq
    sent = []
    while (chunk := buf.next_unsent()) is not None:
        sent.append(chunk.seq)
        buf.send_seq = chunk.seq + 1
    assert sent == [3, 4]


def test_with_a_session_store_acknowledged_chunks_stay_until_the_store_has_them() -> None:
    buf = _filled(6)
    buf.stored(0)  # SessionStarted.session_store
    buf.send_seq = 7
    buf.acknowledge(5)
    assert (buf.ms, buf.kept_ms, buf.inflight_ms()) == (100.0, 500.0, 100.0)
    buf.stored(3)  # Ack.stored_seq: another server would restart at chunk 4
    assert buf.kept_ms == 200.0
    buf.send_seq = 4  # that server's SessionStarted.next_seq
    sent = []
    while (chunk := buf.next_unsent()) is not None:
        sent.append(chunk.seq)
        buf.send_seq = chunk.seq + 1
    assert sent == [4, 5, 6]
    buf.stored(9)  # never past what was acknowledged
    assert [buf.kept_ms, buf.ms] == [0.0, 100.0]


def test_kept_audio_is_bounded() -> None:
    buf = UnackedAudio(max_kept_ms=250.0)
    for i in range(5):
        buf.add(bytes([i]), Encoding.PCM16, 100.0)
    buf.stored(0)
    buf.acknowledge(5)
    assert buf.kept_ms == 200.0 and buf.next_unsent() is not None


def test_ladder_follows_the_compression_setting() -> None:
    assert ladder_for(StreamSettings(compression="pcm16")) == (Level("PCM16"),)
    assert ladder_for(StreamSettings(compression="opus", opus_bit_rate=16_000)) == (
        Level("OPUS", 16_000),
    )
    assert ladder_for(StreamSettings(sample_rate_hz=44_100)) == (Level("PCM16"),)
    with pytest.raises(ValueError, match="Opus cannot carry"):
        ladder_for(StreamSettings(sample_rate_hz=44_100, compression="opus"))


def test_encoder_ends_an_opus_run_when_the_level_changes() -> None:
    enc = ChunkEncoder(16_000, 1)
    block = (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    first = enc.encode(block, Level("OPUS", 32_000))
    assert [e for _, e in first] == [Encoding.OPUS]
    # Another bit rate: the old run's tail first, then the new run.
    second = enc.encode(block, Level("OPUS", 16_000))
    assert [e for _, e in second] == [Encoding.OPUS, Encoding.OPUS]
    third = enc.encode(block, Level("PCM16"))
    assert [e for _, e in third] == [Encoding.OPUS, Encoding.PCM16]
    assert len(third[-1][0]) == 2 * block.size
    assert enc.flush() == b""  # no Opus run open
