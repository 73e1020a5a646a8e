"""What the HTTP adapter shares with the rest of the server (built by the composition root)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiototext.server.http.rtc_peers import RtcPeers
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
    # Cache folders of the loaded models: marks the precision that runs, not every cached one.
    models_in_use: tuple[Path, ...] = ()
    # Open WebRTC peers: the composition root closes them at shutdown.
    webrtc: RtcPeers = field(default_factory=RtcPeers)
