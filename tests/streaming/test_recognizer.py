"""The streaming engine end to end, on the real tiny.en int8 model and espeak-ng speech.

No test measures wall-clock time (the machine is shared): audio is fed chunk by chunk and
each chunk is processed before the next (``wait_idle``), so results depend on the audio only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import soxr

from audiototext.inference import Transcriber, WhisperModel
from audiototext.streaming import (
    BufferFullError,
    OverloadedError,
    SpeechEventKind,
    StreamingRecognizer,
    StreamOptions,
    StreamResult,
)
from streaming.corpus import clip_set, clips_of, fable_sentences
from streaming.streaming_helpers import StreamLog, normalise, stream_audio, wer
from support.speech import Speech, SpeechSynthesizer, join_with_gaps, white_noise, with_silence

MakeRecognizer = Callable[..., StreamingRecognizer]


def _at_rate(audio: np.ndarray, rate: int, channels: int) -> np.ndarray:
    out = audio if rate == 16_000 else soxr.resample(audio, 16_000, rate, quality="VHQ")
    out = np.asarray(out, dtype=np.float32)
    if channels == 2:
        # Not identical channels: the right one is quieter, so a wrong downmix would show.
        out = np.stack([out, 0.5 * out], axis=1).reshape(-1)
    return out


@pytest.mark.parametrize(
    ("rate", "chunk", "channels"),
    [
        (8_000, 20, 1),
        (16_000, 100, 2),
        (16_000, "random", 1),
        (44_100, "random", 2),
        (48_000, 20, 2),
        (48_000, 100, 1),
    ],
)
def test_partials_then_final_with_the_spoken_words(
    make_recognizer: MakeRecognizer, sentence: Speech, rate: int, chunk: str | int, channels: int
) -> None:
    rec = make_recognizer()
    audio = _at_rate(with_silence(sentence.audio, 0.5, 1.5), rate, channels)

    async def run() -> StreamLog:
        return await stream_audio(rec.open(), audio, rate, channels=channels, chunk=chunk)

    log = asyncio.run(run())
    assert len(log.finals) == 1, log.events
    final = log.finals[0]
    words = set(normalise(final.text))
    assert {"take", "seat", "open"} <= words, final.text
    partials = [p for p in log.partials if p.utterance_id == final.utterance_id]
    assert partials, "no partial before the final"
    assert log.results.index(partials[0]) < log.results.index(final)
    # At least one partial every partial_interval_ms of speech (500 ms of ~2.8 s here).
    assert len(partials) >= 3
    kinds = [e.kind for e in log.speech_events]
    assert kinds == [SpeechEventKind.BEGIN, SpeechEventKind.END]


def test_stable_prefix_only_grows(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    speech = synth.speak(
        "The quick brown fox jumps over the lazy dog and then runs into the deep green forest "
        "where nobody can find it again."
    )
    rec = make_recognizer()

    async def run() -> StreamLog:
        return await stream_audio(rec.open(), with_silence(speech.audio, 0.3, 1.5), 16_000)

    log = asyncio.run(run())
    assert len(log.finals) == 1
    stable = ""
    grew = 0
    # Among partials committed words never change. The final is decoded from the audio alone
    # (RecognizerOptions.final_keeps_committed off; see test_speculation.py for the option).
    for result in log.partials:
        assert result.text.startswith(result.stable_text), result
        assert result.stable_text.startswith(stable), (stable, result.stable_text)
        assert 0.0 <= result.stability <= 1.0
        if len(result.stable_text) > len(stable):
            grew += 1
        stable = result.stable_text
    assert log.finals[0].stability == 1.0
    assert log.finals[0].stable_text == log.finals[0].text
    assert grew >= 3, "the stable prefix should grow as the sentence goes on"
    assert {"find", "forest"} <= set(normalise(log.finals[0].text))


def test_finals_cover_each_utterance_in_stream_time(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    parts = [synth.speak(t).audio for t in ("Good morning everyone.", "See you tomorrow.")]
    audio, spans = join_with_gaps(parts, 2.0)
    rec = make_recognizer()

    async def run() -> StreamLog:
        return await stream_audio(rec.open(), audio, 16_000, chunk=20)

    log = asyncio.run(run())
    assert len(log.finals) == 2, log.finals
    for final, (start, end) in zip(log.finals, spans, strict=True):
        start_s, end_s = start / 16_000, end / 16_000
        # The VAD's bounds, within its margins: onset confirmed, tail inside the silence.
        assert start_s - 0.3 <= final.start_s <= start_s + 0.3, (final, start_s)
        assert end_s - 0.6 <= final.end_s <= end_s + 0.8, (final, end_s)
    events = log.speech_events
    assert [e.kind for e in events] == [SpeechEventKind.BEGIN, SpeechEventKind.END] * 2
    for final, began, ended in zip(log.finals, events[0::2], events[1::2], strict=True):
        assert (began.time_s, ended.time_s) == (final.start_s, final.end_s)
    assert log.finals[1].audio_processed_s >= log.finals[1].end_s


def _music(duration_s: float, rate: int = 16_000) -> np.ndarray:
    """Music-like tones: a melody of harmonic notes with vibrato, attack and decay."""
    rng = np.random.default_rng(3)
    note_s = 0.3
    t = np.arange(round(note_s * rate)) / rate
    notes = []
    for _ in range(round(duration_s / note_s)):
        f0 = 220.0 * 2 ** (int(rng.integers(0, 24)) / 12)
        vibrato = 1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)
        tone = sum(
            (0.5 / k) * np.sin(2 * np.pi * k * f0 * np.cumsum(vibrato) / rate) for k in range(1, 6)
        )
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-3 * t)
        notes.append(0.3 * tone * envelope)
    return np.concatenate(notes).astype(np.float32)


@pytest.mark.parametrize("kind", ["silence", "white noise", "music-like tones"])
def test_no_words_from_silence_noise_or_tones(make_recognizer: MakeRecognizer, kind: str) -> None:
    audio = {
        "silence": np.zeros(60 * 16_000, dtype=np.float32),
        "white noise": white_noise(60.0, 0.1, seed=7),
        "music-like tones": _music(60.0),
    }[kind]
    rec = make_recognizer()

    async def run() -> StreamLog:
        return await stream_audio(rec.open(), audio, 16_000, chunk=1000)

    log = asyncio.run(run())
    words = [w for r in log.results for w in normalise(r.text)]
    assert words == [], [r.text for r in log.results]


@pytest.mark.parametrize(
    ("phrase", "words"),
    [("Thank you very much.", ["thank", "you", "very", "much"]), ("No.", ["no"])],
)
def test_a_short_utterance_alone_is_kept(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer, phrase: str, words: list[str]
) -> None:
    """A stock phrase said alone is a final, not a dropped hallucination; a lone "No.", which
    tiny.en loops on at its own length, is read in a 30-s window as files are."""
    audio = np.concatenate(
        [np.zeros(8000, np.float32), synth.speak(phrase).audio, np.zeros(24000, np.float32)]
    )
    rec = make_recognizer()

    async def run() -> StreamLog:
        return await stream_audio(rec.open(), audio, 16_000)

    log = asyncio.run(run())
    assert [normalise(f.text) for f in log.finals] == [words], [f.text for f in log.finals]


def test_streaming_wer_close_to_file_transcription(
    make_recognizer: MakeRecognizer, tiny_model: WhisperModel, synth: SpeechSynthesizer
) -> None:
    """Issue 4's goal: streaming WER within 1 pp of file transcription of the same audio, over
    the clip set and 60 fable sentences (1,330 words; ~90 s of CI). The clip set alone (173
    words: 1 pp is 1.7 words) cannot meet it with any final made when its utterance ends: the
    file path itself, given only the audio up to each final, scores +1.73 pp there, as the
    encoder reads a sentence better with the next one in its window (bench/streaming_wer.py,
    strategy causal-file; bench/NOTES.md "Streaming accuracy"). It keeps a regression guard."""
    sets = {"clip set": clip_set(synth), "fables": clips_of(synth, fable_sentences(60))}
    transcriber = Transcriber(tiny_model)
    rec = make_recognizer()

    async def run(clips: list[tuple[np.ndarray, str]]) -> list[str]:
        out = []
        for audio, _ in clips:
            out.append((await stream_audio(rec.open(), audio, 16_000, chunk=100)).text)
        return out

    references: dict[str, list[str]] = {}
    file_text: dict[str, list[str]] = {}
    streaming_text: dict[str, list[str]] = {}
    for name, clips in sets.items():
        references[name] = [text for _, text in clips]
        file_text[name] = [
            " ".join(s.text for s in transcriber.transcribe(audio)) for audio, _ in clips
        ]
        streaming_text[name] = asyncio.run(run(clips))
        print(
            f"{name}: WER file {wer(references[name], file_text[name]):.2%}, "
            f"streaming {wer(references[name], streaming_text[name]):.2%}"
        )
    pooled = [
        [t for texts in d.values() for t in texts] for d in (references, file_text, streaming_text)
    ]
    file_wer, streaming_wer = wer(pooled[0], pooled[1]), wer(pooled[0], pooled[2])
    print(f"both: WER file {file_wer:.2%}, streaming {streaming_wer:.2%}")
    # Measured (2026-12-04, AMD VM): clip set file 4.05 %, streaming 7.51 %; fables 13.05 %
    # and 12.71 %; both 11.88 % and 12.03 % (+0.15 pp).
    assert streaming_wer <= file_wer + 0.01
    clip_refs = references["clip set"]
    assert (
        wer(clip_refs, streaming_text["clip set"]) <= wer(clip_refs, file_text["clip set"]) + 0.05
    )


def test_sessions_at_once_are_batched_and_keep_their_own_text(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [
        "Please take a seat and open your notebooks.",
        "The train to London leaves from platform four.",
        "Dinner will be ready in about twenty minutes.",
        "The children were playing football in the park.",
    ]
    expected = [
        {"seat", "open"},
        {"train", "london"},
        {"dinner", "ready"},
        {"children", "park"},
    ]
    audios = [with_silence(synth.speak(t).audio, 0.5, 1.5) for t in texts]
    rec = make_recognizer()
    batches: list[int] = []
    encode = rec.model.encode

    def spy(mel: np.ndarray) -> object:
        batches.append(int(mel.shape[0]))
        return encode(mel)

    monkeypatch.setattr(rec.model, "encode", spy)

    async def run() -> list[StreamLog]:
        sessions = [rec.open() for _ in texts]
        # Hold the scheduler while every session receives its first second, so that the
        # next round finds them all with a partial due: one batch.
        with rec._cv:
            for s, a in zip(sessions, audios, strict=True):
                s.accept(a[:16_000], 16_000)
        return list(
            await asyncio.gather(
                *(
                    stream_audio(s, a[16_000:], 16_000, chunk=100)
                    for s, a in zip(sessions, audios, strict=True)
                )
            )
        )

    logs = asyncio.run(run())
    assert max(batches) >= 2, batches
    for log, words in zip(logs, expected, strict=True):
        assert len(log.finals) == 1
        assert words <= set(normalise(log.finals[0].text)), log.finals[0].text


def test_max_sessions_refuses_with_overloaded_error(make_recognizer: MakeRecognizer) -> None:
    rec = make_recognizer(max_sessions=2)

    async def run() -> None:
        first = rec.open()
        second = rec.open()
        with pytest.raises(OverloadedError, match="2 streams"):
            rec.open()
        assert rec.stats().active_sessions == 2
        await first.finish()
        third = rec.open()  # a slot is free again
        await asyncio.gather(second.finish(), third.finish())
        assert rec.stats().active_sessions == 0

    asyncio.run(run())


def test_buffer_full_when_more_than_max_buffered_s_waits(
    make_recognizer: MakeRecognizer, sentence: Speech
) -> None:
    rec = make_recognizer()

    async def run() -> StreamLog:
        session = rec.open(StreamOptions(max_buffered_s=2.0))
        with rec._cv:  # the scheduler cannot take anything meanwhile
            session.accept(np.zeros(24_000, dtype=np.float32), 16_000)  # 1.5 s
            with pytest.raises(BufferFullError, match="2 s"):
                session.accept(np.zeros(48_000, dtype=np.float32), 48_000)  # +1 s
            assert session.audio_received_s == pytest.approx(1.5)
        # Refused audio was not kept, and the session goes on normally afterwards.
        return await stream_audio(session, with_silence(sentence.audio, 0, 1.0), 16_000)

    log = asyncio.run(run())
    assert {"seat", "open"} <= set(normalise(log.text))


def test_flooding_faster_than_real_time_skips_partials_and_stays_bounded(
    make_recognizer: MakeRecognizer, synth: SpeechSynthesizer
) -> None:
    clips = clip_set(synth)
    audio = clips[0][0]  # ~22 s, five sentences
    rec = make_recognizer()

    async def run() -> tuple[StreamLog, int]:
        session = rec.open(StreamOptions(max_buffered_s=30.0))
        log = StreamLog()

        async def collect() -> None:
            async for event in session.events():
                log.events.append(event)

        reader = asyncio.create_task(collect())
        with rec._cv:  # all of it arrives before the scheduler looks: far ahead of real time
            session.accept(audio, 16_000)
            with pytest.raises(BufferFullError):
                session.accept(audio, 16_000)
        refused_at = session.buffered_s
        await session.finish()
        await reader
        assert refused_at <= 30.0
        return log, rec.stats().partials_skipped

    log, skipped = asyncio.run(run())
    assert len(log.finals) == 5
    # In real time this audio would get about 25 partials; arriving at once, only the newest
    # audio of each utterance is worth a partial, so almost all are skipped, not queued.
    assert len(log.partials) <= 5
    assert skipped > 0


def test_partials_can_be_turned_off(make_recognizer: MakeRecognizer, sentence: Speech) -> None:
    rec = make_recognizer()

    async def run() -> StreamLog:
        session = rec.open(StreamOptions(interim_results=False))
        return await stream_audio(session, with_silence(sentence.audio, 0.3, 1.0), 16_000)

    log = asyncio.run(run())
    assert log.partials == []
    assert len(log.finals) == 1


def test_flush_forces_a_final_mid_speech(make_recognizer: MakeRecognizer, sentence: Speech) -> None:
    rec = make_recognizer()

    async def run() -> StreamLog:
        session = rec.open()
        log = StreamLog()

        async def collect() -> None:
            async for event in session.events():
                log.events.append(event)

        reader = asyncio.create_task(collect())
        audio = with_silence(sentence.audio, 0.3, 0)
        session.accept(audio, 16_000)
        session.flush()  # no trailing silence: only the flush can end the utterance
        await session.wait_idle()
        assert len([r for r in log.events if isinstance(r, StreamResult) and r.is_final]) <= 1
        await session.finish()
        await reader
        return log

    log = asyncio.run(run())
    assert len(log.finals) == 1
    assert {"seat", "open"} <= set(normalise(log.finals[0].text))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate_hz": 4_000}, "sample_rate_hz"),
        ({"sample_rate_hz": 96_000}, "sample_rate_hz"),
        ({"channels": 0}, "channels"),
        ({"channels": 2, "audio": np.zeros(3, dtype=np.float32)}, "interleaved"),
        ({"audio": np.array([0.0, np.nan], dtype=np.float32)}, "NaN"),
    ],
)
def test_accept_rejects_unusable_audio(
    make_recognizer: MakeRecognizer, kwargs: dict[str, Any], message: str
) -> None:
    rec = make_recognizer()

    async def run() -> None:
        session = rec.open()
        args: dict[str, Any] = {
            "audio": np.zeros(160, dtype=np.float32),
            "sample_rate_hz": 16_000,
        }
        args.update(kwargs)
        with pytest.raises(ValueError, match=message):
            session.accept(**args)
        await session.finish()

    asyncio.run(run())


def test_open_rejects_another_model(make_recognizer: MakeRecognizer) -> None:
    rec = make_recognizer()
    with pytest.raises(ValueError, match="not loaded"):
        rec.open(StreamOptions(model="base.en"))


def test_a_greedy_repetition_loop_is_collapsed() -> None:
    from audiototext.streaming._decode import collapse_repeats

    loop = "Good morning. My phone is easy. My phone is easy. My phone is easy. My phone"
    assert collapse_repeats(loop) == "Good morning. My phone is easy."
    assert (
        collapse_repeats("Turn left. Then turn left again.") == "Turn left. Then turn left again."
    )
    assert collapse_repeats("no punctuation at all") == "no punctuation at all"


def test_a_final_after_context_does_not_open_with_the_previous_sentences_mark() -> None:
    from audiototext.streaming._decode import drop_leading_punctuation

    assert drop_leading_punctuation(". The weather forecast.") == "The weather forecast."
    assert drop_leading_punctuation(", and then.") == "and then."
    assert drop_leading_punctuation("Okay.") == "Okay."
    assert drop_leading_punctuation("...") == "..."  # nothing but marks: left to the noise check
    assert drop_leading_punctuation(" 20 minutes") == "20 minutes"
