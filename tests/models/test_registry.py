from __future__ import annotations

import pytest

from audiototext.errors import UnknownModelError
from audiototext.models.registry import DEFAULT_MODEL, KNOWN_MODELS, resolve, slug


def test_every_issue_model_is_known_with_metadata() -> None:
    for name in (
        "tiny.en",
        "tiny",
        "base.en",
        "base",
        "small.en",
        "small",
        "distil-small.en",
        "large-v3-turbo",
    ):
        spec = KNOWN_MODELS[name]
        assert (
            spec.sources and spec.params_millions > 0 and spec.download_mb > 0 and spec.ram_mb > 0
        )
        assert all(s.revision for s in spec.sources)
    assert KNOWN_MODELS["large-v3-turbo"].n_mels == 128
    assert not KNOWN_MODELS["tiny.en"].multilingual and KNOWN_MODELS["tiny"].multilingual
    assert DEFAULT_MODEL == "tiny.en"
    # tiny.en can always fall back to the packaged copy, last.
    assert [s.kind for s in KNOWN_MODELS["tiny.en"].sources] == [
        "onnx",
        "transformers",
        "ctranslate2",
        "package",
    ]


def test_short_names_are_case_insensitive_and_repo_ids_accepted() -> None:
    assert resolve("TINY.EN").name == "tiny.en"
    spec = resolve("someone/whisper-custom")
    assert [s.kind for s in spec.sources] == ["transformers", "ctranslate2", "onnx"]
    assert slug("someone/whisper-custom") == "someone--whisper-custom"


@pytest.mark.parametrize("name", ["tiny.ne", "tinny", "bse.en"])
def test_unknown_names_suggest_close_ones(name: str) -> None:
    with pytest.raises(UnknownModelError) as err:
        resolve(name)
    assert err.value.suggestions
    assert "Did you mean" in str(err.value)


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b/c", "org/..", "x" * 300, "has space/x"])
def test_malformed_names_are_rejected(name: str) -> None:
    with pytest.raises(UnknownModelError):
        resolve(name)
