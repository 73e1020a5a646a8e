"""When partials are due, how their encoder input is sized, and which hypotheses count.

No threads or I/O: the worker asks, then prepares and applies the batches itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from audiototext.audio import SAMPLE_RATE_HZ
from audiototext.audio.features import HOP_LENGTH_SAMPLES
from audiototext.streaming._decode import Hypothesis, is_noise
from audiototext.streaming._lanes import PartialJob
from audiototext.streaming._load import LoadMonitor
from audiototext.streaming._repeats import common_words, loop_start
from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.state import PendingFinal
from audiototext.streaming.stream import RecognitionStream

__all__ = ["PartialPlanner", "loop_start"]

# Encoder lengths are rounded up to 0.5 s, so that streams of similar length share a batch.
_BUCKET_FRAMES = 50
# gzip ratio of a partial's new text above which it is taken for a repetition loop (Whisper
# rejects 2.4 for whole windows; partials are short, so a loop shows at a lower ratio).
LOOP_COMPRESSION = 2.0


class PartialPlanner:
    """Partial timing: at most one per interval of new speech, stretched by load; an
    utterance's first as soon as it holds ``min_partial_ms`` (``early_partials``)."""

    def __init__(self, options: RecognizerOptions, load: LoadMonitor) -> None:
        self.options = options
        self._load = load

    def max_batch(self) -> int:
        return self._load.max_batch()

    def interval_samples(self, stream: RecognitionStream) -> int:
        return self._load.interval_samples(stream.options.partial_interval_ms)

    def due(self, streams: Sequence[RecognitionStream]) -> list[PartialJob]:
        """Partials to compute now, the stalest first."""
        jobs: list[PartialJob] = []
        min_samples = self.options.min_partial_ms * SAMPLE_RATE_HZ // 1000
        for s in streams:
            utt = s.utterance
            if utt is None or not s.options.interim_results or s.pending_finals or s.finishing:
                continue
            if s.tentative_end is not None:
                continue  # a pause: nothing new to show, and its final may be on the way
            interval = self.interval_samples(s)
            stop = s.vad_position
            if stop - utt.start < min_samples or stop - utt.last_partial_at < self._gap(
                s, interval
            ):
                continue
            # Audio that arrived faster than real time already passed several intervals:
            # one partial for the newest audio replaces all the ones in between.
            missed = (stop - utt.last_partial_at) // interval - 1
            jobs.append(PartialJob(s, utt.start, stop, max(0, missed)))
        jobs.sort(key=self._order)
        return jobs

    def _gap(self, stream: RecognitionStream, interval: int) -> int:
        """New audio an utterance needs since its last partial before the next is due."""
        utt = stream.utterance
        if utt is None or utt.shown_text or not self.options.early_partials:
            return interval
        if utt.last_partial_at <= utt.start:
            return 0  # the first try: as soon as min_partial_ms is there
        # Nothing shown yet (the tries were loops, noise or unsure): try again soon.
        retry = self._load.interval_samples(self.options.min_partial_ms)
        return max(1, min(interval, retry))

    def _order(self, job: PartialJob) -> tuple[bool, int]:
        """Utterances with no text shown first (with early_partials), then the stalest."""
        utt = job.session.utterance
        if utt is None:
            return (True, 0)
        return (utt.shown_text or not self.options.early_partials, utt.last_partial_at)

    def missed_before(self, stream: RecognitionStream, final: PendingFinal) -> int:
        """Partials an utterance never got because its speech ended before they came due
        (audio sent faster than real time is read to its end in one go)."""
        if not stream.options.interim_results:
            return 0
        return max(0, (final.stop - final.last_partial_at) // self.interval_samples(stream))

    @staticmethod
    def bucket_frames(samples: int, padding_s: float, window_frames: int) -> int:
        """Encoder frames for ``samples`` of audio plus padding, rounded up to a bucket."""
        frames = samples // HOP_LENGTH_SAMPLES + round(padding_s * 100)
        frames = -(-frames // _BUCKET_FRAMES) * _BUCKET_FRAMES
        return min(frames, window_frames)

    def salvage(self, hyp: Hypothesis, words: Sequence[str]) -> int:
        """For an utterance's first text: how many of a looping hypothesis's new ``words``
        come before the loop (0: not a loop of repeated words, or nothing before it).

        Greedy decoding of well under a second of audio often says the words once, then
        repeats them to the token budget ("My phone, my phone, my phone, ..."); the first
        occurrence is what was said.
        """
        if not self.options.early_partials or hyp.prefix_tokens:
            return 0
        if not (hyp.truncated or hyp.compression_ratio > LOOP_COMPRESSION):
            return 0
        return loop_start(words)

    def confident(self, hyp: Hypothesis) -> bool:
        """Whether a partial may be an utterance's first shown text (its words are likely
        to stay)."""
        threshold = self.options.first_partial_logprob
        return threshold is None or hyp.avg_logprob >= threshold

    def agreed_with_unsure(self, held: Sequence[str], words: Sequence[str]) -> int:
        """How many opening ``words`` of an unsure first try the previous unsure try
        (``held``) opened with too (0 without ``first_partial_agreement``)."""
        if not self.options.first_partial_agreement:
            return 0
        return common_words(held, words)

    @staticmethod
    def usable(hyp: Hypothesis) -> bool:
        """Whether a partial's hypothesis may reach the agreement."""
        if hyp.truncated or hyp.compression_ratio > LOOP_COMPRESSION:
            # A greedy loop ran into the token budget: two looping partials would commit it.
            return False
        return bool(hyp.prefix_tokens) or not is_noise(
            hyp.text, hyp.avg_logprob, hyp.no_speech_prob, hyp.compression_ratio
        )
