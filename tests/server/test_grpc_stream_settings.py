"""``StreamConfig.prompt``, ``vad_threshold`` and ``prefix_padding_ms`` over gRPC (the Python
client's ``StreamSettings.prompt`` and raw requests) with the real engine (tiny.en int8)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from audiototext.client import AsyncClient, StreamSettings
from audiototext.wire._proto import transcription_pb2 as pb
from server.grpc_harness import raw_stream, run, running_server, stream_audio
from server.real_engine import settled, words
from support.speech import SpeechSynthesizer, with_silence

if TYPE_CHECKING:
    from audiototext.streaming import StreamingRecognizer

pytestmark = [pytest.mark.slow]

NAME_SENTENCE = "Please send the report to Siobhan Nguyen before noon."
NAME_PROMPT = "Attendees: Siobhan Nguyen, Saoirse and Niamh."


def test_a_prompt_spells_a_name_over_grpc(
    recognizer: StreamingRecognizer, speech: SpeechSynthesizer
) -> None:
    audio = with_silence(speech.speak(NAME_SENTENCE).audio, 0.5, 1.5)

    async def main() -> list[str]:
        texts = []
        async with (
            running_server(recognizer) as srv,
            AsyncClient(f"127.0.0.1:{srv.port}") as client,
        ):
            for prompt in ("", NAME_PROMPT):
                await settled(recognizer)
                settings = StreamSettings(prompt=prompt, interim_results=False)
                _, finals, _ = await stream_audio(client, audio, settings, speed=None)
                texts.append(" ".join(f.text for f in finals))
        return texts

    plain, prompted = run(main())
    assert "siobhan" not in words(plain), plain
    assert {"siobhan", "nguyen", "report", "noon"} <= words(prompted), (plain, prompted)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"prompt": "x" * 2001}, "prompt must be text of at most 2000 characters"),
        ({"prompt": "Siobhan Nguyen, " * 120}, "tokens long; at most 223"),
        ({"vad_threshold": 1.0}, "vad_threshold must be between 0 and 1"),
        ({"prefix_padding_ms": 2001}, "prefix_padding_ms must be between 0 and 2000"),
    ],
)
def test_bad_stream_settings_are_invalid_argument(
    recognizer: StreamingRecognizer, fields: dict[str, object], expected: str
) -> None:
    async def main() -> tuple[grpc.StatusCode, str]:
        async with running_server(recognizer) as srv:
            cfg = pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, **fields)  # type: ignore[arg-type]
            code, details, _ = await raw_stream(srv.port, [pb.StreamingRequest(config=cfg)])
            return code, details

    code, details = run(main())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert expected in details, details
