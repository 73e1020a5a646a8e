"""``audiototext serve``'s observability flags: absurd values are refused before anything
starts, with the flag named."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from audiototext.cli import main


@pytest.fixture(autouse=True)
def root_handlers() -> Iterator[None]:
    """serve replaces the root logger's handlers (--log-format): put pytest's back."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--metrics-interval", "0"], "--metrics-interval 0"),
        (["--metrics-interval", "-2"], "--metrics-interval -2"),
        (["--alert-min-free-memory-mb", "-1"], "--alert-min-free-memory-mb"),
        (["--alert-min-free-disk-mb", "1e12"], "--alert-min-free-disk-mb"),
        (["--threads", "0"], "--threads 0 must be between 1 and"),
        (["--threads", "-4"], "--threads -4"),
        (["--threads", "100000"], "--threads 100000"),
        (["--partial-interval-ms", "0"], "--partial-interval-ms 0 must be between 100 and"),
        (["--partial-interval-ms", "-500"], "--partial-interval-ms -500"),
        (["--model-memory-mb", "0"], "--model-memory-mb must be at least 1"),
        # below one model: tiny.en is expected to need 200 MB (the registry's figure)
        (["--model-memory-mb", "50"], "--model-memory-mb 50 is below the 200 MB"),
        (
            ["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
            "--tls-cert /nonexistent/cert.pem: no such file",
        ),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-key"),
    ],
)
def test_absurd_settings_are_refused_at_start_up(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", "--log-format", "json", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and named in err, err


def test_an_unknown_log_format_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--log-format", "xml"])
    assert exc.value.code == 2
    assert "--log-format" in capsys.readouterr().err


def test_a_streams_default_partial_interval_comes_from_serve() -> None:
    """serve --partial-interval-ms is the interval of streams that name none; a stream's own
    choice wins."""
    from audiototext.server.validation import stream_spec
    from audiototext.wire._proto import transcription_pb2 as pb

    unnamed = pb.StreamConfig(encoding=pb.PCM16, sample_rate_hz=16000, channels=1)
    named = pb.StreamConfig(
        encoding=pb.PCM16, sample_rate_hz=16000, channels=1, partial_interval_ms=700
    )
    spec = stream_spec(unnamed, model="tiny.en", max_buffered_s=30, partial_interval_ms=1200)
    assert spec.options.partial_interval_ms == 1200
    spec = stream_spec(named, model="tiny.en", max_buffered_s=30, partial_interval_ms=1200)
    assert spec.options.partial_interval_ms == 700
    assert (
        stream_spec(unnamed, model="tiny.en", max_buffered_s=30).options.partial_interval_ms == 500
    )
