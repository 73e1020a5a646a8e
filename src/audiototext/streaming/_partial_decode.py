"""The model work of partials: a batch prepared from the streams (worker), encoded and decoded
greedily with the committed words forced as a prefix (any thread), then applied through the
LocalAgreement policy into partial results (worker)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from audiototext.audio import SAMPLE_RATE_HZ
from audiototext.inference.whisper import WhisperModel
from audiototext.streaming._decode import (
    DecodingCancelled,
    encoder_input,
    greedy_decode,
    max_new_tokens_for,
)
from audiototext.streaming._lanes import PartialBatch, PartialJob
from audiototext.streaming._language import stream_prompt
from audiototext.streaming._partials import PartialPlanner
from audiototext.streaming.options import RecognizerOptions
from audiototext.streaming.stream import RecognitionStream
from audiototext.streaming.types import StreamResult

__all__ = ["PartialDecoder"]


class PartialDecoder:
    """Prepares, computes and applies batches of partials for every stream."""

    def __init__(
        self,
        model: WhisperModel,
        options: RecognizerOptions,
        planner: PartialPlanner,
        prompt: Callable[[RecognitionStream], list[int]],
    ) -> None:
        self.model = model
        self.options = options
        self._planner = planner
        self._prompt = prompt
        self.cancelled = 0  # batches stopped for finals (written on the lanes)

    def prepare(self, jobs: list[PartialJob]) -> PartialBatch:
        """One batch: the stalest job and others of its encoder length, up to max_batch, with
        everything copied out of the streams (worker). The rest wait, so that an utterance
        that ends meanwhile waits for at most one batch of partials."""
        model = self.model
        pad = self.options.context_pad_ms * SAMPLE_RATE_HZ // 1000
        groups: dict[int, list[tuple[PartialJob, np.ndarray]]] = {}
        for job in jobs:
            audio = job.session.ring.read(max(job.start - pad, job.session.ring.start), job.stop)
            frames = self._planner.bucket_frames(
                audio.shape[0], self.options.partial_padding_s, model.window_frames
            )
            groups.setdefault(frames, []).append((job, audio))
        frames = next(iter(groups))  # jobs come stalest first
        members = groups[frames][: self._planner.max_batch()]
        for job, _ in members:
            job.session.schedule.partial_in_flight = True
        return PartialBatch(
            jobs=[j for j, _ in members],
            mel=np.stack(
                [encoder_input(a, model.n_mels, frames, model.window_frames) for _, a in members]
            ),
            prompts=[self._prompt(j.session) for j, _ in members],
            prefixes=[
                list(j.session.utterance.agreement.committed_tokens) if j.session.utterance else []
                for j, _ in members
            ],
            budgets=[max_new_tokens_for(a.shape[0] / SAMPLE_RATE_HZ) for _, a in members],
            utterance_ids=[
                j.session.utterance.utterance_id if j.session.utterance else -1 for j, _ in members
            ],
        )

    def compute(self, batch: PartialBatch) -> None:
        """Encode and decode a prepared batch; touches no stream (safe on a lane)."""
        cross = self.model.encode(batch.mel)
        batch.prompts = [
            stream_prompt(self.model, job.session, prompt, cross, row, final=False)
            for row, (job, prompt) in enumerate(zip(batch.jobs, batch.prompts, strict=True))
        ]
        try:
            batch.hyps = greedy_decode(
                self.model,
                cross,
                batch.prompts,
                batch.prefixes,
                batch.budgets,
                lambda: batch.cancel,
            )
        except DecodingCancelled:
            batch.hyps = []  # applied as a failed batch: its streams' partials are due again
            self.cancelled += 1

    def apply(self, batch: PartialBatch) -> int:
        """Agreement, stable text and results of a computed batch (worker); returns the
        partials skipped because newer audio had arrived."""
        tok = self.model.tokenizer
        if len(batch.hyps) != len(batch.jobs):  # the computation failed
            for job in batch.jobs:
                job.session.schedule.partial_in_flight = False
            return 0
        skipped = 0
        for job, hyp, utterance_id, prefix in zip(
            batch.jobs, batch.hyps, batch.utterance_ids, batch.prefixes, strict=True
        ):
            s = job.session
            s.schedule.partial_in_flight = False
            utt = s.utterance
            if (
                utt is None
                or utt.utterance_id != utterance_id
                or len(utt.agreement.committed_tokens) != len(prefix)
            ):
                continue  # the utterance ended (its final is due) while this was computed
            s.partial_done(job.stop)
            skipped += job.missed
            words, groups = tok.split_to_word_tokens(list(hyp.new_tokens))
            tail = list(zip(words, (tuple(g) for g in groups), strict=True))
            if not self._planner.usable(hyp):
                keep = 0 if utt.shown_text else self._planner.salvage(hyp, words)
                if not keep:
                    continue
                tail = tail[:keep]  # the words said before a loop, as the first text
            if not utt.shown_text and not self._planner.confident(hyp):
                # Unsure: shown only as far as the previous unsure try agrees, else tried
                # again after min_partial_ms of new audio (early_partials).
                said = [w for w, _ in tail]
                agreed_words = self._planner.agreed_with_unsure(utt.unsure_words, said)
                utt.unsure_words = tuple(said)
                if not agreed_words:
                    continue
                tail = tail[:agreed_words]
            agreed = utt.agreement.update(tail)
            committed = tok.decode(utt.agreement.committed_tokens).strip()
            utt.committed_text = committed
            rest = tok.decode([t for _, g in tail[agreed:] for t in g])
            text = (committed + rest).strip() if committed else rest.strip()
            if not text.startswith(committed):
                text = committed
            if not text:
                continue
            utt.shown_text = True
            s.emit(
                StreamResult(
                    utterance_id=utt.utterance_id,
                    is_final=False,
                    text=text,
                    stable_text=committed,
                    stability=len(committed) / len(text) if text else 0.0,
                    start_s=job.start / SAMPLE_RATE_HZ,
                    end_s=job.stop / SAMPLE_RATE_HZ,
                    audio_processed_s=s.audio_processed_s,
                )
            )
        return skipped
