"""File transcription: 30-s windows, Whisper's seek logic, streaming with bounded memory.

The window loop is Whisper's (as faster-whisper runs it, so results can be compared token for
token): encode the 30-s window at ``seek``; decode it, prompted with the previous text; cut the
tokens into segments at timestamp pairs; move ``seek`` to the last complete timestamp (or past
the window); skip windows the model judges silent.

Audio is read in 30-s chunks and turned into log-mel features one block (:data:`BLOCK_S`) at a
time, so a 3-hour file never sits in memory. Within a block the spectrogram is normalised as
Whisper does over a whole file (to 8 below its maximum); inputs up to one block long are
therefore processed exactly as faster-whisper processes them, and longer ones differ only in
that this floor is set per block.

Several inputs can be transcribed together in two ways:

* :meth:`Transcriber.transcribe_each` runs ``jobs`` inputs at once, each on its own thread with
  its own seek loop. Every result is exactly what :meth:`Transcriber.transcribe` gives for that
  input alone. On a CPU this is the fast way to do many files: one decoder step is too small to
  keep two cores busy (a second intra-op thread mostly spins), so two files on one thread each
  finish ~30 % sooner than one after the other on two threads (bench/NOTES.md).
* :meth:`Transcriber.transcribe_batch` decodes the inputs' current windows as one batch (on a
  CPU they are encoded one at a time: no slower, and the int8 encoder's activation scales,
  one per block of frames across the batch, then stay each window's own). The int8 decoder
  quantises activations per tensor, so a row's result can still depend on the other rows of
  its batch: words may differ from transcribing the input alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from audiototext._allocator import release_memory, release_memory_if_grown
from audiototext.audio import (
    SAMPLE_RATE_HZ,
    SileroVad,
    VadOptions,
    get_speech_timestamps,
    iter_audio_chunks,
    pad_or_trim,
)
from audiototext.audio.decode import AudioSource
from audiototext.audio.features import HOP_LENGTH_SAMPLES, LogMelBuilder
from audiototext.errors import AudioError, AudioToTextError, ConfigError
from audiototext.inference.alignment import Word, add_word_timestamps
from audiototext.inference.decoding import DecodeResult, DecodingOptions, decode_with_fallback
from audiototext.inference.hallucinations import HALLUCINATION_NO_SPEECH, HALLUCINATIONS
from audiototext.inference.session import Device, SessionConfig
from audiototext.inference.tokenizer import TASKS, TIME_PRECISION_S
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = [
    "BLOCK_S",
    "FileResult",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "Transcription",
    "Word",
]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]
HOP = HOP_LENGTH_SAMPLES
FRAME_S = HOP / SAMPLE_RATE_HZ  # 10 ms per mel frame
BLOCK_S = 300.0  # audio turned into features at once; bounds memory for long files
_CHUNK_S = 30.0
_CHUNK_SAMPLES = round(_CHUNK_S * SAMPLE_RATE_HZ)
# A block of features is followed by a heap trim (release_memory) only from this much audio:
# a short file's chunks are small beside the encoder's working set, which the trim would make
# fault in again (bench/NOTES.md, round 10).
_TRIM_BLOCK_S = 60.0
# transcribe_each splits one input across its jobs only when each part is at least this long:
# shorter files are done before a split would pay for the second part's prompt and encoder.
SPLIT_MIN_PART_S = 120.0
_CONTEXT_FRAMES = 2  # frames of real audio kept before a block so its STFT needs no padding
# Loose settings for finding speech in files (faster-whisper's): keep pauses inside speech.
TRANSCRIBE_VAD = VadOptions(
    min_speech_duration_ms=0, min_silence_duration_ms=2000, speech_pad_ms=400
)


@dataclass(frozen=True)
class Segment:
    """A stretch of transcribed speech; times are seconds from the start of the input."""

    id: int
    start_s: float
    end_s: float
    text: str
    tokens: tuple[int, ...]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float
    words: tuple[Word, ...] | None = None


@dataclass(frozen=True)
class TranscribeOptions:
    """Everything that shapes a transcription. Defaults are Whisper's.

    Attributes:
        language: spoken language code; ``None`` detects it (multilingual models) or means
            English (English-only models).
        task: ``transcribe``, or ``translate`` (to English, multilingual models only).
        beam_size: 1 is greedy search.
        best_of: samples drawn per window when falling back to a temperature above 0.
        temperatures: tried in order until the output is neither repetitive nor improbable.
        compression_ratio_threshold: gzip ratio above which text counts as repetitive.
        log_prob_threshold: average log-probability below which text counts as improbable.
        no_speech_threshold: a window whose no-speech probability is above this and whose text
            is improbable is dropped as silence.
        condition_on_previous_text: prompt each window with the text before it.
        prompt_reset_on_temperature: drop that prompt after a window needed this temperature.
        initial_prompt: text to prompt the first window with (names, spelling, style).
        without_timestamps: decode text only; each window becomes one segment.
        word_timestamps: align each word to the audio (cross-attention DTW).
        vad: skip what Silero VAD finds to be silence before decoding.
        vad_options: how VAD finds speech; ``None`` uses :data:`TRANSCRIBE_VAD`.
        suppress_hallucinations: drop well-known phrases (e.g. "Thank you.") that stand alone in
            a window the model thinks silent (no-speech probability above
            :data:`HALLUCINATION_NO_SPEECH`), and text with no word in it.
    """

    language: str | None = None
    task: str = "transcribe"
    beam_size: int = 5
    best_of: int = 5
    patience: float = 1.0
    length_penalty: float = 1.0
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    prompt_reset_on_temperature: float = 0.5
    initial_prompt: str | None = None
    suppress_blank: bool = True
    suppress_tokens: tuple[int, ...] | None = None  # None: Whisper's non-speech symbols
    without_timestamps: bool = False
    max_initial_timestamp_s: float = 1.0
    max_new_tokens: int | None = None
    word_timestamps: bool = False
    prepend_punctuations: str = "\"'“¿([{-"
    append_punctuations: str = "\"'.。,，!！?？:：”)]}、"
    vad: bool = False
    vad_options: VadOptions | None = None
    suppress_hallucinations: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if not 0.0 <= self.prompt_reset_on_temperature <= 10.0:
            raise ValueError("prompt_reset_on_temperature must be in [0, 10]")
        self.decoding(())  # validates the decoding fields

    def decoding(self, suppress_tokens: tuple[int, ...]) -> DecodingOptions:
        return DecodingOptions(
            beam_size=self.beam_size,
            best_of=self.best_of,
            patience=self.patience,
            length_penalty=self.length_penalty,
            temperatures=tuple(self.temperatures),
            compression_ratio_threshold=self.compression_ratio_threshold,
            log_prob_threshold=self.log_prob_threshold,
            no_speech_threshold=self.no_speech_threshold,
            suppress_blank=self.suppress_blank,
            suppress_tokens=suppress_tokens,
            without_timestamps=self.without_timestamps,
            max_initial_timestamp_s=self.max_initial_timestamp_s,
            max_new_tokens=self.max_new_tokens,
            seed=self.seed,
        )


# --------------------------------------------------------------------------- audio → features


class _TimeMap:
    """Maps times in VAD-filtered audio back to the original (speech spans kept in order)."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int, int]] = []  # (filtered start, original start, length)
        self.original_samples = 0  # of the input read so far, silence included

    def add(self, filtered_start: int, original_start: int, length: int) -> None:
        self._spans.append((filtered_start, original_start, length))

    def span_index(self, t_s: float, *, is_end: bool = False) -> int:
        sample = t_s * SAMPLE_RATE_HZ
        for index, (f0, _, n) in enumerate(self._spans):
            # An end exactly on a span boundary belongs to the span it closes.
            if sample < f0 + n or (is_end and sample <= f0 + n):
                return index
        return len(self._spans) - 1

    def original_s(self, t_s: float, *, is_end: bool = False, span: int | None = None) -> float:
        """Original time of ``t_s``; ``span`` pins the span (a word's ends map through the
        span holding its middle, so a word never straddles the silence that was cut)."""
        if not self._spans:
            return t_s
        f0, o0, _ = self._spans[self.span_index(t_s, is_end=is_end) if span is None else span]
        return (o0 + max(t_s * SAMPLE_RATE_HZ - f0, 0.0)) / SAMPLE_RATE_HZ


def _speech_only(
    chunks: Iterator[FloatArray], vad: SileroVad, options: VadOptions, time_map: _TimeMap
) -> Iterator[FloatArray]:
    """Only the speech of ``chunks``, found block by block so memory stays bounded.

    The chunks are copied into one block buffer, reused from block to block: speech is
    yielded as copies of at most one chunk's length, so nothing downstream holds on to the
    buffer. Memory: the block's audio once (18 MB), one VAD run (~12 MB, mostly ONNX
    Runtime's activations), and the pieces not yet turned into features.
    """
    block_samples = round(BLOCK_S * SAMPLE_RATE_HZ)
    buffer = np.empty(block_samples, dtype=np.float32)
    filled = 0
    original = 0
    filtered = 0

    def speech_of(block: FloatArray) -> Iterator[FloatArray]:
        nonlocal original, filtered
        for span in get_speech_timestamps(block, options, vad=vad):
            time_map.add(
                filtered, original + span.start_sample, span.end_sample - span.start_sample
            )
            filtered += span.end_sample - span.start_sample
            for at in range(span.start_sample, span.end_sample, _CHUNK_SAMPLES):
                yield block[at : min(at + _CHUNK_SAMPLES, span.end_sample)].copy()
        original += block.size
        time_map.original_samples = original

    for chunk in chunks:
        if filled + chunk.size > buffer.size:  # chunks that do not divide a block (rare)
            grown = np.empty(filled + chunk.size, dtype=np.float32)
            grown[:filled] = buffer[:filled]
            buffer = grown
        buffer[filled : filled + chunk.size] = chunk
        filled += chunk.size
        if filled >= block_samples:
            yield from speech_of(buffer[:filled])
            filled = 0
    if filled:
        yield from speech_of(buffer[:filled])


def _input_chunks(audio: AudioSource | NDArray[np.floating]) -> Iterator[FloatArray]:
    if isinstance(audio, np.ndarray):
        return _array_chunks(_clean_array(audio))
    if isinstance(audio, str | os.PathLike) and not Path(audio).exists():
        raise AudioError(f"{os.fspath(audio)}: no such file")
    return iter_audio_chunks(audio, _CHUNK_S)


def _chunks_between(
    chunks: Iterator[FloatArray], start: int, end: int | None
) -> Iterator[FloatArray]:
    """The samples ``[start, end)`` of ``chunks`` (``end`` None: to the end)."""
    position = 0
    for chunk in chunks:
        lo, hi = position, position + chunk.size
        position = hi
        if hi <= start:
            continue
        if end is not None and lo >= end:
            return
        yield chunk[max(0, start - lo) : chunk.size if end is None else min(chunk.size, end - lo)]


def split_at_pauses(
    audio: AudioSource | NDArray[np.floating],
    parts: int,
    *,
    min_part_s: float | None = None,
    search_s: float = 15.0,
) -> list[int]:
    """Sample positions that cut ``audio`` into up to ``parts`` pieces of similar length.

    Each cut is the middle of the longest quiet stretch (300-ms RMS energy near its lowest)
    within ``search_s`` of the even split, so a cut falls in a pause, not in a word. Reads the
    audio once, keeping one RMS value per 10 ms. Fewer cuts when the parts would be shorter
    than ``min_part_s`` (default :data:`SPLIT_MIN_PART_S`); none for a file object (it cannot
    be read twice).
    """
    if parts < 2 or not isinstance(audio, np.ndarray | str | os.PathLike | bytes):
        return []
    hop = HOP
    energies: list[FloatArray] = []
    carry = np.zeros(0, dtype=np.float32)
    for chunk in _input_chunks(audio):
        block = np.concatenate([carry, chunk]) if carry.size else chunk
        whole = block.size // hop * hop
        if whole:
            frames = block[:whole].reshape(-1, hop)
            energies.append(np.sqrt(np.mean(frames * frames, axis=1, dtype=np.float32)))
        carry = block[whole:]
    if not energies:
        return []
    energy = np.concatenate(energies)
    total_s = energy.size * FRAME_S
    shortest = SPLIT_MIN_PART_S if min_part_s is None else min_part_s
    parts = min(parts, int(total_s // shortest))
    if parts < 2:
        return []
    smooth = np.convolve(energy, np.ones(30, dtype=np.float32) / 30, mode="same")
    reach = round(search_s / FRAME_S)
    cuts = []
    for k in range(1, parts):
        target = round(k * energy.size / parts)
        lo, hi = max(0, target - reach), min(energy.size, target + reach)
        cuts.append((lo + _middle_of_longest_quiet(smooth[lo:hi])) * hop)
    return cuts


def _middle_of_longest_quiet(energy: NDArray[np.floating]) -> int:
    """Index in the middle of the longest run of values near ``energy``'s minimum."""
    floor = float(energy.min())
    quiet = energy <= floor + 0.1 * (float(np.median(energy)) - floor) + 1e-7
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.view(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]  # runs [start, end) of quiet values
    longest = int(np.argmax(ends - starts))
    return int(starts[longest] + ends[longest]) // 2


class _FeatureStream:
    """Log-mel frames of an input read chunk by chunk, computed one block at a time.

    Memory: the current block's spectrogram, the chunk being turned into frames (each chunk is
    let go once its frames are computed, so a block's audio is never held whole), and the last
    window of audio, which the next block starts from.
    """

    def __init__(self, chunks: Iterator[FloatArray], n_mels: int, window_frames: int) -> None:
        self._chunks = chunks
        self._n_mels = n_mels
        self._window = window_frames
        self._block_samples = max(round(BLOCK_S * SAMPLE_RATE_HZ), 2 * window_frames * HOP)
        # A block: the carried window and its context, the block proper and one chunk beyond.
        self._expected_block_samples = (
            self._block_samples + (window_frames + 3 * _CONTEXT_FRAMES) * HOP + _CHUNK_SAMPLES
        )
        self._pieces: list[FloatArray] = []  # audio kept for the next block, in order
        self._audio_start = 0  # absolute sample of self._pieces[0][0], a multiple of HOP
        self._mel: FloatArray | None = None
        self._mel_start = 0  # absolute frame of self._mel[:, 0]
        self._usable_end = 0  # absolute frame: frames before it are final
        self._final = False
        self.samples = 0  # samples read so far (the whole input once exhausted)
        self.exhausted = False

    @property
    def content_frames(self) -> int | None:
        return self._usable_end if self._final else None

    def window(self, seek: int) -> tuple[FloatArray, int]:
        """Frames from ``seek``: up to one window, and how many hold content (0 at the end)."""
        if self._mel is None or (not self._final and seek + self._window > self._usable_end):
            self._refill(seek)  # no reference to the old block is held while it runs
        mel = self._mel
        assert mel is not None
        end = min(seek + self._window, self._usable_end)
        if end <= seek:
            return np.zeros((self._n_mels, 0), dtype=np.float32), 0
        local = seek - self._mel_start
        return mel[:, local : local + end - seek], end - seek

    def _read(self) -> FloatArray | None:
        if self.exhausted:
            return None
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.exhausted = True
            return None
        self.samples += chunk.size
        return chunk

    def _refill(self, seek: int) -> FloatArray:
        new_start = (
            max(self._audio_start, (seek - _CONTEXT_FRAMES) * HOP) if seek > _CONTEXT_FRAMES else 0
        )
        carried = _audio_from(self._pieces, self._audio_start, new_start)
        self._pieces = []
        self._mel = None  # release the previous block before computing the next
        # Frames are computed as chunks arrive and each chunk is let go once its frames are
        # done, so the block's audio is never held whole: only the spectrogram, and the tail
        # (one window and its context) that the next block starts from.
        builder = LogMelBuilder(self._n_mels, expected_samples=self._expected_block_samples)
        keep = (self._window + 2 * _CONTEXT_FRAMES + 1) * HOP
        tail: list[FloatArray] = []
        tail_start = new_start  # absolute sample of tail[0][0]
        have = 0

        def take(piece: FloatArray) -> None:
            nonlocal have, tail_start
            builder.add(piece)
            have += piece.size
            tail.append(piece)
            while tail and new_start + have - (tail_start + tail[0].size) >= keep:
                tail_start += tail.pop(0).size

        for piece in carried:
            take(piece)
        del carried
        while have < self._block_samples:
            chunk = self._read()
            if chunk is None:
                break
            take(chunk)
        if not self.exhausted:  # a chunk ending exactly at the block's end: look one ahead
            nxt = self._read()
            if nxt is not None:
                take(nxt)
        base = new_start // HOP
        if self.exhausted:
            # As Whisper: 160 samples of padding, and the last frame is not content.
            self._mel = builder.finish(padding_samples=HOP)
            self._usable_end = base + self._mel.shape[1] - 1
            self._final = True
        else:
            self._mel = builder.finish()
            # The last frames' STFT windows reach past the block; the next block redoes them.
            self._usable_end = base + self._mel.shape[1] - _CONTEXT_FRAMES
            # The next block starts at most one window (and its context) before this one's
            # usable end: only that much audio has to be kept.
            self._audio_start = max(
                new_start, (self._usable_end - self._window - _CONTEXT_FRAMES) * HOP
            )
            assert self._audio_start >= tail_start
            # Copied, so that the chunks they come from are freed.
            self._pieces = [p.copy() for p in _audio_from(tail, tail_start, self._audio_start)]
        self._mel_start = base
        tail.clear()  # the chunks it kept, before the trim below
        if have >= _TRIM_BLOCK_S * SAMPLE_RATE_HZ:
            release_memory()  # a long block's chunks, before the encoder needs the room
        return self._mel


def _audio_from(pieces: list[FloatArray], pieces_start: int, start: int) -> list[FloatArray]:
    """The audio of ``pieces`` (whose first sample is ``pieces_start``) from ``start`` on."""
    out: list[FloatArray] = []
    at = pieces_start
    for piece in pieces:
        end = at + piece.size
        if end > start:
            out.append(piece[max(start - at, 0) :])
        at = end
    return out


def _array_chunks(audio: FloatArray) -> Iterator[FloatArray]:
    step = _CHUNK_SAMPLES
    for i in range(0, audio.shape[0], step):
        yield audio[i : i + step]


def _clean_array(audio: NDArray[np.floating]) -> FloatArray:
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"audio must be 1-D mono samples at 16 kHz, got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError("the audio is empty (0 samples)")
    finite = np.isfinite(samples)
    if not finite.all():
        log.warning("replaced %d NaN/Inf sample(s) with silence", int(samples.size - finite.sum()))
        samples = np.where(finite, samples, np.float32(0.0)).astype(np.float32)
    return samples


# --------------------------------------------------------------------------- one input's state


@dataclass
class _Window:
    mel: FloatArray  # padded to a full window
    seek: int
    segment_size: int


@dataclass
class _Job:
    """The seek loop of one input, driven one window at a time."""

    index: int
    stream: _FeatureStream
    time_map: _TimeMap | None
    options: TranscribeOptions
    language: str | None
    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    seek: int = 0
    segment_id: int = 0
    last_speech_s: float = 0.0
    done: bool = False
    window: _Window | None = None

    def next_window(self, window_frames: int) -> _Window | None:
        if self.done:
            return None
        mel, size = self.stream.window(self.seek)
        if size <= 0:
            self.done = True
            return None
        self.window = _Window(
            pad_or_trim(mel, window_frames).astype(np.float32, copy=False), self.seek, size
        )
        return self.window

    @property
    def processed_s(self) -> float:
        return min(self.seek * FRAME_S, self.stream.samples / SAMPLE_RATE_HZ)


def _next_windows(jobs: list[_Job], window_frames: int) -> list[tuple[_Job, _Window]]:
    """The next window of every job that has one.

    A function of its own so that no local outlives the round: a window left in a local of the
    loop would keep its whole feature block alive while the next block is computed.
    """
    active = []
    for job in jobs:
        window = job.next_window(window_frames)
        if window is not None:
            active.append((job, window))
    return active


# --------------------------------------------------------------------------- the public API


class Transcription(Iterator[Segment]):
    """Segments of one input as they are decoded, plus what was learnt about the input."""

    def __init__(self, segments: Iterator[Segment], job: _Job) -> None:
        self._segments = segments
        self._job = job

    def __iter__(self) -> Transcription:
        return self

    def __next__(self) -> Segment:
        return next(self._segments)

    @property
    def language(self) -> str | None:
        return self._job.language

    @property
    def audio_s(self) -> float:
        """Seconds of audio read so far (the input's duration once iteration has finished)."""
        if self._job.time_map is not None:  # the stream holds only the speech VAD kept
            return self._job.time_map.original_samples / SAMPLE_RATE_HZ
        return self._job.stream.samples / SAMPLE_RATE_HZ

    @property
    def processed_s(self) -> float:
        """Seconds of audio transcribed so far."""
        return self._job.processed_s if not self._job.done else self.audio_s


ProgressCallback = Callable[[float], None]
InputProgressCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class FileResult:
    """One input of :meth:`Transcriber.transcribe_each`, transcribed or failed.

    Attributes:
        index: the input's position in the list given.
        segments: its segments (empty when ``error`` is set).
        language: the language decoded in (detected or given).
        audio_s: seconds of audio read.
        wall_s: seconds from the start of this input to its last segment.
        error: why the input could not be transcribed (unreadable audio, ...), or None.
    """

    index: int
    segments: list[Segment]
    language: str | None
    audio_s: float
    wall_s: float
    error: AudioToTextError | None = None


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
        # A model already in the cache is used without loading the manager (huggingface_hub,
        # onnx: ~19 MB a transcription never needs); pull() does the same lookup otherwise.
        cached = cache.entries(resolve(name).name, prec) if prec in PRECISIONS else []
        if cached:
            entry = cached[0]
        else:
            from audiototext.models.manager import pull, resolve_precision

            entry = pull(name, precision=resolve_precision(prec, device), cache=cache).entry
        return cls(WhisperModel(entry.path, SessionConfig(device=device, intra_op_threads=threads)))

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
        if opts.vad:
            self._ensure_vad()  # created once, not raced for by the jobs
        if len(inputs) == 1 and jobs > 1:
            yield self._transcribe_split(inputs[0], opts, jobs, progress)
            return
        if jobs == 1 or len(inputs) <= 1:
            for index, source in enumerate(inputs):
                yield self._transcribe_one(index, source, opts, progress)
            return
        from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="transcribe") as pool:
            pending: set[Future[FileResult]] = {
                pool.submit(self._transcribe_one, index, source, opts, progress)
                for index, source in enumerate(inputs)
            }
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=lambda f: f.result().index):
                        yield future.result()
            finally:  # the consumer stopped early or an input raised: start nothing new
                for future in pending:
                    future.cancel()

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

    def _transcribe_split(
        self,
        source: AudioSource | NDArray[np.floating],
        opts: TranscribeOptions,
        jobs: int,
        progress: InputProgressCallback | None,
    ) -> FileResult:
        """One input cut at pauses into ``jobs`` parts, transcribed side by side, rejoined."""
        from concurrent.futures import ThreadPoolExecutor

        started = time.perf_counter()
        try:
            cuts = split_at_pauses(source, jobs)
        except AudioToTextError as exc:
            return FileResult(0, [], None, 0.0, time.perf_counter() - started, exc)
        if not cuts:
            return self._transcribe_one(0, source, opts, progress)
        ends: list[int | None] = [*cuts, None]
        spans = list(zip([0, *cuts], ends, strict=True))
        done = [0.0] * len(spans)
        lock = threading.Lock()

        def run(part: int) -> tuple[list[Segment], Transcription]:
            def callback(done_s: float) -> None:
                with lock:
                    done[part] = done_s
                    total = sum(done)
                if progress is not None:
                    progress(0, total)

            job = self._job(0, source, opts, spans[part])
            transcription = Transcription(self._drive([job], opts, callback), job)
            return list(transcription), transcription

        try:
            with ThreadPoolExecutor(
                max_workers=len(spans), thread_name_prefix="transcribe"
            ) as pool:
                parts = list(pool.map(run, range(len(spans))))
        except AudioToTextError as exc:
            return FileResult(0, [], None, 0.0, time.perf_counter() - started, exc)
        segments: list[Segment] = []
        for (start, _), (found, _) in zip(spans, parts, strict=True):
            offset = start / SAMPLE_RATE_HZ
            for segment in found:
                segments.append(_shifted(segment, offset, len(segments)))
        return FileResult(
            0,
            segments,
            parts[0][1].language,
            sum(t.audio_s for _, t in parts),
            time.perf_counter() - started,
        )

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
        """Transcribe several inputs together, their windows encoded and decoded as batches."""
        opts = options or TranscribeOptions()
        jobs = [self._job(i, a, opts) for i, a in enumerate(inputs)]
        out: list[list[Segment]] = [[] for _ in jobs]
        for job_index, segment in self._drive_tagged(jobs, opts, None):
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
    ) -> _Job:
        language = self.check_options(opts)
        chunks = _input_chunks(audio)
        if span is not None:
            chunks = _chunks_between(chunks, *span)
        time_map = None
        if opts.vad:
            time_map = _TimeMap()
            chunks = _speech_only(
                chunks, self._ensure_vad(), opts.vad_options or TRANSCRIBE_VAD, time_map
            )
        stream = _FeatureStream(chunks, self.model.n_mels, self.model.window_frames)
        job = _Job(index, stream, time_map, opts, language)
        if opts.initial_prompt:
            job.all_tokens.extend(self.model.tokenizer.encode(" " + opts.initial_prompt.strip()))
        return job

    def _drive(
        self, jobs: list[_Job], opts: TranscribeOptions, progress: ProgressCallback | None
    ) -> Iterator[Segment]:
        for _, segment in self._drive_tagged(jobs, opts, progress):
            yield segment

    def _drive_tagged(
        self, jobs: list[_Job], opts: TranscribeOptions, progress: ProgressCallback | None
    ) -> Iterator[tuple[int, Segment]]:
        model = self.model
        tok = model.tokenizer
        suppress = (
            tok.default_suppress_tokens()
            if opts.suppress_tokens is None
            else tuple(opts.suppress_tokens)
        )
        dec = opts.decoding(suppress)
        while True:
            active = _next_windows(jobs, model.window_frames)
            if not active:
                break
            cross = model.encode_each(np.stack([w.mel for _, w in active]))
            # Loops below go over the jobs, never bind a window: a window left in a local of
            # this frame would keep its whole feature block alive while the next one is made.
            active_jobs = [job for job, _ in active]
            for row, job in enumerate(active_jobs):
                if job.language is None:
                    job.language = self._detect_language(cross.take([row]))
            prompts = [self._prompt(job, opts) for job in active_jobs]
            results = decode_with_fallback(model, cross, prompts, dec)
            segments: list[tuple[_Job, list[Segment]]] = [
                (job, self._consume(job, window, result, cross, row))
                for row, ((job, window), result) in enumerate(zip(active, results, strict=True))
            ]
            # The window's features and encoder output are not needed any more: drop them
            # before the next window is read and encoded. (Trimming the heap here as well
            # lowered the peak by ~10 MB but cost 4 % of CPU time re-faulting the pages.)
            for job in active_jobs:
                job.window = None
            del active, cross, results
            release_memory_if_grown()
            for job, found in segments:
                for segment in found:
                    yield job.index, segment
                if progress is not None:
                    progress(job.processed_s)

    def _detect_language(self, cross: CrossAttention) -> str:
        tok = self.model.tokenizer
        kv = self.model.decoder_for(cross)
        logits, _ = kv.prefill([[tok.sot]])
        codes = sorted(tok.languages, key=lambda c: tok.languages[c])
        ids = np.asarray([tok.languages[c] for c in codes])
        scores = logits[0, -1, ids].astype(np.float64)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        log.info("detected language %s (p=%.2f)", codes[best], probs[best])
        return codes[best]

    def _prompt(self, job: _Job, opts: TranscribeOptions) -> list[int]:
        tok = self.model.tokenizer
        prompt: list[int] = []
        previous = job.all_tokens[job.prompt_reset_since :]
        if previous:
            # Half the text context at most, so that the window's own text has the other half.
            prompt.append(tok.sot_prev)
            prompt.extend(previous[-(self.model.max_text_tokens // 2 - 1) :])
        prompt.extend(tok.sot_sequence(job.language, opts.task))
        if opts.without_timestamps:
            prompt.append(tok.no_timestamps)
        return prompt

    def _consume(
        self, job: _Job, window: _Window, result: DecodeResult, cross: CrossAttention, row: int
    ) -> list[Segment]:
        opts = job.options
        tok = self.model.tokenizer
        seek = window.seek
        size = window.segment_size
        if opts.no_speech_threshold is not None:
            silent = result.no_speech_prob > opts.no_speech_threshold
            if opts.log_prob_threshold is not None and result.avg_logprob > opts.log_prob_threshold:
                silent = False  # confident text despite the no-speech score
            if silent:
                job.seek = seek + size
                return []
        time_offset = seek * FRAME_S
        pieces, job.seek, single_ending = _split_at_timestamps(
            list(result.tokens), tok.timestamp_begin, time_offset, seek, size
        )
        words_by_piece: list[list[Word]] | None = None
        if opts.word_timestamps:
            words_by_piece, job.last_speech_s = add_word_timestamps(
                self.model,
                cross.take([row]),
                pieces,
                size,
                job.language,
                opts.prepend_punctuations,
                opts.append_punctuations,
                job.last_speech_s,
                time_offset,
            )
            if not single_ending:
                ends = [w[-1].end_s for w in words_by_piece if w]
                if ends and ends[-1] > time_offset:
                    job.seek = round(ends[-1] / FRAME_S)
        if opts.suppress_hallucinations and self._hallucinated(pieces, result, opts):
            log.debug("dropping a likely hallucination at %.1f s: %r", time_offset, result.text)
            pieces = []
        out: list[Segment] = []
        for n, piece in enumerate(pieces):
            text = tok.decode(piece.tokens)
            if piece.start_s == piece.end_s or not text.strip():
                continue
            job.all_tokens.extend(piece.tokens)
            job.segment_id += 1
            words = tuple(words_by_piece[n]) if words_by_piece is not None else None
            start, end = piece.start_s, piece.end_s
            if job.time_map is not None:
                if words:
                    tm = job.time_map
                    words = tuple(
                        replace(
                            w,
                            start_s=round(
                                tm.original_s(
                                    w.start_s, span=tm.span_index((w.start_s + w.end_s) / 2)
                                ),
                                3,
                            ),
                            end_s=round(
                                tm.original_s(
                                    w.end_s, span=tm.span_index((w.start_s + w.end_s) / 2)
                                ),
                                3,
                            ),
                        )
                        for w in words
                    )
                    start, end = words[0].start_s, words[-1].end_s
                else:
                    start = job.time_map.original_s(start)
                    end = job.time_map.original_s(end, is_end=True)
            out.append(
                Segment(
                    id=job.segment_id,
                    start_s=round(start, 3),
                    end_s=round(end, 3),
                    text=text,
                    tokens=tuple(piece.tokens),
                    avg_logprob=result.avg_logprob,
                    no_speech_prob=result.no_speech_prob,
                    compression_ratio=result.compression_ratio,
                    temperature=result.temperature,
                    words=words,
                )
            )
        if (
            not opts.condition_on_previous_text
            or result.temperature > opts.prompt_reset_on_temperature
        ):
            job.prompt_reset_since = len(job.all_tokens)
        return out

    @staticmethod
    def _hallucinated(pieces: list[_Piece], result: DecodeResult, opts: TranscribeOptions) -> bool:
        if not pieces:
            return False
        text = " ".join(result.text.split()).lower()
        # Punctuation alone (" .", " . ." from hum or room noise, often at a raised
        # temperature) has no word in it to keep, whatever the no-speech score.
        if not any(ch.isalnum() for ch in text):
            return True
        # Whisper's stock captions for silence ("You", "Thank you.") come out confidently
        # enough to pass the no-speech test, but alone in a window the model thinks silent.
        return text in HALLUCINATIONS and result.no_speech_prob > HALLUCINATION_NO_SPEECH


@dataclass
class _Piece:
    start_s: float
    end_s: float
    tokens: list[int]


def _split_at_timestamps(
    tokens: list[int], ts_begin: int, time_offset: float, seek: int, size: int
) -> tuple[list[_Piece], int, bool]:
    """Cut a window's tokens at timestamp pairs; the new seek; whether it ended on one timestamp."""
    single_ending = len(tokens) >= 2 and tokens[-2] < ts_begin <= tokens[-1]
    cuts = [i for i in range(1, len(tokens)) if tokens[i] >= ts_begin and tokens[i - 1] >= ts_begin]
    pieces: list[_Piece] = []
    if cuts:
        if single_ending:
            cuts.append(len(tokens))
        last = 0
        for cut in cuts:
            part = tokens[last:cut]
            pieces.append(
                _Piece(
                    time_offset + (part[0] - ts_begin) * TIME_PRECISION_S,
                    time_offset + (part[-1] - ts_begin) * TIME_PRECISION_S,
                    part,
                )
            )
            last = cut
        if single_ending:
            seek += size  # nothing is said after the last timestamp
        else:
            # The text after the last pair is unfinished: decode it again in the next window.
            seek += (tokens[last - 1] - ts_begin) * 2
    else:
        duration = size * FRAME_S
        stamps = [t for t in tokens if t >= ts_begin]
        if stamps and stamps[-1] != ts_begin:
            duration = (stamps[-1] - ts_begin) * TIME_PRECISION_S
        pieces.append(_Piece(time_offset, time_offset + duration, tokens))
        seek += size
    return pieces, seek, single_ending


def _shifted(segment: Segment, offset_s: float, new_id: int) -> Segment:
    """``segment`` of a part that starts ``offset_s`` into its input, renumbered."""
    words = segment.words
    if words is not None:
        words = tuple(
            replace(w, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s) for w in words
        )
    return replace(
        segment,
        id=new_id,
        start_s=segment.start_s + offset_s,
        end_s=segment.end_s + offset_s,
        words=words,
    )


def iter_segments_text(segments: Iterable[Segment]) -> str:
    """The plain text of ``segments``, one line each (a convenience for scripts and tests)."""
    return "\n".join(s.text.strip() for s in segments)
