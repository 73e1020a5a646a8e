"""``audiototext serve``, ``stream FILE`` and ``mic`` as processes, with the real engine.

``mic`` is tested for real: a PulseAudio daemon with a null sink runs for the test, an
espeak-ng WAV is played into the sink, and PortAudio (through ALSA's pulse plugin) captures
the sink's monitor. Skipped only where no PulseAudio daemon can start.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audiototext.models.cache import ModelCache
from server.real_engine import SENTENCES, words
from support.pulse import capture_while_playing, pulse_daemon
from support.speech import SpeechSynthesizer, with_silence, write_wav

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "audiototext.cli"]


@pytest.fixture
def served(filled_cache: ModelCache) -> Iterator[str]:
    """``audiototext serve --port 0`` running on the test's cache; yields host:port."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--precision", "int8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        line = proc.stdout.readline()  # blocks until the server listens (or exits)
        match = re.search(r"grpc://([\d.]+:\d+)", line)
        if match is None:
            proc.kill()
            raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, proc.stderr.read() if proc.stderr else ""


def test_stream_file_prints_finals(served: str, speech: SpeechSynthesizer, tmp_path: Path) -> None:
    audio = with_silence(speech.speak(SENTENCES[0]).audio, 0.3, 1.5)
    wav = write_wav(tmp_path / "speech.wav", audio, 16_000)
    out = subprocess.run(
        [*CLI, "stream", str(wav), "--server", served, "--speed", "2", "--partials"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    finals = [ln for ln in lines if not ln.startswith("~ ")]
    assert any(ln.startswith("~ ") for ln in lines)  # partials were shown
    assert len(words(" ".join(finals)) & words(SENTENCES[0])) >= 4, out.stdout


def test_stream_to_a_server_that_is_not_there_fails_clearly(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "s.wav", np.zeros(1600, np.float32), 16_000)
    out = subprocess.run(
        [*CLI, "stream", str(wav), "--server", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "error:" in out.stderr


@pytest.fixture
def pulse(tmp_path: Path) -> Iterator[dict[str, str]]:
    with pulse_daemon(tmp_path, tmp_path / "xdg") as env:
        yield env


def test_mic_list_devices(pulse: dict[str, str]) -> None:
    out = subprocess.run(
        [*CLI, "mic", "--list-devices"], capture_output=True, text=True, env=pulse, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "pulse" in out.stdout


def test_mic_transcribes_what_plays_into_the_sink(
    pulse: dict[str, str], served: str, speech: SpeechSynthesizer, tmp_path: Path
) -> None:
    audio = with_silence(speech.speak(SENTENCES[3]).audio, 0.2, 0.2)
    wav = write_wav(tmp_path / "play.wav", audio, 16_000)
    command = [*CLI, "mic", "--device", "pulse", "--server", served, "--duration", "9"]
    code, stdout, stderr = capture_while_playing(command, pulse, pulse, wav)
    assert code == 0, stderr
    got = words(stdout)
    assert len(got & words(SENTENCES[3])) >= 5, stdout
