"""Models: registry, Hugging Face download, conversion to ONNX, optimisation and the cache.

The manager (download and conversion, which import huggingface_hub and onnx) loads on first
use of :func:`pull`, :func:`verify` or their result types, so that processes which only read
the cache (transcription, streaming) do not carry those libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audiototext.models.cache import CacheEntry, ModelCache, cache_home
from audiototext.models.registry import DEFAULT_MODEL, KNOWN_MODELS, ModelSpec, resolve

if TYPE_CHECKING:
    from audiototext.models.manager import PullResult, VerifyReport, pull, verify

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "CacheEntry",
    "ModelCache",
    "ModelSpec",
    "PullResult",
    "VerifyReport",
    "cache_home",
    "pull",
    "resolve",
    "verify",
]

_FROM_MANAGER = frozenset({"PullResult", "VerifyReport", "pull", "verify"})


def __getattr__(name: str) -> Any:
    if name in _FROM_MANAGER:
        from audiototext.models import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
