"""``audiototext transcribe``: transcribe audio files to txt, json, srt or vtt.

Each file gets a progress bar (seconds of audio done) and a summary line with the audio length,
the wall time and the real-time factor. A file that cannot be read is reported in one line and
the others are still transcribed; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from audiototext.errors import AudioToTextError, ConfigError

log = logging.getLogger(__name__)

FORMAT_CHOICES = ("txt", "json", "srt", "vtt")


def register(sub: Any) -> None:
    """Add the ``transcribe`` command to the CLI's sub-parsers."""
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files",
        description="Transcribe audio or video files (wav, flac, mp3, ogg/opus, m4a, webm, ...).",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--model", default="tiny.en", help="model name (default: tiny.en, works offline)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    p.add_argument("--precision", choices=["auto", "fp32", "int8", "fp16"], default="auto")
    p.add_argument("--beam-size", type=_positive_int, default=5, help="1 = greedy (fastest)")
    p.add_argument("--vad", action="store_true", help="skip silence with Silero VAD first")
    p.add_argument("--word-timestamps", action="store_true", help="time every word (json output)")
    p.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    p.add_argument("--language", default=None, help="language code; default: detect")
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
        help="inference threads (default: physical cores)",
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


def _check_output_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the output folder {folder}: {exc.strerror or exc}"
        ) from exc
    if not folder.is_dir():
        raise ConfigError(f"the output path {folder} is not a folder")
    probe = folder / f".audiototext-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the output folder {folder}: {exc.strerror or exc}"
        ) from exc


def _probe_duration_s(path: Path) -> float | None:
    """The duration the file declares, for the progress bar; None when unknown or unreadable."""
    from audiototext.audio.decode import declared_duration_s

    return declared_duration_s(path)


def _show_progress(bar: Any, task: Any, done_s: float) -> None:
    bar.update(task, completed=done_s)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from audiototext.inference import TranscribeOptions, Transcriber
    from audiototext.store.exports import write_transcript

    console = Console(stderr=True)
    _check_output_dir(args.output)
    try:
        options = TranscribeOptions(
            language=args.language,
            task=args.task,
            beam_size=args.beam_size,
            vad=args.vad,
            word_timestamps=args.word_timestamps,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc

    started = time.perf_counter()
    transcriber = Transcriber.load(
        args.model, precision=args.precision, device=args.device, threads=args.threads
    )
    load_s = time.perf_counter() - started
    transcriber.check_options(options)  # e.g. --task translate on an English-only model
    model = transcriber.model
    console.print(
        f"[dim]{args.model} ({model.path.name}) on {model.providers[0]}"
        f" loaded in {load_s:.1f} s[/dim]"
    )

    failures = 0
    total_audio = total_wall = 0.0
    for name in args.files:
        path = Path(name)
        duration = _probe_duration_s(path) if path.is_file() else None
        out_path = args.output / f"{path.stem or path.name}.{args.fmt}"
        t0 = time.perf_counter()
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.fields[total_label]} s"),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task(
                    path.name, total=duration, total_label=f"{duration:.0f}" if duration else "?"
                )
                transcription = transcriber.transcribe(
                    path,
                    options,
                    progress=functools.partial(_show_progress, bar, task),
                )
                segments = list(transcription)
            audio_s = transcription.audio_s
            metadata = {
                "file": str(path),
                "model": args.model,
                "language": transcription.language,
                "duration_s": round(audio_s, 3),
            }
            write_transcript(segments, out_path, args.fmt, metadata=metadata)
        except AudioToTextError as exc:
            failures += 1
            console.print(f"[red]error[/red] {exc}")
            continue
        except OSError as exc:
            failures += 1
            console.print(f"[red]error[/red] cannot write {out_path}: {exc.strerror or exc}")
            continue
        wall = time.perf_counter() - t0
        total_audio += audio_s
        total_wall += wall
        rtf = wall / audio_s if audio_s > 0 else 0.0
        console.print(
            f"{path.name}: audio {audio_s:.1f} s, wall {wall:.1f} s, real-time factor {rtf:.3f}"
            f" → {out_path} ({len(segments)} segments)"
        )
    if len(args.files) > 1 and total_audio > 0:
        console.print(
            f"total: audio {total_audio:.1f} s, wall {total_wall:.1f} s, "
            f"real-time factor {total_wall / total_audio:.3f}"
        )
    if failures:
        print(f"error: {failures} of {len(args.files)} file(s) failed", file=sys.stderr)
        return 1
    return 0
