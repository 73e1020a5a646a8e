"""A stream's language and task reach its decoding prompt (a random multilingual model: the
prompt is what matters here, not the text); an English-only model refuses translation."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from audiototext.audio import SileroVad
from audiototext.errors import ConfigError
from audiototext.inference import OrtConfig, WhisperModel
from audiototext.streaming import RecognizerOptions, StreamingRecognizer
from audiototext.streaming.types import StreamOptions
from inference.test_transcribe import _multilingual_tokenizer
from streaming.streaming_helpers import stream_audio
from support.model_fixtures import make_random_whisper
from support.speech import Speech, with_silence


@pytest.fixture(scope="module")
def multilingual_model(
    tmp_path_factory: pytest.TempPathFactory, tiny_en_source: Path
) -> WhisperModel:
    import json

    from audiototext.models.convert import convert

    root = tmp_path_factory.mktemp("multilingual-stream")
    src, out = root / "source", root / "model"
    out.mkdir()
    tok = _multilingual_tokenizer(tiny_en_source / "tokenizer.json", root / "tokenizer.json")
    make_random_whisper(src, tok, seed=5, multilingual=True)
    converted = convert(src, "transformers", out)
    (out / "model_config.json").write_text(json.dumps(converted.metadata.to_json()))
    shutil.copyfile(tok, out / "tokenizer.json")
    return WhisperModel(out, OrtConfig(device="cpu", intra_op_threads=1))


def test_language_and_task_make_the_prompt(
    multilingual_model: WhisperModel, shared_vad: SileroVad
) -> None:
    rec = StreamingRecognizer(multilingual_model, RecognizerOptions(), vad=shared_vad)
    try:
        tok = multilingual_model.tokenizer
        translate = rec.open(StreamOptions(language="de", task="translate"))
        plain = rec.open(StreamOptions(language="pt"))
        auto = rec.open(StreamOptions())
        notimestamps = tok.no_timestamps
        assert rec._prompt(translate) == [tok.sot, tok.languages["de"], tok.translate, notimestamps]
        assert rec._prompt(plain) == [tok.sot, tok.languages["pt"], tok.transcribe, notimestamps]
        # No language given: English stands in until the lane detects one (next test).
        assert rec._prompt(auto) == [tok.sot, tok.languages["en"], tok.transcribe, notimestamps]
    finally:
        rec.close()


def test_an_english_only_model_refuses_translation_and_other_languages(
    tiny_model: WhisperModel, shared_vad: SileroVad
) -> None:
    rec = StreamingRecognizer(tiny_model, RecognizerOptions(), model_name="tiny.en", vad=shared_vad)
    try:
        with pytest.raises(ConfigError, match="cannot translate"):
            rec.open(StreamOptions(task="translate"))
        with pytest.raises(ConfigError, match="English-only"):
            rec.open(StreamOptions(language="de"))
        with pytest.raises(ValueError, match="task must be"):
            StreamOptions(task="sing")
        rec.open(StreamOptions(language="en", task="transcribe"))
    finally:
        rec.close()


def test_a_stream_without_a_language_gets_one_detected_from_its_first_final(
    multilingual_model: WhisperModel, shared_vad: SileroVad, sentence: Speech
) -> None:
    rec = StreamingRecognizer(multilingual_model, RecognizerOptions(), vad=shared_vad)
    tok = multilingual_model.tokenizer

    async def main() -> tuple[str | None, list[int], int]:
        stream = rec.open(StreamOptions(task="translate"))
        log = await stream_audio(stream, with_silence(sentence.audio, 0.3, 1.0), 16_000)
        return stream.detected_language, rec._prompt(stream), len(log.events)

    try:
        detected, prompt, events = asyncio.run(main())
    finally:
        rec.close()
    assert events > 0
    assert detected in tok.languages
    assert prompt == [tok.sot, tok.languages[detected], tok.translate, tok.no_timestamps]
