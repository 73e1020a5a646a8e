"""The converted tiny.en cache every test module shares (built once, on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiototext.models.cache import ModelCache
from support.model_fixtures import TINY_EN_PRECISIONS as PRECISIONS
from support.model_fixtures import tiny_en_cache

__all__ = ["PRECISIONS", "entry_path", "shared_model_cache"]


def shared_model_cache(tmp_path_factory: pytest.TempPathFactory | None = None) -> Path:
    """tiny.en fp32 and int8: the same cache as the ``built_cache`` fixture."""
    return tiny_en_cache()


def entry_path(root: Path, precision: str) -> Path:
    return ModelCache(root).find("tiny.en", precision).path
