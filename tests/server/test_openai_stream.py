"""``stream=true`` on ``/v1/audio/transcriptions`` with the transcriber double (real decoding,
a fixed text): a file that cannot be read is a 400 before any event, segments the transcriber
does not announce one by one still arrive as deltas, and the events are OpenAI's."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openai
import pytest

from server.openai_harness import openai_error_of, threaded_server
from server.upload_harness import DecodingTranscriber
from support.speech import SAMPLE_RATE_HZ, write_wav


def test_stream_events_undecodable_files_and_the_server_going_on(tmp_path: Path) -> None:
    t = np.arange(2 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    wav = write_wav(tmp_path / "t.wav", 0.3 * np.sin(2 * np.pi * 440 * t), SAMPLE_RATE_HZ)
    with (
        threaded_server(DecodingTranscriber()) as (_, url),
        openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.transcriptions.create(
                model="whisper-1", file=("x.mp3", io.BytesIO(b"not audio" * 100)), stream=True
            )
        assert caught.value.response.headers["content-type"] == "application/json"
        assert openai_error_of(caught.value.response.content)["param"] == "file"
        events = list(
            client.audio.transcriptions.create(
                model="whisper-1", file=("t.wav", wav.read_bytes()), stream=True
            )
        )
        assert [e.model_dump(exclude_none=True) for e in events] == [
            {"type": "transcript.text.delta", "delta": "Hello there."},
            {"type": "transcript.text.delta", "delta": " General Kenobi."},
            {"type": "transcript.text.done", "text": "Hello there. General Kenobi."},
        ]
        text = client.audio.transcriptions.create(
            model="whisper-1", file=("t.wav", wav.read_bytes()), stream=True, response_format="text"
        )
        assert [e.type for e in text][-1] == "transcript.text.done"
