"""``audiototext serve``, ``stream FILE`` and ``mic`` as processes, with the real engine.

``mic`` is tested for real: a PulseAudio daemon with a null sink runs for the test, an
espeak-ng WAV is played into the sink, and PortAudio (through ALSA's pulse plugin) captures
the sink's monitor. Skipped only where no PulseAudio daemon can start.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audiototext.models.cache import ModelCache
from server.real_engine import SENTENCES, words
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
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A private PulseAudio daemon with a null sink ``vsink`` as the default source's sink."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip("no PulseAudio (Debian packages pulseaudio pulseaudio-utils)")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    started = subprocess.run(
        [
            "pulseaudio",
            "-n",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "-L",
            "module-native-protocol-unix",
            "-L",
            "module-null-sink sink_name=vsink",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if started.returncode != 0:
        pytest.skip(f"PulseAudio cannot start here: {started.stderr.strip()}")
    try:
        for _ in range(50):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=env, check=True)
        yield env
    finally:
        subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=30)


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
    mic = subprocess.Popen(
        [*CLI, "mic", "--device", "pulse", "--server", served, "--duration", "9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=pulse,
    )
    try:
        assert mic.stderr is not None
        line = mic.stderr.readline()  # "listening ..." once capture runs
        assert "listening" in line, line + mic.stderr.read()
        subprocess.run(["paplay", "--device=vsink", str(wav)], env=pulse, check=True, timeout=60)
        stdout, stderr = mic.communicate(timeout=120)
    finally:
        if mic.poll() is None:
            mic.kill()
    assert mic.returncode == 0, stderr
    got = words(stdout)
    assert len(got & words(SENTENCES[3])) >= 5, stdout
