"""Transcription features on real tiny.en: beam search, fallback, words, VAD, silence, batches."""

from __future__ import annotations

import hashlib
import json
import shutil
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pytest
from numpy.typing import ArrayLike, NDArray

from audiototext.audio import AudioSource, iter_audio_chunks
from audiototext.audio.feature_stream import BLOCK_S, FeatureStream
from audiototext.errors import AudioError, ConfigError
from audiototext.inference import (
    OrtConfig,
    Segment,
    TranscribeOptions,
    Transcriber,
    WhisperModel,
)
from audiototext.inference.decoding import DecodeResult, DecodingOptions
from audiototext.inference.whisper import CrossAttention
from inference.wer import wer
from support.model_fixtures import make_random_whisper
from support.speech import SpeechSynthesizer, silence, white_noise, with_silence, write_wav

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration

# (the model, the same random weights in transformers) with a multilingual vocabulary
Multilingual = tuple[WhisperModel, "WhisperForConditionalGeneration"]

GREEDY = TranscribeOptions(beam_size=1, temperatures=(0.0,))
TWO = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."
OTHER = "Rice is often served in round bowls. The juice of lemons makes fine punch."


@pytest.fixture(scope="module")
def two_sentences(synth: SpeechSynthesizer) -> np.ndarray:
    return synth.speak(TWO).audio


def _text(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments)


def test_beam_search_is_at_least_as_good_as_greedy(
    int8: Transcriber, two_sentences: np.ndarray
) -> None:
    greedy = list(int8.transcribe(two_sentences, GREEDY))
    beam = list(int8.transcribe(two_sentences, TranscribeOptions(beam_size=5, temperatures=(0.0,))))
    assert beam and all(s.temperature == 0.0 for s in beam)
    assert wer(TWO, _text(beam)) <= wer(TWO, _text(greedy)) + 0.05
    assert wer(TWO, _text(beam)) < 0.35


def test_temperature_fallback_runs_when_every_attempt_fails(
    int8: Transcriber, two_sentences: np.ndarray
) -> None:
    # An average log-probability can never exceed 0, so every temperature "fails": the result
    # must be the best attempt, reported at the last temperature (which resets the prompt).
    opts = TranscribeOptions(
        beam_size=1, temperatures=(0.0, 0.4), log_prob_threshold=0.0, no_speech_threshold=None
    )
    segments = list(int8.transcribe(two_sentences, opts))
    assert segments and all(s.temperature == 0.4 for s in segments)
    assert wer(TWO, _text(segments)) < 0.5


def test_word_timestamps_follow_the_audio(int8: Transcriber, two_sentences: np.ndarray) -> None:
    lead_s = 1.5
    audio = with_silence(two_sentences, lead_s, 1.0)
    segments = list(int8.transcribe(audio, TranscribeOptions(beam_size=1, word_timestamps=True)))
    words = [w for s in segments for w in (s.words or ())]
    assert len(words) >= 12
    assert "".join(w.text for w in words) == _text(segments)
    starts = [w.start_s for w in words]
    assert starts == sorted(starts)
    assert all(w.start_s <= w.end_s for w in words)
    assert lead_s - 0.5 <= words[0].start_s <= lead_s + 0.5  # speech starts after the silence
    speech_end = lead_s + two_sentences.size / 16_000
    assert abs(words[-1].end_s - speech_end) < 0.8
    for s in segments:
        assert s.words and s.start_s == s.words[0].start_s and s.end_s == s.words[-1].end_s


def test_vad_skips_silence_and_keeps_original_times(
    int8: Transcriber, synth: SpeechSynthesizer
) -> None:
    first = synth.speak("The birch canoe slid on the smooth planks.").audio
    second = synth.speak("Glue the sheet to the dark blue background.").audio
    gap_s = 40.0
    audio = np.concatenate([silence(2.0), first, silence(gap_s), second, silence(2.0)])
    second_start = 2.0 + first.size / 16_000 + gap_s
    segments = list(
        int8.transcribe(audio, TranscribeOptions(beam_size=1, vad=True, word_timestamps=True))
    )
    assert "sheet" in _text(segments).lower() and "dark" in _text(segments).lower()
    words = [w for s in segments for w in (s.words or ())]
    sheet = next(w for w in words if "sheet" in w.text.lower())
    assert sheet.start_s >= second_start - 0.5  # mapped back past the 40-s gap
    assert words[0].start_s < 2.0 + first.size / 16_000  # and the first sentence stays early
    assert all(s.end_s <= audio.size / 16_000 + 0.01 for s in segments)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["silence", "white noise", "quiet noise"])
def test_no_words_on_silence_or_noise(int8: Transcriber, name: str) -> None:
    audio = {
        "silence": silence(30.0),
        "white noise": white_noise(30.0, 0.1),
        "quiet noise": white_noise(30.0, 0.01, seed=3),
    }[name]
    segments = list(int8.transcribe(audio, TranscribeOptions()))  # Whisper's defaults
    assert segments == [], [s.text for s in segments]


def test_hallucination_filter_is_what_removes_the_silence_caption(int8: Transcriber) -> None:
    # Without the filter tiny.en captions pure silence (" You"); the test proves the filter,
    # not luck, keeps the transcript empty.
    raw = list(int8.transcribe(silence(30.0), TranscribeOptions(suppress_hallucinations=False)))
    kept = list(int8.transcribe(silence(30.0), TranscribeOptions()))
    assert raw and not kept


@pytest.mark.parametrize(
    ("phrase", "voice"),
    [("Thank you.", "en-us"), ("Thank you very much.", "en-gb"), ("Bye.", "en-us+f3")],
)
def test_a_spoken_stock_phrase_is_kept(
    int8: Transcriber, synth: SpeechSynthesizer, phrase: str, voice: str
) -> None:
    # The phrases the hallucination filter drops from silent windows, said by a person: the
    # model's no-speech score stays at 0.2-0.5 (silence's caption: 0.95), and they stay.
    audio = np.concatenate([silence(0.5), synth.speak(phrase, voice=voice).audio, silence(1.5)])
    segments = list(int8.transcribe(audio, TranscribeOptions()))
    said = [w.strip(".!?,").lower() for w in phrase.split()]
    got = [w.strip(".!?,").lower() for w in _text(segments).split()]
    assert got == said, [(s.text, s.no_speech_prob) for s in segments]


def test_batch_matches_one_by_one(
    fp32: Transcriber, int8: Transcriber, two_sentences: np.ndarray, synth: SpeechSynthesizer
) -> None:
    other = synth.speak(OTHER).audio
    longer = np.concatenate([two_sentences, silence(1.0), other, silence(1.0), two_sentences])
    inputs = [two_sentences, other, longer]
    truths = [TWO, OTHER, f"{TWO} {OTHER} {TWO}"]
    batch = fp32.transcribe_batch(inputs, GREEDY)
    single = [list(fp32.transcribe(a, GREEDY)) for a in inputs]
    for b, s in zip(batch, single, strict=True):
        # fp32: padding only changes float rounding, never the words.
        assert _text(b) == _text(s)
    batch = int8.transcribe_batch(inputs, GREEDY)
    single = [list(int8.transcribe(a, GREEDY)) for a in inputs]
    for b, s, truth in zip(batch, single, truths, strict=True):
        # int8: the decoder quantises activations per tensor, so the rows of a batch share a
        # scale and words may change; which ones depends on the CPU's int8 kernels (AVX2 vs
        # AVX-512 VNNI gave different words here). Batching may cost at most three words in
        # sixteen against the truth, and must not lose the text.
        assert wer(truth, _text(b)) <= wer(truth, _text(s)) + 0.2
        assert len(_text(b).split()) >= 0.8 * len(truth.split())


def test_each_runs_inputs_side_by_side_with_the_same_result_as_alone(
    int8: Transcriber, two_sentences: np.ndarray, synth: SpeechSynthesizer, tmp_path: Path
) -> None:
    import threading

    other = synth.speak("A pot of tea helps to pass the evening.").audio
    longer = np.concatenate([other, silence(1.0), two_sentences])
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    inputs: list[AudioSource | NDArray[np.floating]] = [two_sentences, bad, other, longer]
    alone = [list(int8.transcribe(a, GREEDY)) for a in (two_sentences, other, longer)]
    threads: dict[int, set[str]] = {}

    def progress(index: int, done_s: float) -> None:
        threads.setdefault(index, set()).add(threading.current_thread().name)

    results = list(int8.transcribe_each(inputs, GREEDY, jobs=2, progress=progress))
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    by_index = {r.index: r for r in results}
    assert isinstance(by_index[1].error, AudioError) and by_index[1].segments == []
    for index, expected in zip((0, 2, 3), alone, strict=True):
        result = by_index[index]
        assert result.error is None and result.language == "en"
        # Not a batch: each input runs its own seek loop, so the segments are the same objects'
        # values, float for float, as transcribing it alone.
        assert result.segments == expected
        audio = cast(np.ndarray, inputs[index])  # 0, 2 and 3 are arrays
        assert result.audio_s == pytest.approx(audio.size / 16_000)
    # The jobs ran on pool threads, more than one of them (not one after the other inline).
    names = set().union(*threads.values())
    assert len(names) == 2 and all(n.startswith("transcribe") for n in names)
    # One job: inline, in input order, same results.
    inline = list(int8.transcribe_each(inputs, GREEDY, jobs=1))
    assert [r.index for r in inline] == [0, 1, 2, 3]
    assert [r.segments for r in inline] == [
        r.segments for r in sorted(results, key=lambda r: r.index)
    ]
    with pytest.raises(ValueError, match="jobs"):
        list(int8.transcribe_each(inputs, GREEDY, jobs=0))


def test_split_at_pauses_cuts_in_the_silence() -> None:
    from audiototext.inference.transcribe import split_at_pauses

    rng = np.random.default_rng(5)
    loud = (0.3 * rng.standard_normal(16_000 * 9)).astype(np.float32)
    audio = np.concatenate([loud, silence(1.0), loud, silence(0.5), loud])  # 29.5 s
    cuts = split_at_pauses(audio, 3, min_part_s=5.0, search_s=6.0)
    assert len(cuts) == 2
    assert 9.0 * 16_000 < cuts[0] < 10.0 * 16_000  # inside the 1-s pause near 1/3
    assert 19.0 * 16_000 < cuts[1] < 19.5 * 16_000  # inside the 0.5-s pause near 2/3
    assert split_at_pauses(audio, 3, min_part_s=15.0) == []  # parts would be too short
    assert split_at_pauses(audio, 1) == []


def test_one_long_input_is_split_across_the_jobs(
    int8: Transcriber,
    two_sentences: np.ndarray,
    synth: SpeechSynthesizer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    from audiototext.audio import pauses as module

    other_text = "A pot of tea helps to pass the evening."
    other = synth.speak(other_text).audio
    audio = np.concatenate([two_sentences, silence(1.5), other, silence(1.5), two_sentences])
    monkeypatch.setattr(module, "SPLIT_MIN_PART_S", 4.0)
    threads: set[str] = set()

    def progress(index: int, done_s: float) -> None:
        assert index == 0
        threads.add(threading.current_thread().name)

    opts = replace(GREEDY, word_timestamps=True)
    whole = list(int8.transcribe(audio, opts))
    (cut,) = module.split_at_pauses(audio, 2, min_part_s=4.0)
    assert np.abs(audio[cut - 4000 : cut + 4000]).max() < 1e-3  # 250 ms of silence each side
    (result,) = list(int8.transcribe_each([audio], opts, jobs=2, progress=progress))
    assert result.error is None and len(threads) == 2  # two parts, side by side
    assert result.audio_s == pytest.approx(audio.size / 16_000)
    segments = result.segments
    assert [s.id for s in segments] == list(range(len(segments)))
    starts = [s.start_s for s in segments]
    assert starts == sorted(starts) and segments[-1].end_s <= audio.size / 16_000 + 0.5
    # Times are the input's, words included: the last sentence is said in the last 4 s or so.
    last_words = segments[-1].words
    assert last_words and last_words[-1].end_s > (audio.size - two_sentences.size) / 16_000
    for s in segments:
        assert all(s.start_s - 0.5 <= w.start_s <= w.end_s <= s.end_s + 0.5 for w in s.words or ())
    # Each part is exactly the transcription of its audio alone...
    alone = [*int8.transcribe(audio[:cut], opts), *int8.transcribe(audio[cut:], opts)]
    assert [s.tokens for s in segments] == [s.tokens for s in alone]
    # ...so the cut costs the second part the first part's text as prompt: a few words at most
    # (3 of 41 with int8 on AVX-512 VNNI, 0-2 with AVX2).
    reference = f"{TWO} {other_text} {TWO}"
    assert wer(reference, _text(segments)) <= wer(reference, _text(whole)) + 0.1


def test_array_input_validation(int8: Transcriber) -> None:
    with pytest.raises(AudioError):
        list(int8.transcribe(np.zeros(0, dtype=np.float32)))
    with pytest.raises(AudioError):
        list(int8.transcribe(np.zeros((2, 100), dtype=np.float32)))
    bad = np.full(16_000, np.nan, dtype=np.float32)
    assert list(int8.transcribe(bad, GREEDY)) == []  # NaN → silence, not a crash


def test_options_validate() -> None:
    with pytest.raises(ValueError):
        TranscribeOptions(beam_size=0)
    with pytest.raises(ValueError):
        TranscribeOptions(task="summarise")
    with pytest.raises(ValueError):
        TranscribeOptions(temperatures=())


@pytest.mark.slow
def test_three_hour_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 3-h WAV is turned into features block by block; memory never holds the whole file,
    nor even one block's audio."""
    rate = 16_000
    path = tmp_path / "three-hours.wav"
    minute = (0.01 * np.sin(np.arange(60 * rate) * 0.05)).astype(np.float32)
    write_wav(path, np.tile(minute, 180), rate)  # 345 MB on disk
    hours_s = 3 * 3600
    tracemalloc.start()
    try:
        stream = FeatureStream(iter_audio_chunks(path, 30.0), 80, 3000)
        seek = 0
        windows = 0
        while True:
            mel, size = stream.window(seek)
            if size == 0:
                break
            assert mel.shape == (80, size)
            del mel  # a view of the block: holding it would keep the block through the next
            seek += size
            windows += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stream.samples == hours_s * rate
    assert windows == hours_s // 30
    whole_file_mb = hours_s * rate * 4 / 2**20  # 659 MB as float32
    block_mb = BLOCK_S * rate * 4 / 2**20  # 18.3 MB of audio per block
    # Measured 23.5 MB: a block's spectrogram (up to 6 min of frames, 11.5 MB) and a few
    # 30-s chunks. Holding a block's audio whole next to its spectrogram, as before chunks
    # were let go during the block, peaked at 35.7 MB.
    assert peak / 2**20 < 1.5 * block_mb < whole_file_mb / 4


def test_feature_blocks_are_made_of_the_right_audio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block's spectrogram is computed from exactly the input's samples from the block's
    first frame on (the carried tail of the previous block, then the chunks read), and each
    window is that spectrogram's frames at ``seek``, however the seeks move."""
    from audiototext.audio import feature_stream as module
    from audiototext.audio.features import LogMelBuilder, log_mel_spectrogram

    monkeypatch.setattr(module, "BLOCK_S", 60.0)
    fed: list[list[np.ndarray]] = []

    class Recording(LogMelBuilder):
        def __init__(self, n_mels: int, *, expected_samples: int = 0) -> None:
            super().__init__(n_mels, expected_samples=expected_samples)
            fed.append([])

        def add(self, piece: ArrayLike) -> None:
            fed[-1].append(np.array(piece, copy=True))
            super().add(piece)

    monkeypatch.setattr(module, "LogMelBuilder", Recording)
    rng = np.random.default_rng(3)
    audio = white_noise(200.0, 0.1, seed=5) * np.repeat(rng.uniform(0.1, 1.0, 200), 16_000)
    audio = audio.astype(np.float32)
    chunks = (audio[i : i + 7_001] for i in range(0, audio.size, 7_001))  # odd-sized chunks
    stream = FeatureStream(chunks, 80, 3000)
    seek = 0
    blocks = 0
    while True:
        mel, size = stream.window(seek)
        if size == 0:
            break
        if len(fed) > blocks:  # a new block was computed for this window
            blocks = len(fed)
            block_audio = np.concatenate(fed[-1])
            start = stream._mel_start * 160
            assert np.array_equal(block_audio, audio[start : start + block_audio.size])
            padding = 160 if stream.exhausted else 0
            want_block = log_mel_spectrogram(block_audio, 80, padding_samples=padding)
        local = seek - stream._mel_start
        assert np.array_equal(mel, want_block[:, local : local + size])
        seek += size - int(rng.integers(0, size // 2)) if size > 100 else size
    assert blocks >= 4
    assert seek * 160 >= audio.size - 320


def test_vad_holds_a_block_of_audio_once(two_sentences: np.ndarray) -> None:
    """`--vad` on a long input: the speech of each 5-min block, in order and exact, while
    memory holds the block's audio once (the chunks were kept next to their joined copy, and
    the VAD padded a second copy: 59.6 MB for 15 min of sparse speech, now 22.0 MB)."""
    from audiototext.audio import speech_only as module
    from audiototext.audio.vad import SileroVad, get_speech_timestamps

    period = np.zeros(20 * 16_000, dtype=np.float32)
    period[: two_sentences.size] = two_sentences[: period.size]
    audio = np.tile(period, 33)  # 11 min: two full blocks and a part
    vad = SileroVad()
    options = module.TRANSCRIBE_VAD
    block = round(BLOCK_S * 16_000)
    want = [
        audio[at : at + block][span.start_sample : span.end_sample]
        for at in range(0, audio.size, block)
        for span in get_speech_timestamps(audio[at : at + block], options, vad=vad)
    ]
    chunks = (audio[i : i + 480_000].copy() for i in range(0, audio.size, 480_000))
    got = hashlib.sha256()  # not the pieces themselves: they would count in the peak
    tracemalloc.start()
    try:
        for piece in module.speech_only(chunks, vad, options, module.TimeMap()):
            assert piece.size <= 480_000 and piece.base is None  # a copy: the buffer is reused
            got.update(piece.tobytes())
            del piece
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == hashlib.sha256(b"".join(w.tobytes() for w in want)).hexdigest()
    block_mb = block * 4 / 2**20  # 18.3 MB
    assert peak / 2**20 < 1.5 * block_mb, peak / 2**20


def test_each_feature_block_is_freed_before_the_next_is_computed(
    int8: Transcriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only one block of features is alive at a time: a window left in a local of the window
    loop once kept the previous block (11 MB for a 5-minute block) alive through the next."""
    import gc
    import weakref

    from audiototext.audio import feature_stream as module

    monkeypatch.setattr(module, "BLOCK_S", 60.0)  # 60-s blocks: a 3-min input has several
    alive_at_refill: list[bool] = []
    refill = module.FeatureStream._refill

    def watched(stream: FeatureStream, seek: int) -> np.ndarray:
        previous = stream._mel
        if previous is not None:
            block = weakref.ref(previous.base if previous.base is not None else previous)
            del previous
            stream._mel = None
            gc.collect()
            alive_at_refill.append(block() is not None)
        return refill(stream, seek)

    monkeypatch.setattr(module.FeatureStream, "_refill", watched)
    list(int8.transcribe(silence(180.0), GREEDY))
    assert len(alive_at_refill) >= 2
    assert not any(alive_at_refill), alive_at_refill


# --------------------------------------------------------------------------- multilingual models
# Only tiny.en is available offline, so the multilingual paths run on a random-weight model with
# a multilingual vocabulary: tiny.en's tokenizer with every special token moved up by one (as
# in Whisper's multilingual layout: <|endoftext|> 50257, <|startoftranscript|> 50258, languages
# 50259-50357, <|translate|> 50358, <|transcribe|> 50359, ...; 51865 entries).


def _multilingual_tokenizer(english: Path, dest: Path) -> Path:
    data = json.loads(english.read_text(encoding="utf-8"))
    eot = next(t["id"] for t in data["added_tokens"] if t["content"] == "<|endoftext|>")
    for token in data["added_tokens"]:
        if token["id"] >= eot:
            token["id"] += 1
    vocab = data["model"]["vocab"]
    vocab["<|endoftext|>"] = eot + 1
    vocab["<|reserved-50256|>"] = eot  # the multilingual BPE has one more ordinary token

    def shift(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "ids" and isinstance(value, list):
                    node[key] = [i + 1 if i >= eot else i for i in value]
                else:
                    shift(value)
        elif isinstance(node, list):
            for item in node:
                shift(item)

    shift(data["post_processor"])
    dest.write_text(json.dumps(data), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory, tiny_en_source: Path) -> Multilingual:
    """(WhisperModel, the same random weights in transformers) with a multilingual vocabulary."""
    transformers = pytest.importorskip("transformers")
    from audiototext.models.convert import convert

    root = tmp_path_factory.mktemp("multilingual")
    src, out = root / "source", root / "model"
    out.mkdir()
    tok = _multilingual_tokenizer(tiny_en_source / "tokenizer.json", root / "tokenizer.json")
    make_random_whisper(src, tok, seed=3, multilingual=True)
    reference = transformers.WhisperForConditionalGeneration.from_pretrained(src).eval()
    converted = convert(src, "transformers", out)
    (out / "model_config.json").write_text(json.dumps(converted.metadata.to_json()))
    shutil.copyfile(tok, out / "tokenizer.json")
    return WhisperModel(out, OrtConfig(device="cpu", intra_op_threads=1)), reference


def _recording_prompts(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    import audiototext.inference.seek as transcribe_module

    seen: list[list[int]] = []
    # seek's own binding of it (patched below)
    original: Callable[..., list[DecodeResult]] = vars(transcribe_module)["decode_with_fallback"]

    def record(
        model: WhisperModel,
        cross: CrossAttention,
        prompts: Sequence[Sequence[int]],
        opts: DecodingOptions,
        **kw: Any,
    ) -> list[DecodeResult]:
        seen.extend(list(p) for p in prompts)
        return original(model, cross, prompts, opts, **kw)

    monkeypatch.setattr(transcribe_module, "decode_with_fallback", record)
    return seen


SHORT = TranscribeOptions(beam_size=1, temperatures=(0.0,), max_new_tokens=4)


def test_random_multilingual_model_reads_as_multilingual(multilingual: Multilingual) -> None:
    model, _ = multilingual
    tok = model.tokenizer
    assert tok.multilingual and len(tok.languages) == 99
    assert (tok.eot, tok.sot, tok.languages["en"], tok.translate) == (50257, 50258, 50259, 50358)
    assert tok.sot_sequence("de", "translate") == (50258, tok.languages["de"], 50358)


def test_language_detection_picks_the_most_probable_language_token(
    multilingual: Multilingual,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audiototext.inference.seek import detect_language

    torch = pytest.importorskip("torch")
    model, reference = multilingual
    tok = model.tokenizer
    transcriber = Transcriber(model)
    every = dict(tok.languages)
    rng = np.random.default_rng(0)
    found = set()
    for trial in range(8):
        mel = (rng.standard_normal((1, 80, 3000)) * 0.5 - 0.3).astype(np.float32)
        cross = model.encode(mel)
        with torch.no_grad():  # the transformers model with the same weights: independent
            ref = (
                reference(
                    input_features=torch.from_numpy(mel),
                    decoder_input_ids=torch.tensor([[tok.sot]]),
                )
                .logits[0, -1]
                .numpy()
            )
        onnx_logits, _, _ = model.forward_full(cross, [[tok.sot]])
        # A random model hardly listens to the audio, so vary the candidate languages instead
        # (as a model knowing only these would): the winner must change with them.
        subset = sorted(every, key=every.__getitem__)
        if trial:
            subset = sorted(str(c) for c in rng.choice(subset, size=12, replace=False))
        monkeypatch.setattr(tok, "languages", {c: every[c] for c in subset})
        detected = detect_language(transcriber.model, cross)
        ids = [every[c] for c in subset]
        # Directly from our decoder's logits at the first step after <|startoftranscript|>...
        assert detected == subset[int(np.argmax(onnx_logits[0, 0, ids]))]
        top2 = np.sort(ref[ids])[-2:]
        if top2[1] - top2[0] > 1e-3:  # ...and from transformers' unless a near-tie
            assert detected == subset[int(np.argmax(ref[ids]))]
        found.add(detected)
    assert len(found) > 2


def test_transcribe_detects_once_and_prompts_with_the_language(
    multilingual: Multilingual,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audiototext.inference.seek import detect_language

    model, _ = multilingual
    tok = model.tokenizer
    transcriber = Transcriber(model)
    prompts = _recording_prompts(monkeypatch)
    audio = white_noise(65.0, 0.1, seed=1)  # three windows
    result = transcriber.transcribe(audio, SHORT)
    list(result)
    mel = FeatureStream(iter([audio]), 80, 3000).window(0)[0]
    expected = detect_language(model, model.encode(mel[None]))
    assert result.language == expected
    assert len(prompts) >= 3
    for prompt in prompts:
        at = prompt.index(tok.sot)
        assert prompt[at : at + 3] == [tok.sot, tok.languages[expected], tok.transcribe]


def test_language_and_task_are_forced(
    multilingual: Multilingual,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audiototext.inference import seek

    model, _ = multilingual
    tok = model.tokenizer
    transcriber = Transcriber(model)

    def no_detection(model: object, cross: object) -> str:
        raise AssertionError("a given language must not be detected")

    monkeypatch.setattr(seek, "detect_language", no_detection)
    prompts = _recording_prompts(monkeypatch)
    audio = white_noise(5.0, 0.1, seed=2)
    result = transcriber.transcribe(audio, replace(SHORT, language="de", task="translate"))
    list(result)
    assert result.language == "de"
    assert prompts and all(
        p[p.index(tok.sot) : p.index(tok.sot) + 3] == [tok.sot, tok.languages["de"], tok.translate]
        for p in prompts
    )
    assert all(tok.transcribe not in p for p in prompts)
    with pytest.raises(ConfigError, match="unknown language 'xx'"):
        transcriber.transcribe(audio, replace(SHORT, language="xx"))


def test_english_only_model_refuses_translation_and_other_languages(int8: Transcriber) -> None:
    audio = silence(1.0)
    for options, why in (
        (replace(GREEDY, task="translate"), "cannot translate"),
        (replace(GREEDY, language="de"), "cannot transcribe language 'de'"),
    ):
        with pytest.raises(ConfigError, match=f"English-only.*{why}"):
            int8.check_options(options)
        with pytest.raises(ConfigError, match="English-only"):
            int8.transcribe(audio, options)
    assert int8.check_options(replace(GREEDY, language="en")) == "en"
    assert int8.check_options(GREEDY) == "en"


@pytest.mark.parametrize("beam_size", [1, 5])
def test_transcribing_from_the_cache_loads_neither_onnx_nor_the_hub_client(
    filled_cache: object, synth: SpeechSynthesizer, tmp_path: Path, beam_size: int
) -> None:
    """A cached model is used without the manager: onnx and huggingface_hub (~19 MB) stay out.

    Beam search (the CLI's default) runs its TopK and cache-reorder graphs from the files
    shipped in the package, not built with onnx.
    """
    import os
    import subprocess
    import sys

    speech = synth.speak("The cat sat on the mat and looked at the door.")
    wav = write_wav(tmp_path / "speech.wav", speech.audio, speech.sample_rate_hz)
    beam_ran = (
        "import audiototext.inference.helper_graphs as h\n"
        "assert h.top_k_session.cache_info().currsize == 1, 'beam search did not run'\n"
        if beam_size > 1
        else ""
    )
    code = (
        "import sys\n"
        "from audiototext.inference import TranscribeOptions, Transcriber\n"
        "t = Transcriber.load('tiny.en', precision='int8')\n"
        f"segments = t.transcribe({str(wav)!r}, TranscribeOptions(beam_size={beam_size}))\n"
        "text = ''.join(s.text for s in segments)\n"
        f"{beam_ran}"
        "heavy = sorted(m for m in ('onnx', 'huggingface_hub', 'audiototext.models.manager') "
        "if m in sys.modules)\n"
        "print(repr(text)); print(heavy)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "cat" in out.stdout.lower()
