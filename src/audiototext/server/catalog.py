"""The models a server can offer: what is in the cache and what the registry knows.

One listing for every adapter (gRPC ``Models.List``, REST ``/api/v1/models``), so the two
cannot disagree. It reads the disk: call it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audiototext.models.cache import CacheEntry
    from audiototext.models.registry import ModelSpec

__all__ = ["ModelCatalog", "model_catalog"]


@dataclass(frozen=True)
class ModelCatalog:
    cached: tuple[CacheEntry, ...]  # complete entries, newest first (damaged ones left out)
    known: tuple[ModelSpec, ...]  # the registry's short names
    cache_dir: Path

    @property
    def cached_names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.cached)


def model_catalog(cache_root: Path | None) -> ModelCatalog:
    # Imported here: listing models must not load the model code with the server module.
    from audiototext.models.cache import ModelCache
    from audiototext.models.registry import KNOWN_MODELS

    cache = ModelCache(cache_root)
    entries, _damaged = cache.scan()
    return ModelCatalog(tuple(entries), tuple(KNOWN_MODELS.values()), cache.root)
