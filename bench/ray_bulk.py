"""Bulk throughput on Ray Data (1 and 2 actors) against the single-process CLI, same files.

    python bench/ray_bulk.py [--runs 3] [--repeat 1] [--beam-size 1]

The fables corpus (bench/corpus.py, 12 espeak-ng WAVs per ``--repeat``), tiny.en int8. A
two-node Ray cluster on this machine (tests/support/ray_cluster.py: ``ray start --head`` plus
a second node, 2 logical CPUs each) is started once before the rounds, as a running cluster
would be. Per round, in rotating order, each as a command from process start to exit (model
loads included, the actors' too):

* cli: ``audiototext transcribe`` (its default plan: one file per core, 1 thread each);
* ray1: ``audiototext transcribe --ray ADDRESS --actors 1`` (one actor of 2 CPUs);
* ray2: ``--actors 2`` (two actors of 2 CPUs, one per node).

Prints each run's audio hours per hour (audio seconds / wall seconds), the medians, and
ray1/cli, ray2/cli. Transcripts are compared too (they must be the same bytes). Notes:
bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src"), str(ROOT / "bench")]

from corpus import build_corpus  # noqa: E402
from support.model_fixtures import tiny_en_cache  # noqa: E402
from support.ray_cluster import ray_cluster  # noqa: E402

CODE = "import sys; from audiototext.cli import main; sys.exit(main(sys.argv[1:]))"


def run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CODE, *args], env=env, capture_output=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args} failed:\n{done.stderr.decode()[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="corpus copies (12 files each)")
    parser.add_argument("--beam-size", type=int, default=1)
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ray-bulk-"))
    clips = build_corpus(ROOT / ".cache" / "bench-corpus", repeat=opts.repeat)
    audio_s = sum(c.duration_s for c in clips)
    files = [str(c.path) for c in clips]
    env = {
        **os.environ,
        "AUDIOTOTEXT_HOME": str(tiny_en_cache()),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    common = ["transcribe", "--precision", "int8", "--beam-size", str(opts.beam_size)]
    load = os.getloadavg()
    print(f"{len(files)} files, {audio_s:.0f} s of audio; load average before: {load}")
    try:
        rates = measure(work, files, audio_s, env, common, opts.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"median audio hours per hour: cli {med['cli']:.1f}, ray1 {med['ray1']:.1f}, "
        f"ray2 {med['ray2']:.1f}; ray1/cli {med['ray1'] / med['cli']:.2f}, "
        f"ray2/cli {med['ray2'] / med['cli']:.2f}; load average after: {os.getloadavg()}"
    )


def measure(
    work: Path, files: list[str], audio_s: float, env: dict[str, str], common: list[str], runs: int
) -> dict[str, list[float]]:
    """Audio seconds per wall second of each kind, ``runs`` rounds in rotating order."""
    with ray_cluster(env, nodes=2, cpus_per_node=2) as cluster:
        kinds = {
            "cli": (common, env),
            "ray1": ([*common, "--ray", cluster.address, "--actors", "1"], cluster.env),
            "ray2": ([*common, "--ray", cluster.address, "--actors", "2"], cluster.env),
        }
        rates: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        for r in range(runs):
            order = names[r % 3 :] + names[: r % 3]
            for kind in order:
                args, kind_env = kinds[kind]
                out = work / f"{kind}-{r}"
                wall = run([*args, "-o", str(out), *files], kind_env)
                rates[kind].append(audio_s / wall)
                print(f"round {r + 1} {kind}: wall {wall:.1f} s, {audio_s / wall:.1f} audio h/h")
            reference = {p.name: p.read_bytes() for p in (work / f"cli-{r}").glob("*.txt")}
            for kind in ("ray1", "ray2"):
                got = {p.name: p.read_bytes() for p in (work / f"{kind}-{r}").glob("*.txt")}
                assert got == reference, f"{kind} transcripts differ from the CLI's"
    return rates


if __name__ == "__main__":
    main()
