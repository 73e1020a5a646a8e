"""The bulk run's parts that need no Ray cluster: inputs, refusals, the worker, the index."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from audiototext.bulk import FileOutcome, read_index
from audiototext.bulk.index import write_index
from audiototext.bulk.inputs import expand_inputs
from audiototext.bulk.worker import BulkWorker, WorkerSettings
from audiototext.cli import main
from audiototext.errors import ConfigError
from audiototext.inference import TranscribeOptions
from inference.models_support import shared_model_cache
from support.fixture_cache import shared_speech_dir
from support.speech import SpeechSynthesizer, espeak_available, write_wav


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_patterns_and_files_expand_in_order_once_each(tmp_path: Path) -> None:
    a = touch(tmp_path / "d" / "b.wav")
    b = touch(tmp_path / "d" / "a.MP3")
    touch(tmp_path / "d" / "notes.txt")  # not audio: a folder leaves it out
    touch(tmp_path / "d" / ".hidden.wav")
    c = touch(tmp_path / "d" / "sub" / "c.flac")
    got = expand_inputs([str(tmp_path / "d"), str(tmp_path / "d" / "**" / "*.flac"), str(a)])
    assert got == [b, a, c]  # a named again is kept once


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.wav", "missing.wav: no such file or folder"),
        ("*.ogg", "matches no file"),
        ("empty", "holds no audio files"),
    ],
)
def test_an_input_that_names_nothing_is_refused(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=message):
        expand_inputs([str(tmp_path / name)])
    with pytest.raises(ConfigError, match="no input given"):
        expand_inputs([])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ray", "nowhere"], "expected local, auto, HOST:PORT"),
        (["--ray", "host:99999"], "expected local, auto, HOST:PORT"),
        (["--ray", f"127.0.0.1:{_free_port()}"], "cannot reach the Ray cluster at 127.0.0.1:"),
        (["--ray", "auto", "--jobs", "2"], "--jobs does not apply with --ray"),
        (["--actors", "2"], "--actors applies only with --ray"),
        (["--ray", "auto", "--format", "txt", "missing/*.wav"], "matches no file"),
    ],
)
def test_the_cli_refuses_what_cannot_work_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    wav = touch(tmp_path / "a.wav")
    args = ["transcribe", "-o", str(tmp_path / "out"), *flags]
    if not any("*" in f for f in flags):
        args.append(str(wav))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err, err


def test_the_index_keeps_every_field(tmp_path: Path) -> None:
    outcomes = [
        FileOutcome("a.wav", "done", None, 1, 2.5, "en", "out/a.txt", 0.4, "node1"),
        FileOutcome("b.wav", "failed", "b.wav: cannot be read as audio", 2),
    ]
    assert read_index(write_index(outcomes, tmp_path / "index.parquet")) == outcomes
    assert [p.name for p in tmp_path.iterdir()] == ["index.parquet"]  # no temporary left


def test_the_worker_retries_a_failed_file_and_renders_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    pa = pytest.importorskip("pyarrow")
    monkeypatch.setenv("AUDIOTOTEXT_HOME", str(shared_model_cache()))
    speech = SpeechSynthesizer(shared_speech_dir()).speak("The red boat was there.").audio
    good = write_wav(tmp_path / "good.wav", speech, 16_000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    settings = WorkerSettings(
        model="tiny.en",
        fmt="txt",
        cpus=2,
        precision="int8",
        options=TranscribeOptions(beam_size=1),
        retries=2,
    )
    worker = BulkWorker(settings)
    assert worker.transcriber is not None and worker.jobs == 2
    assert worker.transcriber.model.config.intra_op_threads == 1
    rows = worker(pa.table({"path": [str(bad), str(good)]})).to_pylist()
    assert [r["path"] for r in rows] == [str(bad), str(good)]
    failed, done = rows
    assert failed["status"] == "failed" and failed["attempts"] == 3
    assert "bad.wav" in failed["error"] and failed["document"] is None
    assert done["status"] == "done" and done["attempts"] == 1 and done["error"] is None
    assert "red boat" in done["document"].lower() and done["language"] == "en"


def test_a_worker_that_cannot_load_its_model_fails_each_file_with_the_reason(
    tmp_path: Path,
) -> None:
    pa = pytest.importorskip("pyarrow")
    # An empty cache (conftest) and an unreachable Hub: base.en cannot be had.
    worker = BulkWorker(WorkerSettings(model="base.en", fmt="txt", cpus=1, retries=1))
    assert worker.transcriber is None and worker.load_error is not None
    rows = worker(pa.table({"path": [str(tmp_path / "a.wav")]})).to_pylist()
    assert rows[0]["status"] == "failed" and rows[0]["attempts"] == 2
    assert rows[0]["error"].startswith("cannot load base.en on node ")
