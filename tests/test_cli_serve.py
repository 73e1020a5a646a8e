"""``audiototext serve`` flags reach the server's configuration (the server itself is not
started: ``serve`` is replaced)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from audiototext.cli import main
from audiototext.server.app import ServerConfig


def _config_of(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> ServerConfig:
    seen: list[ServerConfig] = []

    async def fake_serve(
        config: ServerConfig, *, ready: Callable[[Any], None] | None = None
    ) -> None:
        seen.append(config)

    monkeypatch.setattr("audiototext.server.app.serve", fake_serve)
    assert main(["serve", *argv]) == 0
    return seen[0]


def test_self_signed_and_upload_limit_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config_of(
        monkeypatch, ["--self-signed", "--max-upload-mb", "1.5", "--http-host", "0.0.0.0"]
    )
    assert cfg.self_signed and cfg.tls_cert is None
    assert cfg.max_upload_bytes == int(1.5 * (1 << 20))
    assert cfg.http_host == "0.0.0.0" and cfg.http_port == 8080


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config_of(monkeypatch, [])
    assert not cfg.self_signed and cfg.max_upload_bytes == 200 << 20


def test_engine_and_profile_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config_of(
        monkeypatch,
        ["--threads", "3", "--partial-interval-ms", "750", "--benchmark-on-start"],
    )
    assert (cfg.threads, cfg.partial_interval_ms, cfg.benchmark_on_start) == (3, 750, True)
    cfg = _config_of(monkeypatch, [])
    assert (cfg.threads, cfg.partial_interval_ms, cfg.benchmark_on_start) == (None, None, False)


def test_no_adapt_threads_turns_the_thread_policy_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _config_of(monkeypatch, []).control.adapt_threads
    cfg = _config_of(monkeypatch, ["--no-adapt-threads", "--threads", "2"])
    assert not cfg.control.adapt_threads and cfg.controller and cfg.threads == 2


def test_the_start_up_line_about_the_profile() -> None:
    from audiototext.cli_serve import profile_line
    from audiototext.hardware.recommend import Recommendation
    from audiototext.server.perf_profile import ProfileReport

    missing = ProfileReport("missing", "/c/profile.json", "no profile yet", True, None, None)
    assert profile_line(missing) == (
        "performance profile: no profile yet (rebuilding it now, at low priority)"
    )
    rec = Recommendation("base.en", "int8", 2, 6, 750, True, {}, "2026-12-07")
    fresh = ProfileReport("fresh", "/c/profile.json", "", False, rec, {})
    line = profile_line(fresh)
    assert "base.en int8" in line and "--threads 2" in line and "--partial-interval-ms 750" in line
