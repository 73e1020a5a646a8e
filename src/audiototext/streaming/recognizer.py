"""The streaming recognizer: one shared model, many streams, a worker thread and two lanes.

The worker thread (never the event loop) runs in rounds. It reads every stream's audio (VAD)
and hands all decoding to two lane threads (one per core), so a final's decoding never
delays the VAD of the other streams, and applies what the lanes bring back. A round:

1. every stream's queued audio goes through its VAD, up to the next utterance end;
2. ended utterances get their finals, oldest first, split over the idle lanes, each share
   decoded as one batch (finals always come first; those no lane can take wait for one);
3. speculative finals take an idle lane;
4. streams whose speech has grown by the partial interval get a partial, batched likewise,
   on an idle lane but never the last one (kept for the next final).

Partials encode only the audio of the utterance so far and are decoded greedily with the
committed words forced as a prefix. Finals (``_final.py``) depend on the utterance's audio
alone, not on chunk boundaries nor on what partials committed (unless
``final_keeps_committed``).

The decisions are plain objects with no threads, each testable by calling it: ``_load``
(load, reduced finals, overload), ``_lanes`` (which lane takes what), ``_partials`` and
``_final_plan`` (when partials, finals and speculations are due). Streams are data the
recognizer decodes (``session.py``, ``state.py``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Awaitable, Generator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from audiototext.audio import SAMPLE_RATE_HZ, SileroVad
from audiototext.inference.ort_session import OrtConfig
from audiototext.inference.whisper import WhisperModel
from audiototext.streaming._decode import DecodingCancelled
from audiototext.streaming._final import FinalDecoder, FinalRequest
from audiototext.streaming._final_plan import FinalPlanner
from audiototext.streaming._lanes import (
    DecodeLane,
    FinalBatch,
    FinalJob,
    LaneBatch,
    LaneDispatcher,
    PartialBatch,
)
from audiototext.streaming._language import check_model, initial_prompt, prompt_tokens
from audiototext.streaming._load import LoadMonitor
from audiototext.streaming._merge import merge_committed
from audiototext.streaming._partial_decode import PartialDecoder
from audiototext.streaming._partials import PartialPlanner
from audiototext.streaming._swap import ModelSwap, SwapDone
from audiototext.streaming._trace import FinalTrace
from audiototext.streaming.checkpoint import StreamCheckpoint, restore_checkpoint, take_checkpoint
from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.stream import RecognitionStream, stream_detector
from audiototext.streaming.types import (
    EngineStats,
    OverloadedError,
    StreamOptions,
    StreamResult,
)

__all__ = ["FinalTrace", "RecognizerOptions", "StreamingRecognizer", "merge_committed"]

log = logging.getLogger(__name__)

_LANES = 2  # decoding threads beside the worker: one per core of the target machine


class _Done:
    """An already finished awaitable, for :meth:`StreamingRecognizer.close` outside a loop."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


class StreamingRecognizer:
    """Shared model and scheduler for many :class:`RecognitionStream` objects.

    Build with :meth:`load` (model from the cache) or from a loaded
    :class:`~audiototext.inference.whisper.WhisperModel`.
    """

    def __init__(
        self,
        model: WhisperModel,
        options: RecognizerOptions | None = None,
        *,
        model_name: str | None = None,
        vad: SileroVad | None = None,
    ) -> None:
        self.model = model
        self.options = options or RecognizerOptions()
        self.model_name = model_name
        self._vad = vad or SileroVad()
        self.final_decoder = FinalDecoder(model, self.options.final_settings())
        self.load_monitor = LoadMonitor(self.options)
        self.dispatcher = LaneDispatcher()
        self.partial_planner = PartialPlanner(self.options, self.load_monitor)
        self.final_planner = FinalPlanner(self.options, self.load_monitor)
        self.partial_decoder = PartialDecoder(
            model, self.options, self.partial_planner, self._prompt
        )
        self._cv = threading.Condition()
        self._sessions: dict[int, RecognitionStream] = {}
        self._next_id = 0
        self._closing = False
        self._stopped = threading.Event()
        # Counters (worker writes, stats() reads; ints are safe enough).
        self._cpu: dict[str, float] = {}  # worker CPU seconds per phase, since the start
        self._partials_skipped = 0
        self._finals_reduced = 0
        self._finals_full = 0
        self._speculating: list[FinalBatch] = []  # speculation batches on the lanes
        self._swap = ModelSwap()  # new sessions (threads) waiting for a round boundary
        # The last emitted finals, how they were made (read by benchmarks).
        self.final_trace: collections.deque[FinalTrace] = collections.deque(maxlen=10_000)
        self._lanes = (
            [DecodeLane(self._compute_lane, self._wake) for _ in range(_LANES)]
            if self.options.partial_lane
            else []
        )
        self._worker = threading.Thread(target=self._run, name="audiototext-stream", daemon=True)
        self._worker.start()

    @classmethod
    def load(
        cls,
        name: str = "tiny.en",
        options: RecognizerOptions | None = None,
        *,
        precision: str = "auto",
        threads: int | None = None,
        cache_root: Path | None = None,
    ) -> StreamingRecognizer:
        """Take ``name`` from the model cache (pulling it first if missing) and start.

        ``threads`` (ONNX Runtime intra-op threads) defaults to the physical cores shared out
        over the threads that decode at the same time (the worker or its lanes), so that
        they do not take each other's cores.
        """
        from audiototext.models import ModelCache, pull
        from audiototext.models.manager import resolve_precision

        entry = pull(
            name, precision=resolve_precision(precision), cache=ModelCache(cache_root)
        ).entry
        threads = threads or (options or RecognizerOptions()).lane_threads()
        model = WhisperModel(entry.path, OrtConfig(device="cpu", intra_op_threads=threads))
        return cls(model, options, model_name=name)

    # ------------------------------------------------------------------ public API

    def open(
        self, options: StreamOptions | None = None, *, restore: StreamCheckpoint | None = None
    ) -> RecognitionStream:
        """A new session (``restore``: one that carries on from a checkpoint);
        :class:`OverloadedError` when at capacity or behind real time."""
        opts = options or StreamOptions()
        check_model(self.model.tokenizer, self.model_name, opts)
        prompt = prompt_tokens(self.model, opts.prompt)
        with self._cv:
            if self._closing:
                raise OverloadedError("the recognizer is shutting down")
            if len(self._sessions) >= self.options.max_sessions:
                raise OverloadedError(
                    f"all {self.options.max_sessions} streams are in use; retry later"
                )
            if self.load_monitor.overloaded(bool(self._sessions)):
                raise OverloadedError(
                    "compute cannot keep up with the open streams in real time; retry later"
                )
            # One utterance (at most max_segment_s) plus the context around it.
            ring_s = (
                opts.max_segment_s
                + (2 * self.options.context_pad_ms + opts.prefix_padding_ms) / 1000
                + 5.0
            )
            detector = stream_detector(self._vad, opts)
            session = RecognitionStream(self._wake, self._next_id, opts, detector, ring_s)
            session.prompt_tokens = prompt
            if restore is not None:
                restore_checkpoint(session, restore)
            self._sessions[session.id] = session
            self._next_id += 1
            self._cv.notify()
        return session

    def close(self) -> Awaitable[None]:
        """Finalise every open session and stop the worker.

        Inside an event loop the returned task completes once all finals are out (await it or
        not: the work starts either way); outside one, the call blocks until done.
        """
        with self._cv:
            self._closing = True
            sessions = list(self._sessions.values())
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            for s in sessions:
                s.request_finish()
            self._wake()
            self._worker.join()
            return _Done()
        return asyncio.ensure_future(self._aclose(sessions))

    async def _aclose(self, sessions: Sequence[RecognitionStream]) -> None:
        await asyncio.gather(*(s.finish() for s in sessions))
        self._wake()
        await asyncio.get_running_loop().run_in_executor(None, self._worker.join)

    @property
    def threads(self) -> int:  # ONNX Runtime intra-op threads of the sessions (per lane)
        return self.model.threads

    def build_threads(self, threads: int) -> WhisperModel:  # new sessions; blocking, any thread
        return self.model.with_threads(threads)

    def swap_model(self, model: WhisperModel) -> Future[SwapDone]:
        """Decode with ``model`` from the next round whose lanes are all idle (``_swap``)."""
        done = self._swap.request(model)
        self._wake()
        return done

    def stats(self) -> EngineStats:
        with self._cv:
            sessions = list(self._sessions.values())
        queue = sum(len(s.pending_finals) + (1 if s.has_input() else 0) for s in sessions)
        load = self.load_monitor
        plan = self.final_planner
        return EngineStats(
            active_sessions=len(sessions),
            queue_depth=queue,
            rtf=load.rtf(),
            final_latency_ms_p50=1000 * load.latency_percentile(0.5),
            final_latency_ms_p95=1000 * load.latency_percentile(0.95),
            overloaded=load.overloaded(bool(self._sessions)),
            partial_interval_scale=load.partial_scale,
            partials_skipped=self._partials_skipped,
            speculative_finals_used=plan.speculations_used,
            speculative_finals_wasted=plan.speculations_wasted,
            speculative_finals_cancelled=plan.speculations_cancelled,
            partial_batches_cancelled=self.partial_decoder.cancelled,
            finals_reduced=self._finals_reduced,
            finals_full=self._finals_full,
            worker_cpu_s=self._cpu_totals(),
        )

    # ------------------------------------------------------------------ helpers

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _cpu_totals(self) -> dict[str, float]:
        totals = dict(self._cpu)
        for lane in self._lanes:
            for kind, seconds in lane.cpu_s.items():
                totals[kind] = totals.get(kind, 0.0) + seconds
        return totals

    def _charge(self, phase: str, since: float) -> float:
        """Add the worker's CPU time since ``since`` to ``phase``; returns the time now."""
        now = time.thread_time()
        self._cpu[phase] = self._cpu.get(phase, 0.0) + now - since
        return now

    def _idle_lanes(self) -> list[DecodeLane]:
        if self._swap.pending:  # no new lane work until the swap (next idle boundary)
            return []
        return [lane for lane in self._lanes if not lane.busy]

    def _idle_threads(self) -> int:
        """Decoders free to take a final now: the idle lanes, or the worker itself."""
        return len(self._idle_lanes()) if self._lanes else 1

    def _prompt(self, s: RecognitionStream) -> list[int]:
        return initial_prompt(self.model.tokenizer, s)

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        try:
            while True:
                self._swap.at_boundary(self, self._lanes)
                with self._cv:
                    sessions = list(self._sessions.values())
                    if self._closing and not sessions:
                        return
                    lane_done = any(lane.has_result() for lane in self._lanes)
                    free = not self._lanes or any(not lane.busy for lane in self._lanes)
                    if not lane_done and not any(self._has_work(s, free) for s in sessions):
                        self._cv.wait(timeout=0.05)
                        continue
                self._round(sessions)
        except Exception:  # a bug here would silently hang every stream: make it loud
            log.exception("the streaming worker failed; ending all sessions")
            with self._cv:
                for s in self._sessions.values():
                    s.end()
                self._sessions.clear()
        finally:
            self._swap.cancel("the recognizer stopped before its sessions could be swapped")
            for lane in self._lanes:
                lane.stop()
            self._stopped.set()

    @staticmethod
    def _has_work(s: RecognitionStream, lane_free: bool = True) -> bool:
        sched = s.schedule
        if sched.final_in_flight or (sched.speculation_in_flight is not None and s.pending_finals):
            # Nothing to do until the lane brings the final (or the speculation that may be
            # it) back; it wakes the worker. Its audio after the utterance waits for that.
            return s.closed
        if s.pending_finals and not lane_free:
            # Its final waits for a lane (a finishing lane wakes the worker).
            return s.closed
        return s.closed or s.has_input() or bool(s.pending_finals) or s.finishing

    def _round(self, sessions: list[RecognitionStream]) -> None:
        began = time.monotonic()
        audio_before = sum(s.vad_position for s in sessions)
        self.load_monitor.observe_lag([s.inbox_samples for s in sessions])
        cpu = time.thread_time()
        for s in sessions:
            if s.closed:
                self._drop(s)
                continue
            s.ingest()
        cpu = self._charge("vad", cpu)
        live = [s for s in sessions if not s.closed]
        for batch in self.final_planner.to_cancel(self._speculating):
            batch.cancel = True
        cpu = self._take_lanes(cpu)
        finals: list[FinalJob] = []
        for s in live:
            if not self.final_planner.final_ready(s):
                continue
            final = s.pending_finals[0]
            spec = self.final_planner.take_speculation(s.schedule, final)
            if spec is None:
                finals.append(FinalJob(s, final))
            else:
                job = FinalJob(
                    s,
                    final,
                    audio_start=spec.audio_start,
                    reduced=spec.reduced,
                    began_at=spec.began_at,
                    cpu_s=spec.cpu_s,
                    decode_s=spec.decode_s,
                    batch=spec.batch,
                )
                self._deliver_final(job, spec.text, speculated=True)
        if self._lanes and not self._idle_lanes():
            if finals:  # their lane takes them as soon as its partials stop
                in_flight = [lane.current for lane in self._lanes if lane.busy]
                for partials in self.dispatcher.partials_to_stop(in_flight):
                    partials.cancel = True
            finals = []  # they wait for a lane (decided then: reduced or not)
        if finals and self.load_monitor.reduce_finals(len(finals), len(live), self._idle_threads()):
            for job in finals:
                job.reduced = True
            self.load_monitor.finals_reduced()
        finals = self._hand_out_finals(finals)
        if finals:
            self._decode_finals_here(finals)
            cpu = self._charge("finals", cpu)
        due = self.final_planner.due_speculations(live, self._idle_threads())
        speculative = self._hand_out_speculations(due)
        if speculative:
            self._decode_finals_here(speculative)
            cpu = self._charge("speculative", cpu)
        cpu = self._partials_round(live, cpu)
        for s in live:
            if s.finishing and not s.pending_finals and not s.has_input():
                self._retire(s)
            else:
                s.mark_idle_if_done()
        audio_after = sum(s.vad_position for s in sessions)
        self.load_monitor.record_round(
            began,
            (audio_after - audio_before) / SAMPLE_RATE_HZ,
            [lane.busy_wall for lane in self._lanes],
        )

    def _drop(self, s: RecognitionStream) -> None:
        with self._cv:
            self._sessions.pop(s.id, None)
        s.end()

    def _retire(self, s: RecognitionStream) -> None:
        with self._cv:
            self._sessions.pop(s.id, None)
        s.retire()

    # ---- lanes

    def _take_lanes(self, cpu: float) -> float:
        """Apply what the lanes finished: partials, or finals handed to them."""
        for lane in self._lanes:
            done = lane.take()
            if isinstance(done, PartialBatch):
                self._partials_skipped += self.partial_decoder.apply(done)
                cpu = self._charge("partials", cpu)
            elif isinstance(done, FinalBatch):
                self._apply_final_batch(done)
                cpu = self._charge("finals", cpu)
        return cpu

    def _apply_final_batch(self, done: FinalBatch) -> None:
        if done in self._speculating:
            self._speculating.remove(done)
        if done.cancelled:
            self.final_planner.speculations_cancelled += len(done.jobs)
        failed = len(done.texts) != len(done.jobs)
        texts = [""] * len(done.jobs) if failed else done.texts
        for job, request, text in zip(done.jobs, done.requests, texts, strict=True):
            job.session.schedule.final_in_flight = False
            job.session.schedule.speculation_in_flight = None
            if failed and job.speculative:
                continue  # no speculation: the final is decoded when its endpoint comes
            job.audio_start = self.final_decoder.own_start(request)
            job.cpu_s = done.cpu_s / len(done.jobs)
            job.decode_s = done.decode_s
            self._settle_final(job, text)

    def _hand_out_finals(self, finals: list[FinalJob]) -> list[FinalJob]:
        """Give finals to the idle lanes; returns those the worker decodes (without lanes)."""
        if not self._lanes:
            return finals
        idle = self._idle_lanes()
        shares = self.dispatcher.hand_out_finals(finals, len(idle))
        for lane, share in zip(idle, shares, strict=False):  # fewer shares than lanes: fine
            for job in share:
                job.session.schedule.final_in_flight = True
            self._submit_finals(share, lane)
        return []

    def _hand_out_speculations(self, jobs: list[FinalJob]) -> list[FinalJob]:
        """Give speculations to the idle lanes (none idle: a later round, while the pause
        lasts); returns those the worker decodes (without lanes)."""
        if not self._lanes or not jobs:
            return jobs
        idle = self._idle_lanes()
        for lane, share in zip(idle, self.dispatcher.split(jobs, len(idle)), strict=False):
            for job in share:
                job.session.schedule.speculation_in_flight = (
                    job.final.utterance_id,
                    job.final.stop,
                )
            self._speculating.append(self._submit_finals(share, lane))
        return []

    def _submit_finals(self, jobs: list[FinalJob], lane: DecodeLane) -> FinalBatch:
        self._hand_out(jobs)
        batch = FinalBatch(jobs, [self._final_request(j) for j in jobs])
        lane.submit(batch)
        return batch

    @staticmethod
    def _hand_out(jobs: list[FinalJob]) -> float:
        """Record in ``jobs``' traces that they are decoded from now on, as one batch;
        returns now (monotonic)."""
        now = time.monotonic()
        for job in jobs:
            job.began_at = job.session.vad_position
            job.handed_wall = now
            job.batch = len(jobs)
        return now

    def _final_request(self, job: FinalJob) -> FinalRequest:
        return FinalRequest(
            job.session,
            job.final.utterance_id,
            job.final.start,
            job.final.stop,
            self._prompt(job.session),
            reduced=job.reduced,
        )

    def _compute_lane(self, batch: LaneBatch) -> None:
        """A lane's work; reads streams' rings and final histories only."""
        if isinstance(batch, PartialBatch):
            self.partial_decoder.compute(batch)
            return
        cpu, wall = time.thread_time(), time.monotonic()
        try:
            batch.texts = self.final_decoder.decode(
                batch.requests, self.load_monitor.max_batch(), lambda: batch.cancel
            )
        except DecodingCancelled:
            batch.texts = []
            batch.cancelled = True
        batch.cpu_s = time.thread_time() - cpu
        batch.decode_s = time.monotonic() - wall

    # ---- partials

    def _partials_round(self, live: list[RecognitionStream], cpu: float) -> float:
        """Start the next batch of partials (on a lane, or here without lanes)."""
        if not self._lanes:
            jobs = self.partial_planner.due(live)
            if jobs:
                batch = self.partial_decoder.prepare(jobs)
                self.partial_decoder.compute(batch)
                self._partials_skipped += self.partial_decoder.apply(batch)
                cpu = self._charge("partials", cpu)
            return cpu
        idle = self._idle_lanes()
        if self.dispatcher.partials_may_start(len(idle)):
            jobs = self.partial_planner.due(live)
            if jobs:
                idle[0].submit(self.partial_decoder.prepare(jobs))
                cpu = self._charge("partials", cpu)
        return cpu

    # ---- finals

    def _decode_finals_here(self, jobs: list[FinalJob]) -> None:
        """Decode finals (or speculations) on the worker: the mode without lanes."""
        requests = [self._final_request(j) for j in jobs]
        now = self._hand_out(jobs)
        cpu = time.thread_time()
        texts = self.final_decoder.decode(requests, self.load_monitor.max_batch())
        cpu = time.thread_time() - cpu
        wall = time.monotonic() - now
        for job, request, text in zip(jobs, requests, texts, strict=True):
            job.audio_start = self.final_decoder.own_start(request)
            job.cpu_s = cpu / len(jobs)
            job.decode_s = wall
            self._settle_final(job, text)

    def _settle_final(self, job: FinalJob, decoded: str) -> None:
        """A decoded final: kept until its endpoint if speculative, delivered otherwise."""
        if job.speculative:
            self.final_planner.keep_speculation(job, decoded)
        else:
            self._deliver_final(job, decoded, speculated=False)

    def _deliver_final(self, job: FinalJob, decoded: str, *, speculated: bool) -> None:
        """Send a final out (or nothing, for silence never shown) and record it as context."""
        s = job.session
        f = job.final
        if job.reduced:
            self._finals_reduced += 1
        else:
            self._finals_full += 1
        self.final_trace.append(
            FinalTrace(
                s.id,
                f.utterance_id,
                f.stop,
                job.began_at,
                s.vad_position,
                job.cpu_s,
                speculated,
                job.reduced,
                wait_s=0.0 if speculated else max(0.0, job.handed_wall - f.triggered_at),
                decode_s=job.decode_s,
                batch=job.batch,
            )
        )
        text = (
            merge_committed(f.committed_text, decoded)
            if self.options.final_keeps_committed
            else decoded.strip()
        )
        s.final_done(f)
        self._partials_skipped += self.partial_planner.missed_before(s, f)
        # A final without text is remembered too: the next final's context stops there.
        tokens = self.model.tokenizer.encode(" " + text) if text else []
        self.final_decoder.remember(s, job.audio_start, tokens)
        if not text and not f.shown_text:
            return  # nothing was said and nothing was shown: no result at all
        self.load_monitor.record_final(f.triggered_at, f.speech_end_at)
        if s.keep_checkpoints:
            s.checkpoints[f.utterance_id] = take_checkpoint(s, self.final_decoder.settings)
        s.emit(
            StreamResult(
                utterance_id=f.utterance_id,
                is_final=True,
                text=text,
                stable_text=text,
                stability=1.0,
                start_s=f.start / SAMPLE_RATE_HZ,
                end_s=f.stop / SAMPLE_RATE_HZ,
                audio_processed_s=s.audio_processed_s,
                words=self.final_decoder.words_for(s, f.utterance_id, f.start, f.stop, text),
            )
        )
