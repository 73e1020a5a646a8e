"""Which finals are due, which are decoded speculatively, and which speculation a final uses.

A final is decoded *speculatively* as soon as a pause holds its tail (the VAD's tentative end
plus ``final_tail_ms`` and the speculation pause), before the endpoint silence confirms it.
If the endpoint then reports that same end, the speculation is the final; if the speaker goes
on, it is void (stopped on its lane when every stream of its batch went on). A final's audio
is fixed by the VAD's end, so the result is the same either way, only sooner.

No threads or I/O: the worker asks, hands the jobs to lanes and reports what came back; the
clock is passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from audiototext.audio import SAMPLE_RATE_HZ
from audiototext.streaming._lanes import FinalBatch, FinalJob
from audiototext.streaming._load import LoadMonitor
from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.state import PendingFinal, Speculation, StreamSchedule
from audiototext.streaming.stream import RecognitionStream

__all__ = ["FinalPlanner"]

# Least speculation pause with several streams open: speculations voided by dips inside
# sentences then take CPU from the other streams.
SHARED_PAUSE_MS = 100


class FinalPlanner:
    """Finals and speculative finals of every stream; counts what speculation saved or wasted."""

    def __init__(
        self,
        options: RecognizerOptions,
        load: LoadMonitor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._load = load
        self._clock = clock
        self.speculations_used = 0
        self.speculations_wasted = 0
        self.speculations_cancelled = 0

    # ---- finals

    @staticmethod
    def final_ready(stream: RecognitionStream) -> bool:
        """Its oldest ended utterance can be handed out: nothing of it is on a lane."""
        sched = stream.schedule
        return (
            bool(stream.pending_finals)
            and not sched.final_in_flight
            and sched.speculation_in_flight is None
        )

    def take_speculation(self, schedule: StreamSchedule, final: PendingFinal) -> Speculation | None:
        """The stream's speculation if it was decoded on exactly ``final``'s audio (it is taken
        out of ``schedule`` either way: an endpoint voids any other)."""
        spec = schedule.speculation
        if spec is None:
            return None
        schedule.speculation = None
        audio = (final.utterance_id, final.start, final.stop)
        if (spec.utterance_id, spec.start, spec.stop) != audio:
            self.speculations_wasted += 1
            return None
        self.speculations_used += 1
        return spec

    # ---- speculative finals

    def due_speculations(
        self, streams: Sequence[RecognitionStream], idle_threads: int
    ) -> list[FinalJob]:
        """Finals worth decoding now: utterances in a pause that already holds their tail."""
        o = self.options
        if not o.speculative_finals or not self._load.speculation_allowed():
            return []
        pause = o.speculation_pause_ms
        if len(streams) > 1:
            pause = max(pause, SHARED_PAUSE_MS)
        tail = (o.final_tail_ms + pause) * SAMPLE_RATE_HZ // 1000
        reduced = self._load.speculations_reduced(len(streams))
        jobs: list[FinalJob] = []
        for s in streams:
            utt = s.utterance
            stop = s.tentative_end
            if utt is None or stop is None or s.pending_finals or s.finishing:
                continue
            sched = s.schedule
            if sched.speculation_in_flight is not None:
                continue  # one at a time per stream (they share its word-timing record)
            spec = sched.speculation
            if spec is not None and spec.utterance_id == utt.utterance_id and spec.stop == stop:
                continue  # this pause's final is decoded already
            if s.vad_position < stop + tail:
                continue
            pending = PendingFinal(
                utterance_id=utt.utterance_id,
                start=utt.start,
                stop=max(stop, utt.start),
                triggered_at=self._clock(),
                committed_tokens=tuple(utt.agreement.committed_tokens),
                committed_text=utt.committed_text,
                shown_text=utt.shown_text,
                last_partial_at=utt.last_partial_at,
            )
            jobs.append(FinalJob(s, pending, speculative=True, reduced=reduced))
        # Speculations due together beyond the idle lanes are reduced as such finals are:
        # streams opened together pause together, and their first finals are the costliest.
        if jobs and not reduced and self._load.reduce_finals(len(jobs), len(streams), idle_threads):
            for job in jobs:
                job.reduced = True
        return jobs

    def keep_speculation(self, job: FinalJob, decoded: str) -> None:
        """Store a decoded speculation until its endpoint comes (or the speaker goes on)."""
        sched = job.session.schedule
        if sched.speculation is not None:
            self.speculations_wasted += 1  # the speaker went on after the earlier pause
        f = job.final
        sched.speculation = Speculation(
            f.utterance_id,
            f.start,
            f.stop,
            decoded,
            job.audio_start,
            began_at=job.began_at,
            cpu_s=job.cpu_s,
            reduced=job.reduced,
            decode_s=job.decode_s,
            batch=job.batch,
        )

    @staticmethod
    def is_void(job: FinalJob) -> bool:
        """Whether the speaker made a speculation void by talking on (or left)."""
        s = job.session
        f = job.final
        if s.closed:
            return True
        if s.pending_finals:
            first = s.pending_finals[0]
            return (first.utterance_id, first.stop) != (f.utterance_id, f.stop)
        utt = s.utterance
        if utt is None or utt.utterance_id != f.utterance_id:
            return True
        return s.tentative_end != f.stop

    def to_cancel(self, in_flight: Sequence[FinalBatch]) -> list[FinalBatch]:
        """Speculation batches whose every stream talked on: their text can never be used,
        so stopping them changes no result and frees their lane."""
        return [b for b in in_flight if not b.cancel and all(self.is_void(j) for j in b.jobs)]
