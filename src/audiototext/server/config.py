"""The server's settings (``audiototext serve``'s flags), checked before anything loads.

Every absurd value is refused here with a message that names the flag, so ``serve`` fails in
a second rather than after a model load of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audiototext.errors import ConfigError
from audiototext.history.store import Retention, check_history_path
from audiototext.server.alerts import AlertSettings
from audiototext.server.control_policy import ControlSettings
from audiototext.server.recording import HistorySettings
from audiototext.server.session_state import check_store_url
from audiototext.streaming.types import MAX_PARTIAL_INTERVAL_MS, MIN_PARTIAL_INTERVAL_MS

__all__ = ["MAX_THREADS", "ServerConfig"]

# More intra-op threads than this is a typing slip, not a machine (ONNX Runtime would start
# them all, one stack each).
MAX_THREADS = 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 picks a free port (see GrpcServer.port)
    model: str = "tiny.en"
    precision: str = "auto"
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A certificate for this machine's names and addresses, made and kept in the cache
    # (server/tls.py); both gRPC and HTTP use it.
    self_signed: bool = False
    max_sessions: int = 16
    max_message_bytes: int = 64 << 20  # transport limit; whole files go through Transcribe
    max_chunk_bytes: int = 1 << 20
    max_buffered_s: float = 30.0
    resume_grace_s: float = 30.0
    metrics_interval_s: float = 1.0
    shutdown_grace_s: float = 10.0
    cache_root: Path | None = None  # the model cache; None: $AUDIOTOTEXT_HOME or the default
    http_port: int | None = None  # None: no HTTP listener; 0 picks a free port
    http_host: str | None = None  # None: the same host as gRPC
    web_dir: Path | None = None  # the page's folder; None: the package's audiototext/web
    max_upload_bytes: int = 200 << 20  # the largest POST /api/v1/transcriptions body
    # Memory for loaded models (expected sizes); None: half the memory available at start.
    model_memory_mb: int | None = None
    extra_options: tuple[tuple[str, int], ...] = field(default_factory=tuple)
    history_path: Path | None = None  # serve --history: the SQLite file; None: memory only
    history_days: float | None = None  # --history-days: None keeps sessions of any age
    history_max_sessions: int | None = None  # --history-max-sessions: None keeps any number
    metrics: bool = True  # /metrics on the HTTP port (serve --no-metrics: off)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    controller: bool = True  # the adaptive controller (serve --no-controller: off)
    control: ControlSettings = field(default_factory=ControlSettings)
    # ONNX Runtime threads per decoding lane (serve --threads); None: the cores shared out.
    threads: int | None = None
    # Partials of streams that do not choose (serve --partial-interval-ms); None: StreamOptions'.
    partial_interval_ms: int | None = None
    # serve --benchmark-on-start: rebuild a missing or stale performance profile, low priority.
    benchmark_on_start: bool = False
    # serve --session-store: "memory" (this process) or redis://HOST:PORT/DB (shared)
    session_store: str = "memory"

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if self.self_signed and self.tls_cert is not None:
            raise ConfigError("use either --self-signed or --tls-cert/--tls-key, not both")
        # Before the model loads (which can take minutes), not after.
        for flag, path in (("--tls-cert", self.tls_cert), ("--tls-key", self.tls_key)):
            if path is not None and not path.is_file():
                raise ConfigError(f"{flag} {path}: no such file")
        if self.max_upload_bytes < 1:
            raise ConfigError("--max-upload-mb must be positive")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not between 0 and 65535")
        if self.max_sessions < 1:
            raise ConfigError("--max-sessions must be at least 1")
        if self.max_chunk_bytes > self.max_message_bytes:
            raise ConfigError("--max-chunk-bytes cannot exceed --max-message-bytes")
        if not 1.0 <= self.max_buffered_s <= 600.0:
            raise ConfigError("--max-buffered-s must be between 1 and 600")
        if self.resume_grace_s < 0:
            raise ConfigError("--resume-grace-s cannot be negative")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"--http-port {self.http_port} is not between 0 and 65535")
        if self.token is not None and not self.token:
            raise ConfigError("--token cannot be empty")
        if not 0.05 <= self.metrics_interval_s <= 3600:
            raise ConfigError(
                f"--metrics-interval {self.metrics_interval_s:g} must be between 0.05 and "
                "3600 seconds"
            )
        if self.model_memory_mb is not None and self.model_memory_mb < 1:
            raise ConfigError("--model-memory-mb must be at least 1")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise ConfigError(f"--threads {self.threads} must be between 1 and {MAX_THREADS}")
        if self.partial_interval_ms is not None and not (
            MIN_PARTIAL_INTERVAL_MS <= self.partial_interval_ms <= MAX_PARTIAL_INTERVAL_MS
        ):
            raise ConfigError(
                f"--partial-interval-ms {self.partial_interval_ms} must be between "
                f"{MIN_PARTIAL_INTERVAL_MS} and {MAX_PARTIAL_INTERVAL_MS}"
            )
        self.history_settings()  # refuses absurd retention settings, naming them
        if self.history_path is not None:
            check_history_path(self.history_path)  # before anything is loaded
        if self.session_store != "memory":
            check_store_url(self.session_store)

    def history_settings(self) -> HistorySettings:
        return HistorySettings(
            path=self.history_path,
            retention=Retention(days=self.history_days, max_sessions=self.history_max_sessions),
        )
