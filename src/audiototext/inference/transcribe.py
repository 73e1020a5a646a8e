"""File transcription: the public API over the seek loop, alone, side by side or batched.

A :class:`Transcriber` holds one loaded model. Each input is read in 30-s chunks
(:mod:`audiototext.audio.chunks`), optionally reduced to its speech
(:mod:`audiototext.audio.speech_only`), turned into log-mel features one block at a time
(:mod:`audiototext.audio.feature_stream`), and decoded window by window by Whisper's seek loop
(:mod:`audiototext.inference.seek`), so a 3-hour file never sits in memory.

With ``TranscribeOptions.batch_size`` above 1, one input is instead cut at pauses into chunks
of speech of up to 28 s, decoded ``batch_size`` at a time (:mod:`audiototext.inference.batched`).

Several inputs can be transcribed together in two ways:

* :meth:`Transcriber.transcribe_each` runs ``jobs`` inputs at once, each on its own thread with
  its own seek loop (:mod:`audiototext.inference.parallel`). Every result is exactly what
  :meth:`Transcriber.transcribe` gives for that input alone.
* :meth:`Transcriber.transcribe_batch` decodes the inputs' current windows as one batch (on a
  CPU they are encoded one at a time: no slower, and the int8 encoder's activation scales,
  one per block of frames across the batch, then stay each window's own). The int8 decoder
  quantises activations per tensor, so a row's result can still depend on the other rows of
  its batch: words may differ from transcribing the input alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.chunks import chunks_between, input_chunks
from audiototext.audio.decode import AudioSource
from audiototext.audio.feature_stream import BLOCK_S, FeatureStream
from audiototext.audio.pauses import SPLIT_MIN_PART_S, split_at_pauses
from audiototext.audio.speech_chunks import BATCH_VAD, SpeechChunker
from audiototext.audio.speech_only import TRANSCRIBE_VAD, TimeMap, speech_only
from audiototext.audio.vad import SileroVad
from audiototext.errors import AudioToTextError, ConfigError
from audiototext.inference.alignment import Word
from audiototext.inference.batched import BatchedRun, run_batches
from audiototext.inference.options import TranscribeOptions
from audiototext.inference.ort_session import Device, OrtConfig
from audiototext.inference.parallel import (
    InputProgressCallback,
    each_in_threads,
    split_and_rejoin,
)
from audiototext.inference.results import FileResult, Segment
from audiototext.inference.seek import Job, ProgressCallback, Transcription, run_windows
from audiototext.inference.whisper import WhisperModel

__all__ = [
    "BLOCK_S",
    "SPLIT_MIN_PART_S",
    "TRANSCRIBE_VAD",
    "FileResult",
    "InputProgressCallback",
    "ProgressCallback",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "Transcription",
    "Word",
    "split_at_pauses",
]


class Transcriber:
    """A loaded model and everything needed to transcribe with it; share one per process.

    ``Transcriber.load("tiny.en")`` takes the model from the cache, converting it first if it
    is missing (offline for tiny.en, from the packaged weights).
    """

    def __init__(self, model: WhisperModel) -> None:
        self.model = model
        self._vad: SileroVad | None = None
        self._vad_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        name: str = "tiny.en",
        *,
        precision: str = "auto",
        device: Device = "auto",
        threads: int | None = None,
        cache_root: Path | None = None,
    ) -> Transcriber:
        from audiototext.hardware import detect, pick_precision
        from audiototext.models.cache import ModelCache
        from audiototext.models.registry import resolve
        from audiototext.models.versions import PRECISIONS

        cache = ModelCache(cache_root)
        prec = pick_precision(detect(), device) if precision == "auto" else precision
        # A model already in the cache is used without loading the manager: huggingface_hub
        # and onnx are memory a transcription never needs (bench/NOTES.md); pull() does the
        # same lookup otherwise.
        cached = cache.entries(resolve(name).name, prec) if prec in PRECISIONS else []
        if cached:
            entry = cached[0]
        else:
            from audiototext.models.manager import pull, resolve_precision

            entry = pull(name, precision=resolve_precision(prec, device), cache=cache).entry
        # No spinning: a file's windows are long runs back to back, and a busy machine's
        # spinning pool costs more than the wake-ups it saves (OrtConfig.spinning).
        config = OrtConfig(device=device, intra_op_threads=threads, spinning=False)
        return cls(WhisperModel(entry.path, config))

    # ---- entry points ---------------------------------------------------------------------

    def transcribe(
        self,
        audio: AudioSource | NDArray[np.floating],
        options: TranscribeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Transcription:
        """Transcribe a file (path, bytes, file object) or 16 kHz mono samples, lazily.

        Raises :class:`~audiototext.errors.AudioError` for input that cannot be decoded (at the
        first ``next()`` for files, as decoding is streamed).
        """
        opts = options or TranscribeOptions()
        if opts.batch_size > 1:
            run = self._batched_run(audio, opts)
            return Transcription(run_batches(self.model, run, opts, progress), run)
        job = self._job(0, audio, opts)
        return Transcription(self._drive([job], opts, progress), job)

    def transcribe_each(
        self,
        inputs: Sequence[AudioSource | NDArray[np.floating]],
        options: TranscribeOptions | None = None,
        *,
        jobs: int = 1,
        progress: InputProgressCallback | None = None,
    ) -> Iterator[FileResult]:
        """Transcribe each input on its own, ``jobs`` at a time; yield each as it finishes.

        Each input's segments are exactly those :meth:`transcribe` gives for it alone. A single
        input with ``jobs`` > 1 is instead cut at pauses (:func:`split_at_pauses`) into ``jobs``
        parts of at least :data:`SPLIT_MIN_PART_S` seconds, transcribed side by side and
        rejoined (times are the input's); each part starts without the previous text as prompt,
        so words near a cut may differ from one pass over the whole input. An input
        that cannot be read yields a result with ``error`` set and the others go on. With
        ``jobs`` > 1 results come in the order they finish (``FileResult.index`` says which
        input), and the model should have been loaded with ``threads`` = cores / ``jobs``: the
        jobs' ONNX Runtime calls then run side by side instead of competing for one pool.

        ``progress(index, seconds_done)`` is called from the job's thread as windows finish.
        """
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        opts = options or TranscribeOptions()
        self.check_options(opts)  # a bad option fails once, before any input is read
        if opts.vad or opts.batch_size > 1:
            self._ensure_vad()  # created once, not raced for by the jobs
        if len(inputs) == 1 and jobs > 1:
            if opts.batch_size > 1:
                raise ConfigError(
                    f"a single input is either cut into {jobs} parts done side by side (jobs) "
                    f"or into chunks decoded {opts.batch_size} at a time (batch_size), not "
                    "both: batching alone already keeps the cores busy"
                )
            source = inputs[0]
            yield split_and_rejoin(
                source,
                jobs,
                lambda: self._transcribe_one(0, source, opts, progress),
                # Parts share one block's memory between them: peak RSS stays flat in length.
                lambda span, callback: self._transcribe_part(
                    source, opts, span, callback, BLOCK_S / jobs
                ),
                progress,
            )
            return
        if jobs == 1 or len(inputs) <= 1:
            for index, source in enumerate(inputs):
                yield self._transcribe_one(index, source, opts, progress)
            return
        yield from each_in_threads(
            inputs, jobs, lambda index, source: self._transcribe_one(index, source, opts, progress)
        )

    def _transcribe_one(
        self,
        index: int,
        source: AudioSource | NDArray[np.floating],
        opts: TranscribeOptions,
        progress: InputProgressCallback | None,
    ) -> FileResult:
        started = time.perf_counter()
        callback: ProgressCallback | None = None
        if progress is not None:

            def callback(done_s: float) -> None:
                progress(index, done_s)

        try:
            transcription = self.transcribe(source, opts, progress=callback)
            segments = list(transcription)
        except AudioToTextError as exc:
            return FileResult(index, [], None, 0.0, time.perf_counter() - started, exc)
        return FileResult(
            index,
            segments,
            transcription.language,
            transcription.audio_s,
            time.perf_counter() - started,
        )

    def _transcribe_part(
        self,
        source: AudioSource | NDArray[np.floating],
        opts: TranscribeOptions,
        span: tuple[int, int | None],
        progress: ProgressCallback,
        block_s: float,
    ) -> Transcription:
        job = self._job(0, source, opts, span, block_s)
        return Transcription(self._drive([job], opts, progress), job)

    def _ensure_vad(self) -> SileroVad:
        with self._vad_lock:
            if self._vad is None:
                self._vad = SileroVad()
            return self._vad

    def transcribe_batch(
        self,
        inputs: Sequence[AudioSource | NDArray[np.floating]],
        options: TranscribeOptions | None = None,
    ) -> list[list[Segment]]:
        """Transcribe several inputs together, their windows encoded and decoded as batches
        (the seek loop of each; ``options.batch_size`` is for one long input and must be 1)."""
        opts = options or TranscribeOptions()
        if opts.batch_size > 1:
            raise ConfigError(
                "transcribe_batch already batches its inputs' windows; batch_size (chunks of "
                "one input decoded together) applies to transcribe and transcribe_each"
            )
        jobs = [self._job(i, a, opts) for i, a in enumerate(inputs)]
        out: list[list[Segment]] = [[] for _ in jobs]
        for job_index, segment in run_windows(self.model, jobs, opts, None):
            out[job_index].append(segment)
        return out

    def check_options(self, options: TranscribeOptions) -> str | None:
        """The language ``options`` will decode in (None: detected per input).

        Raises:
            ConfigError: the language is not one the model knows, or the model is English-only
                and the options ask for another language or for translation.
        """
        tok = self.model.tokenizer
        language = options.language
        if not tok.multilingual:
            name = self.model.path.name
            if language not in (None, "en"):
                raise ConfigError(
                    f"this model ({name}) is English-only: it cannot transcribe language "
                    f"{language!r}; use a multilingual model (e.g. tiny) or ask for 'en' or no "
                    "language"
                )
            if options.task == "translate":
                raise ConfigError(
                    f"this model ({name}) is English-only: it cannot translate; use a "
                    "multilingual model (e.g. tiny) to translate"
                )
            return "en"
        if language is not None and language not in tok.languages:
            raise ConfigError(
                f"unknown language {language!r}; this model knows "
                f"{', '.join(sorted(tok.languages))}"
            )
        return language

    # ---- internals ------------------------------------------------------------------------

    def _job(
        self,
        index: int,
        audio: AudioSource | NDArray[np.floating],
        opts: TranscribeOptions,
        span: tuple[int, int | None] | None = None,
        block_s: float | None = None,
    ) -> Job:
        language = self.check_options(opts)
        chunks = input_chunks(audio)
        if span is not None:
            chunks = chunks_between(chunks, *span)
        time_map = None
        if opts.vad:
            time_map = TimeMap()
            vad_options = opts.vad_options or TRANSCRIBE_VAD
            chunks = speech_only(chunks, self._ensure_vad(), vad_options, time_map, block_s)
        stream = FeatureStream(chunks, self.model.n_mels, self.model.window_frames, block_s)
        job = Job(index, stream, time_map, opts, language)
        if opts.initial_prompt:
            job.all_tokens.extend(self.model.tokenizer.encode(" " + opts.initial_prompt.strip()))
        return job

    def _batched_run(
        self, audio: AudioSource | NDArray[np.floating], opts: TranscribeOptions
    ) -> BatchedRun:
        language = self.check_options(opts)
        chunker = SpeechChunker(
            input_chunks(audio), self._ensure_vad(), opts.vad_options or BATCH_VAD
        )
        run = BatchedRun(chunker, language)
        if opts.initial_prompt:
            run.prompt_tokens = self.model.tokenizer.encode(" " + opts.initial_prompt.strip())
        return run

    def _drive(
        self, jobs: list[Job], opts: TranscribeOptions, progress: ProgressCallback | None
    ) -> Iterator[Segment]:
        for _, segment in run_windows(self.model, jobs, opts, progress):
            yield segment
