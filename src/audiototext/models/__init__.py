"""Models: registry, Hugging Face download, conversion to ONNX, optimisation and the cache."""

from audiototext.models.cache import CacheEntry, ModelCache, cache_home
from audiototext.models.manager import PullResult, VerifyReport, pull, verify
from audiototext.models.registry import DEFAULT_MODEL, KNOWN_MODELS, ModelSpec, resolve

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
