"""``audiototext transcribe --ray`` on a two-node Ray cluster against the single-process CLI.

One cluster for the module (``ray start --head`` plus a second node, two CPUs each, on this
machine: tests/support/ray_cluster.py), tiny.en int8 greedy, 50 espeak-ng clips and one
corrupt file. Marked ``ray``: ``-m "not ray"`` skips it locally; CI runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiototext.bulk import read_index
from audiototext.cli import main
from inference.models_support import shared_model_cache
from support.fixture_cache import shared_speech_dir
from support.ray_cluster import RayCluster, ray_available, ray_cluster
from support.speech import SpeechSynthesizer, espeak_available, write_wav

pytestmark = pytest.mark.ray

SRC = Path(__file__).resolve().parents[2] / "src"
CLIPS = 50
_COLOURS = ("red", "green", "blue", "yellow", "white")
_THINGS = ("boat", "house", "garden", "letter", "window", "horse", "bridge", "lamp", "road", "cup")


def sentences() -> list[str]:
    return [
        f"The {colour} {thing} was there on day {n + 1}."
        for n, (colour, thing) in enumerate((c, t) for c in _COLOURS for t in _THINGS)
    ][:CLIPS]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("bulk-inputs")
    speaker = SpeechSynthesizer(shared_speech_dir())
    for n, text in enumerate(sentences()):
        write_wav(folder / f"clip{n:02d}.wav", speaker.speak(text).audio, 16_000)
    # A WAV header over bytes that are no audio at all: decoding fails, the run goes on.
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + os.urandom(4000))
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **os.environ,
        "AUDIOTOTEXT_HOME": str(shared_model_cache(tmp_path_factory)),
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "400",
    }


@pytest.fixture(scope="module")
def cluster(env: dict[str, str]) -> Iterator[RayCluster]:
    if not ray_available():
        pytest.skip("ray is not installed (pip install 'audiototext[ray]')")
    with ray_cluster(env, nodes=2, cpus_per_node=2) as running:
        yield running


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import sys; from audiototext.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "transcribe",
            "--precision",
            "int8",
            "--beam-size",
            "1",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_every_transcript_equals_the_single_process_cli(
    cluster: RayCluster,
    inputs: Path,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = sorted(inputs.glob("*.wav"))
    reference = tmp_path / "reference"
    monkeypatch.setenv("AUDIOTOTEXT_HOME", env["AUDIOTOTEXT_HOME"])
    monkeypatch.setenv("COLUMNS", "400")
    cli_args = ["--precision", "int8", "--beam-size", "1", "--format", "json"]
    assert main(["transcribe", *cli_args, "-o", str(reference), *map(str, files)]) == 1

    out = tmp_path / "ray"
    run = cli(
        "--format", "json", "--ray", cluster.address, "-o", str(out), str(inputs), env=cluster.env
    )  # fmt: skip

    assert run.returncode == 1, run.stderr
    assert "1 of 51 file(s) failed" in run.stderr
    assert f"{inputs / 'corrupt.wav'}: " in run.stderr  # the list at the end names it
    assert "50 of 51 file(s) transcribed on 2 actor(s) of 2 CPU(s) (2 node(s))" in run.stderr
    clips = [f for f in files if f.name != "corrupt.wav"]
    assert len(clips) == CLIPS
    for clip in clips:
        expected = (reference / f"{clip.stem}.json").read_bytes()
        assert (out / f"{clip.stem}.json").read_bytes() == expected, clip.name
    assert not (out / "corrupt.json").exists()

    index = {Path(o.file).name: o for o in read_index(out / "index.parquet")}
    assert sorted(index) == sorted(f.name for f in files)
    bad = index.pop("corrupt.wav")
    assert bad.status == "failed" and bad.attempts == 2 and bad.output is None
    assert bad.error is not None and "corrupt.wav" in bad.error and "audio" in bad.error
    assert all(o.status == "done" and o.error is None and o.attempts == 1 for o in index.values())
    assert all(o.language == "en" and (o.duration_s or 0) > 1 for o in index.values())
    assert {o.output for o in index.values()} == {str(out / f"{c.stem}.json") for c in clips}
    assert len({o.node for o in index.values()}) == 2  # both nodes did some


def test_actors_that_cannot_load_the_model_fail_every_file_and_say_why(
    cluster: RayCluster, inputs: Path, tmp_path: Path
) -> None:
    # base.en is not in the cluster's cache and the Hub is unreachable (conftest's
    # HF_ENDPOINT): every actor's model load fails, so no file can be done.
    clips = [str(p) for p in sorted(inputs.glob("clip0[0-3].wav"))]
    out = tmp_path / "out"
    run = cli(
        "--model", "base.en", "--ray", cluster.address, "-o", str(out), *clips, env=cluster.env
    )
    assert run.returncode == 1, run.stderr
    assert "4 of 4 file(s) failed" in run.stderr
    index = read_index(out / "index.parquet")
    assert [Path(o.file).name for o in index] == [Path(c).name for c in clips]
    assert all(o.status == "failed" and o.error for o in index)
    assert "base.en" in (index[0].error or ""), index[0].error
