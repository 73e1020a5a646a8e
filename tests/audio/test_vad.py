from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper

from audiototext.audio import vad as vad_module
from audiototext.audio.vad import (
    FRAME_SAMPLES,
    SileroVad,
    SpeechEndpointDetector,
    SpeechEvent,
    SpeechEventKind,
    SpeechSpan,
    VadOptions,
    VadState,
    get_speech_timestamps,
    spans_from_probabilities,
)
from audiototext.errors import ModelError
from support.speech import Speech, add_white_noise, join_with_gaps, silence, white_noise

ASSETS = Path(vad_module.__file__).parent / "assets"

OPTION_SETS = [
    VadOptions(),
    # faster-whisper's defaults for transcription
    VadOptions(min_speech_duration_ms=0, min_silence_duration_ms=2000, speech_pad_ms=400),
    VadOptions(threshold=0.6, neg_threshold=0.3, min_silence_duration_ms=300),
    VadOptions(max_speech_duration_s=2.0),
    VadOptions(max_speech_duration_s=1.0, min_silence_duration_ms=50),
]


def _pairs(spans: list[SpeechSpan]) -> list[tuple[int, int]]:
    return [(span.start_sample, span.end_sample) for span in spans]


@pytest.fixture(scope="module")
def conversation(sentences: list[Speech]) -> tuple[NDArray[np.float32], list[tuple[int, int]]]:
    """Three sentences with 1.5 s of silence around each; and where each sentence is."""
    return join_with_gaps([s.audio for s in sentences], gap_s=1.5)


def test_model_and_licence_are_shipped() -> None:
    assert (ASSETS / "silero_vad.onnx").stat().st_size > 1_000_000
    licence = (ASSETS / "SILERO_VAD_LICENSE").read_text()
    assert "MIT License" in licence
    assert "Silero Team" in licence


def test_model_interface() -> None:
    session = ort.InferenceSession(
        str(ASSETS / "silero_vad.onnx"), providers=["CPUExecutionProvider"]
    )
    inputs = {node.name: node.shape for node in session.get_inputs()}
    outputs = [node.name for node in session.get_outputs()]
    assert inputs["input"][1] == FRAME_SAMPLES + vad_module.CONTEXT_SAMPLES
    assert inputs["h"] == inputs["c"] == [1, 1, 128]
    assert outputs == ["speech_probs", "hn", "cn"]


def test_probabilities_match_faster_whisper(
    vad: SileroVad, conversation: tuple[NDArray[np.float32], list[tuple[int, int]]]
) -> None:
    fw_vad = pytest.importorskip("faster_whisper.vad")
    audio, _ = conversation
    ours = vad.speech_probabilities(audio)
    padded = np.pad(audio, (0, FRAME_SAMPLES - audio.size % FRAME_SAMPLES))
    reference = fw_vad.get_vad_model()(padded)
    assert ours.shape == (math.ceil(audio.size / FRAME_SAMPLES),)
    np.testing.assert_allclose(ours, reference[: ours.size], rtol=0, atol=1e-5)


@pytest.mark.parametrize("options", OPTION_SETS)
def test_spans_match_faster_whisper(
    vad: SileroVad,
    conversation: tuple[NDArray[np.float32], list[tuple[int, int]]],
    options: VadOptions,
) -> None:
    fw_vad = pytest.importorskip("faster_whisper.vad")
    audio, _ = conversation
    reference = fw_vad.get_speech_timestamps(
        audio,
        fw_vad.VadOptions(
            threshold=options.threshold,
            neg_threshold=options.neg_threshold,
            min_speech_duration_ms=options.min_speech_duration_ms,
            max_speech_duration_s=options.max_speech_duration_s,
            min_silence_duration_ms=options.min_silence_duration_ms,
            speech_pad_ms=options.speech_pad_ms,
        ),
    )
    ours = get_speech_timestamps(audio, options, vad=vad)
    assert ours
    assert _pairs(ours) == [(span["start"], span["end"]) for span in reference]


def test_speech_spans_cover_the_spoken_parts(
    vad: SileroVad, conversation: tuple[NDArray[np.float32], list[tuple[int, int]]]
) -> None:
    audio, parts = conversation
    for noisy in (audio, add_white_noise(audio, snr_db=10.0, seed=2)):
        spans = get_speech_timestamps(noisy, vad=vad)
        margin = 1_600  # 100 ms
        for span in spans:
            assert any(
                s - margin <= span.start_sample and span.end_sample <= e + margin for s, e in parts
            ), span
        for start, end in parts:
            covered = sum(
                max(0, min(end, span.end_sample) - max(start, span.start_sample)) for span in spans
            )
            assert covered > 0.7 * (end - start)


@pytest.mark.parametrize(
    "audio",
    [silence(5.0), white_noise(5.0, 0.1, seed=1), white_noise(5.0, 0.5, seed=2)],
    ids=["silence", "quiet-noise", "loud-noise"],
)
def test_no_speech_in_silence_or_noise(vad: SileroVad, audio: NDArray[np.float32]) -> None:
    assert get_speech_timestamps(audio, vad=vad) == []


def test_empty_audio() -> None:
    assert get_speech_timestamps(np.zeros(0, dtype=np.float32)) == []


def test_streaming_states_are_independent(
    vad: SileroVad, conversation: tuple[NDArray[np.float32], list[tuple[int, int]]]
) -> None:
    audio, _ = conversation
    audio = audio[: audio.size - audio.size % FRAME_SAMPLES]
    other = np.ascontiguousarray(audio[::-1])
    whole = vad.speech_probabilities(audio)
    whole_other = vad.speech_probabilities(other)

    # Two interleaved streams in uneven pieces (multiples of a frame) share one model.
    first, second = VadState(), VadState()
    pieces_a, pieces_b = [], []
    bounds = [0, 512, 4608, 5120, 40_960, audio.size]
    for lo, hi in itertools.pairwise(bounds):
        pieces_a.append(vad.process(audio[lo:hi], first))
        pieces_b.append(vad.process(other[lo:hi], second))

    np.testing.assert_allclose(np.concatenate(pieces_a), whole, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(pieces_b), whole_other, rtol=0, atol=1e-5)


def test_process_rejects_partial_frames(vad: SileroVad) -> None:
    with pytest.raises(ValueError):
        vad.process(np.zeros(500, dtype=np.float32), VadState())
    assert vad.process(np.zeros(0, dtype=np.float32), VadState()).size == 0


def _feed_in_random_pieces(
    detector: SpeechEndpointDetector, audio: NDArray[np.float32], seed: int
) -> list[SpeechEvent]:
    rng = np.random.default_rng(seed)
    events: list[SpeechEvent] = []
    position = 0
    while position < audio.size:
        size = int(rng.integers(1, 6_000))
        events += detector.feed(audio[position : position + size])
        position += size
    return events + detector.flush()


@pytest.mark.parametrize("options", OPTION_SETS[:3])
def test_endpoint_detector_matches_file_spans(
    vad: SileroVad,
    conversation: tuple[NDArray[np.float32], list[tuple[int, int]]],
    options: VadOptions,
) -> None:
    audio, _ = conversation
    expected = _pairs(get_speech_timestamps(audio, options, vad=vad))

    events = _feed_in_random_pieces(SpeechEndpointDetector(vad, options), audio, seed=3)

    kinds = [event.kind for event in events]
    assert kinds == [SpeechEventKind.START, SpeechEventKind.END] * (len(events) // 2)
    pairs = [(events[i].sample, events[i + 1].sample) for i in range(0, len(events), 2)]
    assert pairs == expected


def test_endpoint_detector_reports_events_as_they_happen(
    vad: SileroVad, sentences: list[Speech]
) -> None:
    detector = SpeechEndpointDetector(vad, VadOptions(min_silence_duration_ms=500))
    speech = sentences[1].audio
    assert detector.feed(silence(1.0)) == []
    assert not detector.in_speech

    started = detector.feed(speech[:16_000])
    assert [e.kind for e in started] == [SpeechEventKind.START]
    assert 16_000 - 800 <= started[0].sample <= 16_000 + 8_000
    assert detector.in_speech
    assert detector.last_probability > 0.5

    ended = detector.feed(speech[16_000:]) + detector.feed(silence(1.0))
    assert [e.kind for e in ended][-1] is SpeechEventKind.END
    assert not detector.in_speech
    assert ended[-1].sample <= detector.samples_received
    assert detector.flush() == []
    assert detector.samples_received == 0  # flush resets for a new stream


def test_endpoint_detector_closes_speech_at_end_of_stream(
    vad: SileroVad, sentences: list[Speech]
) -> None:
    detector = SpeechEndpointDetector(vad)
    audio = np.concatenate([silence(0.5), sentences[0].audio[:12_000]])
    events = detector.feed(audio)
    assert [e.kind for e in events] == [SpeechEventKind.START]
    final = detector.flush()
    assert final == [SpeechEvent(SpeechEventKind.END, audio.size)]
    assert final[0].time_s == pytest.approx(audio.size / 16_000)


def test_spans_from_probabilities_by_hand() -> None:
    frames = [0.0] * 10 + [0.9] * 20 + [0.0] * 10 + [0.9] * 2 + [0.0] * 10
    spans = spans_from_probabilities(frames, len(frames) * FRAME_SAMPLES)
    pad = 480
    # the 2-frame blip (64 ms) is shorter than min_speech_duration_ms and dropped
    assert spans == [SpeechSpan(10 * FRAME_SAMPLES - pad, 30 * FRAME_SAMPLES + pad)]
    assert spans[0].duration_s == pytest.approx((20 * FRAME_SAMPLES + 2 * pad) / 16_000)


def test_options_validation() -> None:
    assert VadOptions().effective_neg_threshold == pytest.approx(0.35)
    assert VadOptions(threshold=0.1).effective_neg_threshold == pytest.approx(0.01)
    for bad in (
        {"threshold": 1.5},
        {"threshold": 0.5, "neg_threshold": 0.7},
        {"min_speech_duration_ms": -1},
        {"min_silence_duration_ms": -1},
        {"speech_pad_ms": -5},
        {"max_speech_duration_s": 0.0},
    ):
        with pytest.raises(ValueError):
            VadOptions(**bad)
    with pytest.raises(ValueError):
        SpeechSpan(10, 5)


def _per_frame_model(path: Path, input_names: tuple[str, str, str]) -> Path:
    """A stand-in for Silero's per-frame export: p = sigmoid(mean(frame)), state += 1."""
    audio_name, state_name, rate_name = input_names
    nodes = [
        helper.make_node("ReduceMean", [audio_name], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Cast", [rate_name], ["rate_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["rate_f", "zero"], ["rate_0"]),
        helper.make_node("Add", ["mean", "rate_0"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["output"]),
        helper.make_node("Add", [state_name, "one"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_silero",
        [
            helper.make_tensor_value_info(audio_name, TensorProto.FLOAT, ["batch", 576]),
            helper.make_tensor_value_info(state_name, TensorProto.FLOAT, [2, "batch", 128]),
            helper.make_tensor_value_info(rate_name, TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 128]),
        ],
        initializer=[
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_accepts_silero_per_frame_export(tmp_path: Path) -> None:
    vad = SileroVad(_per_frame_model(tmp_path / "frame.onnx", ("input", "state", "sr")))
    state = VadState()
    audio = np.full(3 * FRAME_SAMPLES, 0.5, dtype=np.float32)

    probabilities = vad.process(audio, state)

    first = 1 / (1 + math.exp(-0.5 * FRAME_SAMPLES / 576))  # first frame has zero context
    np.testing.assert_allclose(
        probabilities, [first, 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-0.5))], rtol=1e-6
    )
    np.testing.assert_array_equal(state.recurrent, np.full((2, 1, 128), 3.0))
    np.testing.assert_array_equal(state.context, np.full(64, 0.5))


def test_rejects_other_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a Silero VAD model"):
        SileroVad(_per_frame_model(tmp_path / "other.onnx", ("x", "s", "rate")))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        SileroVad(broken)


def test_whole_recording_is_scored_run_by_run(
    vad: SileroVad,
    conversation: tuple[NDArray[np.float32], list[tuple[int, int]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`speech_probabilities` scores a recording one run at a time: the same values as one
    `process` call on the whole padded recording, without a padded copy of it."""
    audio, _ = conversation
    audio = audio[: audio.size - audio.size % FRAME_SAMPLES - 100]  # a partial last frame
    monkeypatch.setattr(vad_module, "_MAX_FRAMES_PER_RUN", 16)  # many runs
    padded = np.pad(audio, (0, FRAME_SAMPLES - audio.size % FRAME_SAMPLES))
    want = vad.process(padded, VadState())
    got = vad.speech_probabilities(audio)
    assert np.array_equal(got, want)


def test_scoring_a_long_recording_holds_one_run_of_input(vad: SileroVad) -> None:
    import tracemalloc

    audio = white_noise(300.0, 0.1, seed=2)  # 19 MB
    tracemalloc.start()
    try:
        probabilities = vad.speech_probabilities(audio)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert probabilities.shape == (math.ceil(audio.size / FRAME_SAMPLES),)
    # One run's model input is 512 frames x 576 samples = 1.2 MB; a padded copy and the
    # whole recording's model input were 41 MB.
    assert peak < 4 * 2**20, peak / 2**20
