"""An ended stream holds no reference to its recognizer, so a server that keeps the stream
for a client's resume can still unload the model (the model pool evicts idle models)."""

from __future__ import annotations

import asyncio
import gc
import weakref

from audiototext.audio import SileroVad
from audiototext.inference import WhisperModel
from audiototext.streaming import RecognizerOptions, StreamingRecognizer
from audiototext.streaming.stream import RecognitionStream
from audiototext.streaming.types import StreamOptions
from support.speech import Speech, with_silence


def test_an_ended_stream_lets_its_recognizer_go(
    tiny_model: WhisperModel, shared_vad: SileroVad, sentence: Speech
) -> None:
    async def main() -> tuple[RecognitionStream, weakref.ref[StreamingRecognizer]]:
        rec = StreamingRecognizer(tiny_model, RecognizerOptions(), vad=shared_vad)
        stream = rec.open(StreamOptions())
        stream.accept(with_silence(sentence.audio, 0.2, 0.8), 16_000)
        finish = asyncio.create_task(stream.finish())
        events = [e async for e in stream.events()]
        await finish
        assert events
        await rec.close()
        return stream, weakref.ref(rec)

    stream, recognizer = asyncio.run(main())
    assert stream.ended
    gc.collect()
    assert recognizer() is None, "the ended stream still holds its recognizer"
