"""Several transcriptions side by side: inputs on a thread each, or one input cut at pauses.

On a CPU this is the fast way to do many files: one decoder step is too small to keep two
cores busy (a second intra-op thread mostly spins), so two files on one thread each finish
sooner than one after the other on two threads (bench/NOTES.md, "several files at once").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.decode import AudioSource
from audiototext.audio.features import SAMPLE_RATE_HZ
from audiototext.audio.pauses import split_at_pauses
from audiototext.errors import AudioToTextError
from audiototext.inference.results import FileResult, Segment, shifted
from audiototext.inference.seek import ProgressCallback, Transcription

__all__ = ["InputProgressCallback", "each_in_threads", "split_and_rejoin"]

InputProgressCallback = Callable[[int, float], None]
Source = AudioSource | NDArray[np.floating]
Span = tuple[int, int | None]  # samples [start, end) of an input; end None: to its end


def each_in_threads(
    inputs: Sequence[Source], jobs: int, one: Callable[[int, Source], FileResult]
) -> Iterator[FileResult]:
    """``one(index, input)`` for every input, ``jobs`` at a time, each on a thread of its own;
    results in the order they finish. Nothing new starts once the consumer stops early."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="transcribe") as pool:
        pending: set[Future[FileResult]] = {
            pool.submit(one, index, source) for index, source in enumerate(inputs)
        }
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: f.result().index):
                    yield future.result()
        finally:  # the consumer stopped early or an input raised: start nothing new
            for future in pending:
                future.cancel()


def split_and_rejoin(
    source: Source,
    jobs: int,
    whole: Callable[[], FileResult],
    part: Callable[[Span, ProgressCallback], Transcription],
    progress: InputProgressCallback | None,
) -> FileResult:
    """One input cut at pauses into ``jobs`` parts, transcribed side by side, rejoined.

    ``part(span, progress)`` transcribes one part; ``whole()`` the input when it is too short
    to cut. Segments come back in the input's times, numbered from 0.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    try:
        cuts = split_at_pauses(source, jobs)
    except AudioToTextError as exc:
        return FileResult(0, [], None, 0.0, time.perf_counter() - started, exc)
    if not cuts:
        return whole()
    ends: list[int | None] = [*cuts, None]
    spans = list(zip([0, *cuts], ends, strict=True))
    done = [0.0] * len(spans)
    lock = threading.Lock()

    def run(index: int) -> tuple[list[Segment], Transcription]:
        def callback(done_s: float) -> None:
            with lock:
                done[index] = done_s
                total = sum(done)
            if progress is not None:
                progress(0, total)

        transcription = part(spans[index], callback)
        return list(transcription), transcription

    try:
        # The first part runs on the calling thread, which would only wait: one thread fewer.
        with ThreadPoolExecutor(
            max_workers=len(spans) - 1, thread_name_prefix="transcribe"
        ) as pool:
            others = pool.map(run, range(1, len(spans)))
            parts = [run(0), *others]
    except AudioToTextError as exc:
        return FileResult(0, [], None, 0.0, time.perf_counter() - started, exc)
    segments: list[Segment] = []
    for (start, _), (found, _) in zip(spans, parts, strict=True):
        offset = start / SAMPLE_RATE_HZ
        for segment in found:
            segments.append(shifted(segment, offset, len(segments)))
    return FileResult(
        0,
        segments,
        parts[0][1].language,
        sum(t.audio_s for _, t in parts),
        time.perf_counter() - started,
    )
