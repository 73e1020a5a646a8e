"""Speculative finals, finals that depend on the audio alone, and the worker following the
scheduler's rules (the rules themselves are tested by calling them in test_policies.py).

As in test_recognizer.py, audio is fed chunk by chunk and each chunk is processed before the
next (``wait_idle``, ``adaptive_partials`` off), so results depend on the audio only.
``rec._cv`` is held where a test needs all streams' audio to arrive before the worker's next
round.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from audiototext.audio import SileroVad, SpeechEndpointDetector, SpeechEventKind, VadOptions
from audiototext.streaming import RecognitionStream, StreamingRecognizer, StreamOptions
from audiototext.streaming._final import FinalRequest
from audiototext.streaming._lanes import FinalBatch, PartialJob
from audiototext.streaming.state import OpenUtterance
from streaming.streaming_helpers import StreamLog, normalise, stream_audio
from support.speech import Speech, SpeechSynthesizer, silence, with_silence

MakeRecognizer = Callable[..., StreamingRecognizer]


def test_tentative_end_announces_the_end_event(shared_vad: SileroVad, sentence: Speech) -> None:
    detector = SpeechEndpointDetector(
        shared_vad, VadOptions(min_silence_duration_ms=300, speech_pad_ms=30)
    )
    audio = with_silence(sentence.audio, 0.3, 1.0)
    seen: list[int] = []
    end: int | None = None
    for i in range(0, audio.shape[0], 512):
        for event in detector.feed(audio[i : i + 512]):
            if event.kind is SpeechEventKind.END:
                end = event.sample
        if end is None and detector.tentative_end is not None:
            seen.append(detector.tentative_end)
    assert end is not None
    # Announced before the END event, at the very sample the END then carried; and it was
    # announced at least 300 ms (the endpoint silence) before the END could be reported.
    assert seen and seen[-1] == end
    assert detector.tentative_end is None  # cleared once the utterance is over
    # During speech (well before its end) there is no tentative end.
    d2 = SpeechEndpointDetector(shared_vad, VadOptions(min_silence_duration_ms=300))
    d2.feed(audio[: audio.shape[0] // 2 // 512 * 512])
    assert d2.in_speech and d2.tentative_end is None


def _final_texts(log: StreamLog) -> list[str]:
    return [f.text for f in log.finals]


def test_speech_after_a_short_pause_voids_the_speculation(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    first = synth.speak("Please take a seat").audio
    second = synth.speak("and open your notebooks.").audio

    def trimmed(a: np.ndarray) -> np.ndarray:
        loud = np.nonzero(np.abs(a) > 0.01)[0]
        return a[loud[0] : loud[-1] + 1]

    # 250 ms of silence: long enough to start a speculative final (100 ms of tail after the
    # VAD's end), shorter than the 300-ms endpoint, so the utterance goes on.
    audio = np.concatenate(
        [silence(0.3), trimmed(first), silence(0.25), trimmed(second), silence(1.0)]
    )
    rec = make_recognizer()

    async def run() -> StreamLog:
        session = rec.open(StreamOptions(endpoint_silence_ms=300))
        return await stream_audio(session, audio, 16_000, chunk=20)

    log = asyncio.run(run())
    stats = rec.stats()
    assert len(log.finals) == 1, _final_texts(log)
    assert {"take", "seat", "open"} <= set(normalise(log.finals[0].text)), log.finals[0].text
    assert stats.speculative_finals_wasted >= 1
    assert stats.speculative_finals_used == 1


def test_finals_depend_on_the_audio_not_on_chunking_or_partials(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    parts = [
        synth.speak(t).audio
        for t in (
            "The weather forecast says it will rain tomorrow afternoon.",
            "Could you send me the report before lunch?",
            "The train to London leaves from platform four.",
        )
    ]
    audio = np.concatenate([silence(0.3), parts[0], silence(1.0), parts[1], silence(1.0)])
    audio = np.concatenate([audio, parts[2], silence(1.0)])
    rec = make_recognizer()

    async def run(chunk: str | int, interim: bool, seed: int = 0) -> StreamLog:
        session = rec.open(StreamOptions(interim_results=interim))
        return await stream_audio(session, audio, 16_000, chunk=chunk, seed=seed)

    reference = asyncio.run(run(100, True))
    assert len(reference.finals) == 3
    for chunk, interim, seed in ((20, True, 0), ("random", True, 1), (300, False, 0)):
        other = asyncio.run(run(chunk, interim, seed))
        assert _final_texts(other) == _final_texts(reference), (chunk, interim)


def test_final_keeps_committed_words_when_asked(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    speech = synth.speak(
        "The quick brown fox jumps over the lazy dog and then runs into the deep green forest."
    )
    rec = make_recognizer(final_keeps_committed=True)

    async def run() -> StreamLog:
        return await stream_audio(rec.open(), with_silence(speech.audio, 0.3, 1.5), 16_000)

    log = asyncio.run(run())
    assert len(log.finals) == 1
    committed = [p.stable_text for p in log.partials if p.stable_text]
    assert committed, "no partial committed a word"
    assert log.finals[0].text.startswith(committed[-1])


@pytest.mark.parametrize("lane", [True, False])
def test_partials_run_one_batch_per_round(
    make_recognizer: MakeRecognizer,
    synth: SpeechSynthesizer,
    monkeypatch: pytest.MonkeyPatch,
    lane: bool,
) -> None:
    texts = [
        "Please take a seat and open your notebooks.",
        "The train to London leaves from platform four.",
        "Dinner will be ready in about twenty minutes.",
        "The children were playing football in the park.",
    ]
    audios = [with_silence(synth.speak(t).audio, 0.5, 1.5) for t in texts]
    rec = make_recognizer(max_batch=2, partial_lane=lane)
    batches: list[int] = []
    prepare = rec.partial_decoder.prepare

    def spy(jobs: list[PartialJob]) -> object:
        batches.append(len(jobs))  # partials due in this round
        return prepare(jobs)

    monkeypatch.setattr(rec.partial_decoder, "prepare", spy)
    encoded: list[int] = []
    encode = rec.model.encode

    def encode_spy(mel: np.ndarray) -> object:
        encoded.append(int(mel.shape[0]))
        return encode(mel)

    monkeypatch.setattr(rec.model, "encode", encode_spy)

    async def run() -> list[StreamLog]:
        sessions = [rec.open() for _ in texts]
        with rec._cv:  # all four have a partial due in the same round
            for s, a in zip(sessions, audios, strict=True):
                s.accept(a[:16_000], 16_000)
        return list(
            await asyncio.gather(
                *(
                    stream_audio(s, a[16_000:], 16_000)
                    for s, a in zip(sessions, audios, strict=True)
                )
            )
        )

    logs = asyncio.run(run())
    assert max(batches) >= 3, batches  # more were due than one batch takes
    assert max(encoded) <= 2, encoded  # but no encoder call (partial or final) took more
    for log, text in zip(logs, texts, strict=True):
        assert len(log.finals) == 1
        assert set(normalise(text)[-2:]) <= set(normalise(log.finals[0].text))


def test_finals_ending_together_are_split_over_the_lanes_not_the_worker(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [
        "Please take a seat and open your notebooks.",
        "The train to London leaves from platform four.",
        "Dinner will be ready in about twenty minutes.",
        "The children were playing football in the park.",
    ]
    audios = [with_silence(synth.speak(t).audio, 0.3, 1.0) for t in texts]
    rec = make_recognizer(speculative_finals=False)
    decoded: list[tuple[str, int, int]] = []  # thread name and id, finals in the call
    decode = rec.final_decoder.decode

    def spy(requests: Sequence[FinalRequest], *args: Any) -> list[str]:
        thread = threading.current_thread()
        decoded.append((thread.name, thread.ident or 0, len(requests)))
        return decode(requests, *args)

    monkeypatch.setattr(rec.final_decoder, "decode", spy)

    # Every utterance is read (and ends) in the same round: two finals for each lane, each
    # pair handed over as one batch; the worker (VAD) decodes none.
    logs = asyncio.run(_stream_all_at_once(rec, audios))
    assert [(name, n) for name, _, n in decoded] == [("audiototext-lane", 2)] * 2, decoded
    assert len({ident for _, ident, _ in decoded}) == 2  # one batch on each lane
    assert [t.batch for t in rec.final_trace] == [2, 2, 2, 2]
    for log, text in zip(logs, texts, strict=True):
        assert len(log.finals) == 1, log.finals
        assert set(normalise(text)[-2:]) <= set(normalise(log.finals[0].text)), log.finals[0].text


@pytest.mark.parametrize("pause_ms", [0, 50, 250])
def test_a_final_is_the_same_however_early_its_speculation_starts(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer, pause_ms: int
) -> None:
    """A speculative final (0 = the default, from the first silent frame) is the endpoint's."""
    parts = [synth.speak(t).audio for t in ("Good morning everyone.", "See you tomorrow.")]
    audio = np.concatenate([silence(0.3), parts[0], silence(1.0), parts[1], silence(1.0)])
    early = make_recognizer(speculation_pause_ms=pause_ms)
    plain = make_recognizer(speculative_finals=False)

    async def run(rec: StreamingRecognizer) -> StreamLog:
        return await stream_audio(rec.open(), audio, 16_000, chunk=20)

    with_spec = asyncio.run(run(early))
    without = asyncio.run(run(plain))
    # 250 ms of pause is more than the 200-ms endpoint: the endpoint comes first, no speculation.
    assert early.stats().speculative_finals_used == (0 if pause_ms > 200 else 2)
    assert plain.stats().speculative_finals_used == 0
    assert {"morning", "tomorrow"} <= set(normalise(with_spec.text))
    assert _final_texts(with_spec) == _final_texts(without)
    assert [(f.start_s, f.end_s, f.words) for f in with_spec.finals] == [
        (f.start_s, f.end_s, f.words) for f in without.finals
    ]
    # Each speculation started when the ring held exactly the pause asked for (20-ms chunks).
    for trace in early.final_trace:
        assert trace.speculative == (pause_ms <= 200)
        if trace.speculative:
            assert 0 <= trace.began_at - trace.stop - pause_ms * 16 < 20 * 16 + 512
        # Wall-time account (bench/streaming.py prints it): a speculation waited for nothing
        # after its endpoint; every final records its batch and how long that took.
        assert trace.wait_s >= 0 and (trace.wait_s == 0) >= trace.speculative
        assert trace.decode_s > 0 and trace.batch == 1


def test_adaptive_finals_cost_less_when_finals_queue_up(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    # Four streams of three sentences each, all the audio there at once: every scheduling
    # round has four finals due (the worker reads each stream up to its next utterance end),
    # more than one thread can take without making the others wait.
    sentences = [
        ("Good morning everyone.", "Please take a seat.", "See you tomorrow."),
        ("The train is late.", "It leaves from platform four.", "Dinner is ready."),
        ("Open your notebooks.", "The weather is fine.", "We will start soon."),
        ("The children are playing.", "The park is open.", "Call me tonight."),
    ]
    audios = [
        np.concatenate([silence(0.3), *(with_silence(synth.speak(t).audio, 0.0, 1.0) for t in s)])
        for s in sentences
    ]

    def run(adaptive: bool) -> tuple[StreamingRecognizer, list[StreamLog]]:
        rec = make_recognizer(
            adaptive_finals=adaptive, partial_lane=False, speculative_finals=False
        )

        return rec, asyncio.run(_stream_all_at_once(rec, audios))

    full, full_logs = run(False)
    cheap, cheap_logs = run(True)
    assert full.stats().finals_reduced == 0 and full.stats().finals_full == 12
    assert cheap.stats().finals_reduced == 12 and cheap.stats().finals_full == 0
    # Less earlier audio encoded with each final (the previous utterance only), greedy.
    assert cheap.final_decoder.frames_encoded < full.final_decoder.frames_encoded
    # Both still transcribe (accuracy of the reduced settings: bench/streaming_wer.py); the
    # int8 graphs make finals batched together differ a little from finals decoded alone.
    for logs in (full_logs, cheap_logs):
        said = {w for sentence in sentences for t in sentence for w in normalise(t)}
        heard = [w for log in logs for f in log.finals for w in normalise(f.text)]
        assert sum(len(log.finals) for log in logs) >= 10
        assert len(said & set(heard)) >= 0.7 * len(said), heard


async def _stream_all_at_once(
    rec: StreamingRecognizer, audios: list[np.ndarray]
) -> list[StreamLog]:
    """One stream per audio, each given all its audio while the worker waits (one round)."""
    sessions = [rec.open(StreamOptions(interim_results=False)) for _ in audios]
    logs = [StreamLog() for _ in audios]

    async def collect(s: RecognitionStream, log: StreamLog) -> None:
        async for event in s.events():
            log.events.append(event)

    readers = [asyncio.create_task(collect(s, log)) for s, log in zip(sessions, logs, strict=True)]
    with rec._cv:  # the worker sees all of it in its first round
        for s, a in zip(sessions, audios, strict=True):
            s.accept(a, 16_000)
    await asyncio.gather(*(s.finish() for s in sessions))
    await asyncio.gather(*readers)
    return logs


def test_a_speculation_the_speaker_voids_is_cancelled_and_changes_no_final(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = synth.speak("Please take a seat").audio
    second = synth.speak("and open your notebooks.").audio

    def trimmed(a: np.ndarray) -> np.ndarray:
        loud = np.nonzero(np.abs(a) > 0.01)[0]
        return a[loud[0] : loud[-1] + 1]

    head = np.concatenate([silence(0.3), trimmed(first), silence(0.15)])
    # 250 ms of pause in all: a speculation starts, the 300-ms endpoint does not come.
    rest = np.concatenate([silence(0.1), trimmed(second), silence(1.0)])
    rec = make_recognizer()
    release = threading.Event()
    seen: list[Callable[[], bool]] = []  # the speculation's cancellation check
    decode = rec.final_decoder.decode

    def held(
        requests: Sequence[FinalRequest],
        max_batch: int,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[str]:
        if not seen and cancelled is not None:  # the first decoding here is the speculation
            seen.append(cancelled)
            release.wait(30)  # the lane is still on it when the speaker goes on
        return decode(requests, max_batch, cancelled)

    monkeypatch.setattr(rec.final_decoder, "decode", held)

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(3000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("timed out")

    async def run() -> StreamLog:
        session = rec.open(StreamOptions(endpoint_silence_ms=300))
        log = StreamLog()

        async def collect() -> None:
            async for event in session.events():
                log.events.append(event)

        reader = asyncio.create_task(collect())
        session.accept(head, 16_000)
        await until(lambda: bool(seen))
        session.accept(rest, 16_000)
        await until(lambda: seen[0]())  # the worker asked the lane to stop
        release.set()
        await session.finish()
        await reader
        return log

    log = asyncio.run(run())
    stats = rec.stats()
    assert stats.speculative_finals_cancelled == 1  # the lane did stop early
    # The final is the utterance's own decoding, as without any speculation.
    plain = make_recognizer(speculative_finals=False)

    async def reference() -> StreamLog:
        return await stream_audio(
            plain.open(StreamOptions(endpoint_silence_ms=300)),
            np.concatenate([head, rest]),
            16_000,
        )

    expected = asyncio.run(reference())
    assert len(log.finals) == 1, _final_texts(log)
    assert _final_texts(log) == _final_texts(expected)
    assert {"take", "seat", "open"} <= set(normalise(log.finals[0].text))


def test_finals_waiting_for_a_lane_stop_the_partial_batch_in_flight(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    rec = make_recognizer()
    audio = with_silence(synth.speak("Please take a seat and open your notebooks.").audio, 0.3, 0)
    session = rec.open()
    session.ring.append(audio)
    session.vad_position = audio.shape[0]
    session.utterance = OpenUtterance(0, 0)
    job = PartialJob(session, 0, audio.shape[0])
    partials = rec.partial_decoder.prepare([job])
    assert session.schedule.partial_in_flight
    final = FinalBatch([], [])
    for batch in rec.dispatcher.partials_to_stop([partials, final]):
        batch.cancel = True
    assert partials.cancel and not final.cancel
    # The lane stops before decoding: no hypotheses; applied as a failed batch, the stream's
    # partial is due again.
    rec.partial_decoder.compute(partials)
    assert partials.hyps == []
    assert rec.stats().partial_batches_cancelled == 1
    rec.partial_decoder.apply(partials)
    assert not session.schedule.partial_in_flight
    assert session.utterance.last_partial_at == 0
    fresh = rec.partial_decoder.prepare([job])
    rec.partial_decoder.compute(fresh)  # not cancelled: decoded as usual
    assert len(fresh.hyps) == 1 and fresh.hyps[0].new_tokens
