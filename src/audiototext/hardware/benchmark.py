"""Time each cached model variant here, within a time budget: the performance profile's data.

Each variant (model, precision) is loaded once per thread count and decodes a synthetic
utterance the way streaming does: a partial every :data:`PARTIAL_STEP_S` of audio as it
grows (its frames plus the partial padding encoded, then greedy decoding), then its final
(all frames plus the final padding, then greedy decoding). The decoder takes
:data:`TOKENS_PER_S` steps per audio second whatever it predicts, so the work does not depend
on the signal: speech-shaped noise is enough. Beam search and context make real finals
dearer; the recommendations leave a margin for that (:mod:`audiototext.hardware.recommend`).

The smallest variants go first, and each gets an equal share of the budget still left; a
variant that cannot get a timed run in before the budget ends is skipped and named.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from audiototext.hardware.profile import Measurement, PerformanceProfile, fingerprint
from audiototext.progress import NullProgress, ProgressSink

if TYPE_CHECKING:
    from audiototext.hardware.detect import HardwareProfile
    from audiototext.inference.whisper import WhisperModel
    from audiototext.models.cache import CacheEntry

__all__ = ["DEFAULT_BUDGET_S", "UTTERANCE_S", "run_benchmark", "thread_counts"]

DEFAULT_BUDGET_S = 45.0  # doctor --benchmark stays under a minute with start-up included
UTTERANCE_S = 4.0  # a typical spoken sentence
PARTIAL_STEP_S = 0.5  # the default partial interval (StreamOptions.partial_interval_ms)
TOKENS_PER_S = 3.5  # English speech: about 2.7 words a second, 1.3 tokens a word
MAX_RUNS = 5  # timed runs of one variant at most; the median is kept
_RATE = 16_000


def thread_counts(usable_cores: int, max_threads: int | None = None) -> tuple[int, ...]:
    """Thread counts to time, most first: every core, half of them, one."""
    top = max(1, min(usable_cores, max_threads or usable_cores))
    return tuple(sorted({top, max(1, top // 2), 1}, reverse=True))


def _utterance_mel(n_mels: int) -> np.ndarray:
    """Log-mel of :data:`UTTERANCE_S` of noise shaped like speech (syllable-rate envelope) and
    of the padding after it, computed once per mel size."""
    from audiototext.audio.features import log_mel_spectrogram
    from audiototext.streaming.options import RecognizerOptions

    rng = np.random.default_rng(0)
    n = int(UTTERANCE_S * _RATE)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * np.arange(n) / _RATE)
    audio = (rng.standard_normal(n) * 0.1 * envelope).astype(np.float32)
    pad = int(RecognizerOptions().final_padding_s * _RATE)
    return log_mel_spectrogram(np.concatenate([audio, np.zeros(pad, np.float32)]), n_mels)


def _decode(model: WhisperModel, mel: np.ndarray, audio_s: float) -> None:
    """Encode ``mel`` and take the decoder steps of ``audio_s`` of speech, greedily."""
    frames = mel.shape[1] - mel.shape[1] % 2
    cross = model.encode(np.ascontiguousarray(mel[None, :, :frames]))
    decoder = model.decoder_for(cross)
    tokenizer = model.tokenizer
    prompt = tokenizer.sot_sequence("en" if tokenizer.multilingual else None)
    logits, _ = decoder.prefill([prompt])
    token = int(np.argmax(logits[0, -1]))
    for _ in range(math.ceil(TOKENS_PER_S * audio_s)):
        token = int(np.argmax(decoder.step(np.array([token]))[0]))


def _utterance(
    model: WhisperModel, mel: np.ndarray, clock: Callable[[], float]
) -> tuple[float, float]:
    """(seconds of the final, mean seconds of a partial) of one utterance."""
    from audiototext.streaming.options import RecognizerOptions

    options = RecognizerOptions()
    frames_per_s = _RATE // 160
    partial_pad = int(options.partial_padding_s * frames_per_s)
    partials: list[float] = []
    length = PARTIAL_STEP_S
    while length < UTTERANCE_S:
        frames = int(length * frames_per_s) + partial_pad
        start = clock()
        _decode(model, mel[:, :frames], length)
        partials.append(clock() - start)
        length += PARTIAL_STEP_S
    start = clock()
    _decode(model, mel, UTTERANCE_S)
    return clock() - start, statistics.fmean(partials) if partials else 0.0


def _order(entries: Sequence[CacheEntry]) -> list[CacheEntry]:
    return sorted(entries, key=lambda e: (e.size_bytes, e.name, e.precision))


def run_benchmark(
    entries: Sequence[CacheEntry],
    hardware: HardwareProfile,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    max_threads: int | None = None,
    progress: ProgressSink | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PerformanceProfile:
    """Time ``entries`` at each of :func:`thread_counts` within ``budget_s`` seconds."""
    from audiototext.inference.ort_session import OrtConfig
    from audiototext.inference.whisper import WhisperModel
    from audiototext.models.registry import KNOWN_MODELS

    if not budget_s > 0:
        raise ValueError(f"--budget-s must be positive, not {budget_s}")
    sink = progress or NullProgress()
    cores = hardware.usable_cores or hardware.logical_cores
    threads = thread_counts(cores, max_threads)
    plan = [(e, t) for e in _order(entries) for t in threads]
    sink.task("benchmark", "timing models", total=len(plan), unit="variants")
    started = clock()
    deadline = started + budget_s
    measured: list[Measurement] = []
    skipped: list[str] = []
    mels: dict[int, np.ndarray] = {}
    for i, (entry, n_threads) in enumerate(plan):
        label = f"{entry.name} {entry.precision} with {n_threads} thread(s)"
        left = deadline - clock()
        if left <= 0:
            skipped.append(f"{label}: the {budget_s:g}-s budget was spent")
            sink.advance("benchmark", 1)
            continue
        share_end = clock() + left / (len(plan) - i)
        sink.note(f"timing {label}")
        model = WhisperModel(entry.path, OrtConfig(device="cpu", intra_op_threads=n_threads))
        mel = mels.setdefault(model.n_mels, _utterance_mel(model.n_mels))
        _utterance(model, mel, clock)  # warm-up: first runs allocate and tune
        finals: list[float] = []
        partials: list[float] = []
        while len(finals) < MAX_RUNS and (not finals or clock() < share_end):
            if finals and clock() > deadline:
                break
            final_s, partial_s = _utterance(model, mel, clock)
            finals.append(final_s)
            partials.append(partial_s)
        spec = KNOWN_MODELS.get(entry.name)
        measured.append(
            Measurement(
                model=entry.name,
                precision=entry.precision,
                version=entry.version_id,
                threads=n_threads,
                utterance_s=UTTERANCE_S,
                final_s=statistics.median(finals),
                partial_s=statistics.median(partials),
                runs=len(finals),
                params_millions=spec.params_millions if spec else 0.0,
                ram_mb=spec.ram_mb if spec else 0,
            )
        )
        del model
        sink.advance("benchmark", 1)
    sink.done("benchmark")
    return PerformanceProfile(
        fingerprint=fingerprint(hardware, entries),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        elapsed_s=clock() - started,
        budget_s=budget_s,
        usable_cores=cores,
        measurements=tuple(measured),
        skipped=tuple(skipped),
    )
