"""``audiototext transcribe``: transcribe audio files to txt, json, srt or vtt.

Each file gets a progress bar (seconds of audio done) and a summary line with the audio length,
the wall time and the real-time factor. A file that cannot be read is reported in one line and
the others are still transcribed; the exit status is 1 if any file failed.

On a CPU, several files are transcribed at once (``--jobs``, default: one per physical core),
each with its share of the threads: a Whisper decoding step is too small to keep two cores busy,
so files side by side finish sooner than one after the other, with the same text. For the same
reason a single long file is cut at pauses into parts done side by side (one per core, each at
least ``SPLIT_MIN_PART_S`` long); ``--jobs 1`` keeps one pass over it.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from pathlib import Path
from typing import Any

from audiototext.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT_CHOICES = ("txt", "json", "srt", "vtt")


def register(sub: Any) -> None:
    """Add the ``transcribe`` command to the CLI's sub-parsers."""
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio or video files (wav, flac, mp3, ogg/opus, m4a, webm, ...).",
    )
    p.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="audio or video files; with --ray also folders and glob patterns",
    )
    p.add_argument(
        "--model", default="tiny.en", help="model name (default: tiny.en, works offline)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "int8", "fp16"], default="auto")
    p.add_argument("--beam-size", type=_positive_int, default=5, help="1 = greedy (fastest)")
    p.add_argument("--vad", action="store_true", help="skip silence with Silero VAD first")
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default=1,
        metavar="N",
        help="cut a long file at pauses into chunks of speech of up to 28 s and decode N "
        "chunks at a time (Silero VAD implied): faster on long files, but no chunk sees the "
        "text before it (default: 1, one 30-s window after the other, each prompted with the "
        "text before it)",
    )
    p.add_argument("--word-timestamps", action="store_true", help="time every word (json output)")
    p.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    p.add_argument("--language", default=None, help="language code; default (or auto): detect")
    p.add_argument("--format", choices=FORMAT_CHOICES, default="txt", dest="fmt")
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path("."),
        help="folder for the transcripts (default: .)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="inference threads in all (default: physical cores); with --ray: CPUs per "
        "actor, one file each (default: 2)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=None,
        help="files transcribed at once, sharing the threads; a single file is cut at pauses "
        "into up to N parts of 1 min or more, done side by side (default on CPU: one file or "
        "part per physical core; 1 on GPU; --jobs 1: one pass over a single file)",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="transcribe on a Ray cluster with Ray Data: local (a private instance on this "
        "machine), auto (the cluster this machine joined), HOST:PORT or ray://HOST:PORT; "
        "writes an index.parquet beside the transcripts (needs audiototext[ray])",
    )
    p.add_argument(
        "--actors",
        type=_positive_int,
        default=None,
        help="with --ray: actors, one model each (default: as many as the cluster's CPUs hold)",
    )
    p.add_argument(
        "--retries",
        type=_non_negative_int,
        default=1,
        help="with --ray: times a failed file is tried again (default: 1)",
    )
    p.set_defaults(func=_run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _batch_size(text: str) -> int:
    from audiototext.inference.options import MAX_BATCH_SIZE

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of chunks from 1 to {MAX_BATCH_SIZE}, got {text!r}"
        ) from None
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of chunks from 1 to {MAX_BATCH_SIZE}, got {text!r}"
            + (
                f": more than {MAX_BATCH_SIZE} chunks at once are no faster and hold an "
                "encoder output each in memory"
                if value > MAX_BATCH_SIZE
                else ""
            )
        )
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
    return value


def _probe_duration_s(path: Path) -> float | None:
    """The duration the file declares, for the progress bar; None when unknown or unreadable."""
    from audiototext.audio.decode import declared_duration_s

    return declared_duration_s(path)


def _show_progress(bar: Any, tasks: list[Any], index: int, done_s: float) -> None:
    bar.update(tasks[index], completed=done_s, visible=True)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from audiototext.cli_bulk import transcribe_options
    from audiototext.inference import Transcriber
    from audiototext.inference.ort_session import CPU_PROVIDER
    from audiototext.models.cache import entry_precision
    from audiototext.store.exports import write_transcript
    from audiototext.store.outputs import check_output_dir, output_paths, transcript_metadata

    if args.ray is not None:
        from audiototext.cli_bulk import run_bulk

        return run_bulk(args)
    if args.actors is not None:
        raise ConfigError("--actors applies only with --ray ADDRESS")
    console = Console(stderr=True)
    check_output_dir(args.output)
    options = transcribe_options(args)
    if options.batch_size > 1 and (args.jobs or 1) > 1 and len(args.files) == 1:
        raise ConfigError(
            "--jobs and --batch-size both speed up a single long file; choose one "
            "(--batch-size alone already keeps the cores busy)"
        )

    paths = [Path(name) for name in args.files]
    out_paths = output_paths(paths, args.output, args.fmt)
    durations = [(_probe_duration_s(p) if p.is_file() else None) for p in paths]
    jobs, threads = _plan_jobs(args, durations, batched=options.batch_size > 1)

    started = time.perf_counter()
    transcriber = Transcriber.load(
        args.model, precision=args.precision, device=args.device, threads=threads
    )
    load_s = time.perf_counter() - started
    transcriber.check_options(options)  # e.g. --task translate on an English-only model
    model = transcriber.model
    precision = entry_precision(model.path) or model.path.name
    if model.providers[0] != CPU_PROVIDER:
        jobs = 1  # one accelerator: files side by side would only queue on it
    console.print(
        f"[dim]{args.model} ({precision}) on {model.providers[0]}"
        f" loaded in {load_s:.1f} s"
        + (
            f"; {jobs} {'files at a time' if len(paths) > 1 else 'parts side by side'}, "
            f"{threads} thread(s) each"
            + (" (--jobs 1: one pass)" if len(paths) == 1 and args.jobs is None else "")
            if jobs > 1
            else ""
        )
        + "[/dim]"
    )

    failures = 0
    total_audio = 0.0
    run_started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.fields[total_label]} s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks = []
        for path, duration in zip(paths, durations, strict=True):
            tasks.append(
                bar.add_task(
                    path.name,
                    total=duration,
                    total_label=f"{duration:.0f}" if duration else "?",
                    visible=False,  # shown once its file is under way
                )
            )
        # Longest first, so the last file to finish does not start when the others are done.
        order = list(range(len(paths)))
        if jobs > 1:
            order.sort(key=lambda i: -(d if (d := durations[i]) is not None else float("inf")))
        results = transcriber.transcribe_each(
            [paths[i] for i in order],
            options,
            jobs=jobs,
            progress=functools.partial(_show_progress, bar, [tasks[i] for i in order]),
        )
        for result in results:
            index = order[result.index]
            bar.remove_task(tasks[index])
            path, out_path = paths[index], out_paths[index]
            if result.error is not None:
                failures += 1
                console.print(f"[red]error[/red] {result.error}")
                continue
            metadata = transcript_metadata(path, args.model, result.language, result.audio_s)
            try:
                write_transcript(result.segments, out_path, args.fmt, metadata=metadata)
            except OSError as exc:
                failures += 1
                console.print(f"[red]error[/red] cannot write {out_path}: {exc.strerror or exc}")
                continue
            total_audio += result.audio_s
            rtf = result.wall_s / result.audio_s if result.audio_s > 0 else 0.0
            console.print(
                f"{path.name}: audio {result.audio_s:.1f} s, wall {result.wall_s:.1f} s, "
                f"real-time factor {rtf:.3f} → {out_path} ({len(result.segments)} segments)"
            )
    total_wall = time.perf_counter() - run_started
    if len(paths) > 1 and total_audio > 0:
        console.print(
            f"total: audio {total_audio:.1f} s, wall {total_wall:.1f} s, "
            f"real-time factor {total_wall / total_audio:.3f}"
        )
    if failures:
        print(f"error: {failures} of {len(paths)} file(s) failed", file=sys.stderr)
        return 1
    return 0


def _plan_jobs(
    args: argparse.Namespace, durations: list[float | None], *, batched: bool = False
) -> tuple[int, int | None]:
    """(files or parts at a time, intra-op threads each) from --jobs, --threads, the cores and,
    for a single file, its declared duration (unknown: one pass)."""
    from audiototext.audio.pauses import parts_that_fit
    from audiototext.inference.ort_session import CPU_PROVIDER, choose_providers, default_threads

    total = args.threads or default_threads()
    n_files = len(durations)
    if args.jobs is not None:
        jobs = args.jobs if n_files == 1 else min(args.jobs, n_files)
    elif choose_providers(args.device)[0] != CPU_PROVIDER:
        jobs = 1
    elif n_files > 1:
        jobs = min(n_files, total)
    elif batched or durations[0] is None:
        jobs = 1  # --batch-size already keeps the cores busy; an unknown length is not cut
    else:
        jobs = parts_that_fit(durations[0], total)
    if jobs <= 1:
        return 1, args.threads
    return jobs, max(1, total // jobs)
