"""What the HTTP adapter shares with the rest of the server (built by the composition root)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from audiototext.server.pool import ModelPool
from audiototext.server.sessions import SessionStore
from audiototext.server.streams import StreamService

__all__ = ["HttpContext"]


@dataclass(frozen=True)
class HttpContext:
    streams: StreamService  # the same stream layer as gRPC's
    store: SessionStore
    model: str  # the model the server runs
    token: str | None  # serve --token (None: open)
    cache_root: Path | None  # the model cache (None: the default)
    is_serving: Callable[[], bool]  # the gRPC health status, SERVING or not
    started_at: float  # time.monotonic() at start
    web_dir: Path | None  # the page's folder (None: no page)
    pool: ModelPool | None = None  # the loaded models (None: only the default, not known)
    # Cache folders that cannot be removed now (open streams, the default, the file model).
    models_in_use: Callable[[], Collection[Path]] = tuple
