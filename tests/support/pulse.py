"""A private PulseAudio daemon for microphone tests, and a capture through it.

The daemon has a null sink ``vsink`` whose monitor is the default source, so what ``paplay``
plays into the sink is what a program recording from the default device hears."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


@contextlib.contextmanager
def pulse_daemon(home: Path, runtime: Path) -> Iterator[dict[str, str]]:
    """The daemon's environment (skips the test when PulseAudio is missing or cannot start)."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip("no PulseAudio (Debian packages pulseaudio pulseaudio-utils)")
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)}
    daemon = [
        "pulseaudio",
        "-n",
        "--daemonize=yes",
        "--exit-idle-time=-1",
        "-L",
        "module-native-protocol-unix",
        "-L",
        "module-null-sink sink_name=vsink",
    ]
    started = subprocess.run(daemon, env=env, capture_output=True, text=True, timeout=30)
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


def capture_while_playing(
    command: Sequence[str], env: dict[str, str], pulse: dict[str, str], wav: Path
) -> tuple[int, str, str]:
    """Run a recording ``command``; once it says it is listening, play ``wav`` into the sink.
    Its exit code, stdout and stderr."""
    mic = subprocess.Popen(
        list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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
    return mic.returncode, stdout, stderr
