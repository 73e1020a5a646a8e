"""What the HTTP adapter shares with the rest of the server (built by the composition root)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from audiototext.server.devices import DeviceProbe, real_probe
from audiototext.server.files import FileTranscribeFn
from audiototext.server.http.rtc_peers import RtcPeers
from audiototext.server.network import NetworkReports
from audiototext.server.pool import ModelPool
from audiototext.server.recording import HistoryRecorder
from audiototext.server.resources import ResourceSampler
from audiototext.server.sessions import SessionStore
from audiototext.server.streams import StreamService

if TYPE_CHECKING:
    from audiototext.server.alerts import AlertMonitor
    from audiototext.server.controller import Controller
    from audiototext.server.metrics import ServerMetrics
    from audiototext.server.perf_profile import ProfileKeeper

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
    history: HistoryRecorder | None = None  # the transcript history (None: no history routes)
    metrics: ServerMetrics | None = None  # None: no /metrics (serve --no-metrics)
    alerts: AlertMonitor | None = None
    # Whole files (POST /api/v1/transcriptions): the same code as gRPC Transcribe; None: 501.
    transcribe_file: FileTranscribeFn | None = None
    max_upload_bytes: int = 200 << 20  # the largest upload body (413 past it)
    # Open WebRTC peers: the composition root closes them at shutdown.
    webrtc: RtcPeers = field(default_factory=RtcPeers)
    pool: ModelPool | None = None  # the loaded models (None: only the default, not known)
    # Cache folders that cannot be removed now (open streams, the default, the file model).
    models_in_use: Callable[[], Collection[Path]] = tuple
    devices: DeviceProbe = real_probe  # which processing devices work here
    resources: ResourceSampler | None = None  # CPU, memory, GPU (None: not reported)
    controller: Controller | None = None  # the adaptive controller (None: serve --no-controller)
    profile: ProfileKeeper | None = None  # the performance profile and its recommendation
    network: NetworkReports = field(default_factory=NetworkReports)  # clients' measurements
