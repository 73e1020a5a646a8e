"""``audiototext transcribe --ray ADDRESS``: many files on a Ray cluster, rendered for a person.

The work is :func:`audiototext.bulk.transcribe_many`; this module turns the CLI's flags into
its arguments, shows its progress with :class:`~audiototext.cli_progress.RichProgress`, prints
a line per failed file as it happens and a summary, and sets the exit status (1 if any file
failed, with the list).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from audiototext.errors import ConfigError

if TYPE_CHECKING:
    from audiototext.inference import TranscribeOptions

__all__ = ["run_bulk", "transcribe_options"]

# CPUs (and so files side by side) per actor when --threads is not given: two share one
# model's memory, and a 2-CPU node still holds an actor.
DEFAULT_ACTOR_CPUS = 2


def transcribe_options(args: argparse.Namespace) -> TranscribeOptions:
    """The decoding options `transcribe` takes from its flags, with or without --ray."""
    from audiototext.inference import TranscribeOptions
    from audiototext.inference.options import language_of

    try:
        return TranscribeOptions(
            language=language_of(args.language or ""),
            task=args.task,
            beam_size=args.beam_size,
            vad=args.vad,
            word_timestamps=args.word_timestamps,
            batch_size=getattr(args, "batch_size", 1),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def run_bulk(args: argparse.Namespace) -> int:
    from audiototext.bulk import FileOutcome, transcribe_many
    from audiototext.cli_progress import RichProgress

    if args.jobs is not None:
        raise ConfigError(
            "--jobs does not apply with --ray: each actor does one file per CPU it has "
            "(--threads), and --actors sets how many actors"
        )
    options = transcribe_options(args)

    with RichProgress() as progress:
        console = progress.console

        def report(outcome: FileOutcome) -> None:
            if not outcome.ok:
                console.print(f"[red]error[/red] {outcome.error}")

        result = transcribe_many(
            args.files,
            ray_address=args.ray,
            output_dir=args.output,
            fmt=args.fmt,
            model=args.model,
            precision=args.precision,
            device=args.device,
            options=options,
            actors=args.actors,
            cpus_per_actor=args.threads or DEFAULT_ACTOR_CPUS,
            retries=args.retries,
            progress=progress,
            on_file=report,
        )
    done = len(result.outcomes) - len(result.failed)
    rate = result.audio_s / result.wall_s if result.wall_s > 0 else 0.0
    console.print(
        f"{done} of {len(result.outcomes)} file(s) transcribed on {result.actors} actor(s) of "
        f"{result.cpus_per_actor} CPU(s) ({len(result.nodes)} node(s)): audio "
        f"{result.audio_s:.1f} s, wall {result.wall_s:.1f} s, {rate:.1f} s of audio per "
        f"second → {args.output}; index {result.index_path}"
    )
    if result.failed:
        print(
            f"error: {len(result.failed)} of {len(result.outcomes)} file(s) failed:",
            file=sys.stderr,
        )
        for outcome in result.failed:
            error = outcome.error or "unknown error"
            # Decoding errors already start with the file's name.
            line = error if error.startswith(outcome.file) else f"{outcome.file}: {error}"
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0
