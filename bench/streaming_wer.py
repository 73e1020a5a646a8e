"""Offline experiments on how streaming finals are decoded, without the real-time scheduler.

Run: ``.venv/bin/python bench/streaming_wer.py [--cache DIR] [--only NAME ...] [--analyse NAME]``

The clip set of ``tests/streaming/corpus.py`` (20 espeak-ng sentences in 4 clips) is cut into
utterances exactly as a stream cuts it: the streaming engine's endpoint detector (Silero VAD,
600 ms of silence, 30 ms of VAD padding) is fed each clip in 100-ms pieces, as the WER test
streams it. Every strategy then decodes those utterances one by one, in stream order, with
what a stream would have at that moment (earlier audio, and the strategy's own earlier final
texts), and the texts of each clip are joined and scored against the reference with the same
normaliser and the same references as the file transcription of the same clips.

Per strategy it reports the corpus WER, the encoder frames per final, and the CPU time per
final (``time.process_time`` with one ONNX Runtime thread; encoding and decoding of a final,
no partials). ``--committed`` also replays the committed words of a real streaming run (the
final keeps the words its partials showed), which is what the engine finally emits.
``--analyse NAME`` prints, per sentence, where that strategy and the file path differ.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "streaming")]

from streaming_helpers import edit_distance, normalise, stream_audio, wer  # noqa: E402

from audiototext.audio import (  # noqa: E402
    SAMPLE_RATE_HZ,
    SileroVad,
    SpeechEndpointDetector,
    VadOptions,
)
from audiototext.audio import SpeechEventKind as VadKind  # noqa: E402
from audiototext.audio.features import HOP_LENGTH_SAMPLES  # noqa: E402
from audiototext.evaluation import wer as package_wer  # noqa: E402
from audiototext.inference import OrtConfig, Transcriber, WhisperModel  # noqa: E402
from audiototext.inference.decoding import DecodingOptions, decode_with_fallback  # noqa: E402
from audiototext.streaming import RecognizerOptions, StreamingRecognizer, StreamOptions  # noqa: E402
from audiototext.streaming._decode import (  # noqa: E402
    collapse_repeats,
    encoder_input,
    greedy_decode,
    is_noise,
    max_new_tokens_for,
)
from audiototext.streaming._merge import merge_committed  # noqa: E402
from audiototext.streaming.state import FinalHistory  # noqa: E402
from corpus import SENTENCES, clips_with_spans, fable_sentences  # noqa: E402
from support.speech import SpeechSynthesizer  # noqa: E402

FloatArray = NDArray[np.float32]
HOP = HOP_LENGTH_SAMPLES
TS_STEP_S = 0.02


@dataclass(frozen=True)
class Utterance:
    clip: int
    start: int  # samples in the clip, as the endpoint detector reported them
    stop: int


@dataclass(frozen=True)
class Strategy:
    """How a final is decoded.

    context_s: earlier audio decoded with the utterance: 0 none, -1 the previous utterance
        only (when it fits in a window), else earlier utterances while the whole input stays
        within this many seconds; their final texts are forced as the decoder's prefix.
    beam: beam width (1 greedy). timestamps: decode in timestamp mode (the prefix then carries
        the earlier utterances' VAD times as timestamp tokens), as the file path decodes.
    padding_s: zero frames after the audio (30 pads to a full window).
    context_pad_ms: audio kept around the VAD's bounds. prev_prompt: earlier text as a
        ``<|startofprev|>`` prompt instead of a forced prefix (Whisper's conditioning).
    """

    name: str
    context_s: float = -1
    beam: int = 1
    timestamps: bool = False
    padding_s: float = 1.0
    context_pad_ms: int = 300
    prev_prompt: bool = False
    fallback: bool = False
    context_audio: bool = True  # False: earlier texts forced without their audio
    causal_file: bool = False  # the file path itself on the stream's audio up to this final
    tail_ms: int | None = None  # audio kept after the VAD end (None: context_pad_ms)
    silence_ms: int = 0  # zeros appended after it
    engine: bool = False  # decode with the engine's own FinalDecoder (streaming/_final.py)
    words: bool = False  # with word timings (engine only)
    context_beam: int = 1  # engine: beam width of finals after earlier text
    # engine: every final asked for ``reduced`` (as under load: the previous utterance only,
    # ``context_beam`` after it), first finals with or without the temperature fallback
    reduced: bool = False
    reduced_fallback: bool = False


@dataclass
class Outcome:
    strategy: Strategy
    texts: list[list[str]]  # per clip, per utterance
    frames: list[int] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    prefix_tokens: list[int] = field(default_factory=list)
    words: list[tuple[int, Utterance, str, tuple[object, ...]]] = field(default_factory=list)


def stream_utterances(
    vad: SileroVad, clip: int, audio: FloatArray, endpoint_ms: int | None = None
) -> list[Utterance]:
    """The utterances a stream finds: the session's use of the endpoint detector, replayed."""
    opts = (
        StreamOptions() if endpoint_ms is None else StreamOptions(endpoint_silence_ms=endpoint_ms)
    )
    detector = SpeechEndpointDetector(
        vad,
        VadOptions(
            min_silence_duration_ms=opts.endpoint_silence_ms,
            max_speech_duration_s=opts.max_segment_s,
            speech_pad_ms=30,
        ),
    )
    out: list[Utterance] = []
    start: int | None = None
    last_stop = 0
    piece = SAMPLE_RATE_HZ // 10
    events = []
    for at in range(0, audio.shape[0], piece):
        events += detector.feed(audio[at : at + piece])
    events += detector.flush()
    for e in events:
        if e.kind is VadKind.START and start is None:
            start = max(e.sample, last_stop)
        elif e.kind is VadKind.END and start is not None:
            stop = max(e.sample, start)
            out.append(Utterance(clip, start, stop))
            last_stop, start = stop, None
    if start is not None:
        out.append(Utterance(clip, start, audio.shape[0]))
    return out


def _ts(tok_begin: int, seconds: float) -> int:
    return tok_begin + max(0, min(1500, round(seconds / TS_STEP_S)))


def decode_final(
    model: WhisperModel,
    strategy: Strategy,
    audio: FloatArray,
    utt: Utterance,
    history: list[tuple[Utterance, list[int]]],
) -> tuple[str, list[int], int, int]:
    """Decode one final; (text, its tokens, encoder frames, prefix length)."""
    tok = model.tokenizer
    pad = strategy.context_pad_ms * SAMPLE_RATE_HZ // 1000
    window = model.window_frames * HOP
    lo = max(utt.start - pad, 0)
    tail = pad if strategy.tail_ms is None else strategy.tail_ms * SAMPLE_RATE_HZ // 1000
    hi = min(utt.stop + tail, audio.shape[0])
    used: list[tuple[Utterance, list[int]]] = []
    if strategy.context_s == -1:
        if history and hi - max(history[-1][0].start - pad, 0) < window:
            used = history[-1:]
    elif strategy.context_s > 0:
        limit = round(strategy.context_s * SAMPLE_RATE_HZ)
        for prev, tokens in reversed(history):
            if hi - max(prev.start - pad, 0) > min(limit, window):
                break
            used.insert(0, (prev, tokens))
    context_lo = max(used[0][0].start - pad, 0) if used else lo
    if strategy.causal_file:
        # context_s 0: everything up to hi (the bound); else the utterances in the context only
        start = 0 if strategy.context_s == 0 else context_lo
        return causal_file(model, audio, lo, hi, start, strategy.beam), [], (hi - start) // HOP, 0
    if strategy.context_audio:
        lo = context_lo
    clip = audio[lo:hi]
    if strategy.silence_ms:
        zeros = np.zeros(strategy.silence_ms * SAMPLE_RATE_HZ // 1000, dtype=np.float32)
        clip = np.concatenate([clip, zeros])
    clip = clip[:window]
    frames = (
        model.window_frames
        if strategy.padding_s >= 30
        else min(model.window_frames, _bucket(clip.shape[0], strategy.padding_s))
    )
    mel = encoder_input(clip, model.n_mels, frames, model.window_frames)[None]
    cross = model.encode(mel)
    sot = list(tok.sot_sequence(None))
    prefix: list[int] = []
    prompt_prev: list[int] = []
    for prev, tokens in used:
        if strategy.prev_prompt:
            prompt_prev += tokens
        elif strategy.timestamps:
            prefix += [
                _ts(tok.timestamp_begin, (max(prev.start - pad, 0) - lo) / SAMPLE_RATE_HZ),
                *tokens,
                _ts(tok.timestamp_begin, (min(prev.stop + pad, hi) - lo) / SAMPLE_RATE_HZ),
            ]
        else:
            prefix += tokens
    prefix = prefix[-120:]
    head = [tok.sot_prev, *prompt_prev[-100:]] if prompt_prev else []
    if strategy.timestamps or strategy.beam > 1 or strategy.fallback:
        prompt = [*head, *sot]
        if not strategy.timestamps:
            prompt.append(tok.no_timestamps)
        if prefix and not strategy.timestamps:
            # Text-only with a forced prefix: the inference search infers timestamp mode from
            # the prompt's last token, so run its beam search with the text-only rules.
            from audiototext.inference import decoding as d

            opts = DecodingOptions(
                beam_size=strategy.beam,
                best_of=strategy.beam,
                suppress_tokens=tok.default_suppress_tokens(),
            )
            rules = d._Rules(tok, opts, model.dims.n_vocab, False)
            if strategy.beam > 1:
                hyps, ns = d._beam_search(model, cross, [prompt + prefix], opts, rules, None)
            else:
                hyps, ns = d._independent_search(
                    model,
                    cross,
                    [prompt + prefix],
                    opts,
                    rules,
                    0.0,
                    1,
                    np.random.default_rng(0),
                    None,
                )
            r = d._result(tok, hyps[0], ns[0], 0.0)
        else:
            opts = DecodingOptions(
                beam_size=strategy.beam,
                best_of=strategy.beam,
                suppress_tokens=tok.default_suppress_tokens(),
                max_initial_timestamp_s=30.0 if prefix else 1.0,
                temperatures=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if strategy.fallback else (0.0,),
            )
            r = decode_with_fallback(model, cross, [prompt + prefix], opts)[0]
        new = [t for t in r.tokens if t < tok.eot]
        text = tok.decode(new).strip()
        noise = is_noise(text, r.avg_logprob, r.no_speech_prob, r.compression_ratio)
    else:
        prompt = [*head, *sot, tok.no_timestamps]
        budget = max_new_tokens_for(clip.shape[0] / SAMPLE_RATE_HZ)
        hyp = greedy_decode(model, cross, [prompt], [prefix], [budget])[0]
        new = list(hyp.new_tokens)
        text = collapse_repeats(tok.decode(new).strip())
        noise = is_noise(text, hyp.avg_logprob, hyp.no_speech_prob, hyp.compression_ratio)
    if noise:
        return "", [], frames, len(prefix)
    return text, tok.encode(" " + text), frames, len(prefix)


def causal_file(
    model: WhisperModel, audio: FloatArray, lo: int, hi: int, start: int = 0, beam: int = 5
) -> str:
    """File transcription of the audio from ``start`` up to ``hi`` (its earlier utterances
    decoded freely, not forced); the words said after ``lo``."""
    from audiototext.inference.transcribe import TranscribeOptions

    options = TranscribeOptions(word_timestamps=True, beam_size=beam)
    segments = Transcriber(model).transcribe(audio[start:hi], options)
    at = (lo - start) / SAMPLE_RATE_HZ
    words = [w.text for s in segments for w in s.words or () if (w.start_s + w.end_s) / 2 >= at]
    return "".join(words).strip()


def _bucket(samples: int, padding_s: float) -> int:
    frames = samples // HOP + round(padding_s * 100)
    return -(-frames // 50) * 50


def run_strategy(
    model: WhisperModel,
    strategy: Strategy,
    clips: list[tuple[FloatArray, str, list[tuple[int, int]], list[str]]],
    utterances: list[list[Utterance]],
    committed: list[list[str]] | None,
) -> Outcome:
    outcome = Outcome(strategy, [])
    if strategy.engine:
        return run_engine(model, strategy, clips, utterances, committed, outcome)
    for c, (audio, _, _, _) in enumerate(clips):
        history: list[tuple[Utterance, list[int]]] = []
        texts: list[str] = []
        for u, utt in enumerate(utterances[c]):
            began = time.process_time()
            text, tokens, frames, n_prefix = decode_final(model, strategy, audio, utt, history)
            outcome.cpu_ms.append(1000 * (time.process_time() - began))
            outcome.frames.append(frames)
            outcome.prefix_tokens.append(n_prefix)
            if committed is not None and u < len(committed[c]):
                text = merge_committed(committed[c][u], text)
            if text:
                tokens = model.tokenizer.encode(" " + text)
                history.append((utt, tokens))
            texts.append(text)
        outcome.texts.append(texts)
    return outcome


@dataclass
class _ClipRing:
    audio: FloatArray
    start: int = 0

    def read(self, start: int, stop: int) -> FloatArray:
        return self.audio[start:stop]


@dataclass(eq=False)
class _ClipSession:
    ring: _ClipRing
    vad_position: int
    final_history: FinalHistory = field(default_factory=FinalHistory)


def run_engine(
    model: WhisperModel,
    strategy: Strategy,
    clips: list[tuple[FloatArray, str, list[tuple[int, int]], list[str]]],
    utterances: list[list[Utterance]],
    committed: list[list[str]] | None,
    outcome: Outcome,
) -> Outcome:
    """The engine's final decoder on the same utterances, one final at a time."""
    from audiototext.streaming._final import FinalDecoder, FinalRequest

    tok = model.tokenizer
    settings = replace(
        RecognizerOptions().final_settings(),
        context_pad_ms=strategy.context_pad_ms,
        tail_ms=strategy.context_pad_ms if strategy.tail_ms is None else strategy.tail_ms,
        silence_ms=strategy.silence_ms,
        padding_s=min(strategy.padding_s, 30.0),
        padded=strategy.padding_s >= 30,
        context=strategy.context_s != 0,
        context_s=max(strategy.context_s, 0.0),  # -1: the previous utterance only
        beam_size=strategy.beam,
        context_beam_size=strategy.context_beam,
        words=strategy.words,
        reduced_context_s=0.0,
        reduced_beam_size=strategy.context_beam,
        reduced_fallback=strategy.reduced_fallback,
    )
    decoder = FinalDecoder(model, settings)
    prompt = [*tok.sot_sequence(None), tok.no_timestamps]
    outcome.words = []
    for c, (audio, _, _, _) in enumerate(clips):
        session = _ClipSession(_ClipRing(audio), audio.shape[0])
        texts: list[str] = []
        for u, utt in enumerate(utterances[c]):
            request = FinalRequest(
                session, u, utt.start, utt.stop, prompt, reduced=strategy.reduced
            )
            began = time.process_time()
            text = decoder.decode([request], 1)[0]
            outcome.cpu_ms.append(1000 * (time.process_time() - began))
            plan = decoder.plan(request)
            outcome.frames.append(plan.frames)
            outcome.prefix_tokens.append(len(plan.prefix))
            words = decoder.words_for(session, u, utt.start, utt.stop, text)
            if committed is not None and u < len(committed[c]):
                text = merge_committed(committed[c][u], text)
            if text:
                decoder.remember(session, decoder.own_start(request), tok.encode(" " + text))
            outcome.words.append((c, utt, text, words))
            texts.append(text)
        outcome.texts.append(texts)
    return outcome


def committed_words(
    model: WhisperModel, vad: SileroVad, clips: list[tuple[FloatArray, str, object, object]]
) -> list[list[str]]:
    """Committed words per utterance of a real streaming run (last partial's stable text)."""
    rec = StreamingRecognizer(model, RecognizerOptions(adaptive_partials=False), vad=vad)

    async def run() -> list[list[str]]:
        out = []
        for audio, *_ in clips:
            log = await stream_audio(rec.open(), audio, SAMPLE_RATE_HZ, chunk=100)
            stable: dict[int, str] = {}
            for r in log.results:
                if not r.is_final:
                    stable[r.utterance_id] = r.stable_text
            ids = [r.utterance_id for r in log.finals]
            out.append([stable.get(i, "") for i in ids])
        return out

    try:
        return asyncio.run(run())
    finally:
        rec.close()


def sentence_of(spans: list[tuple[int, int]], start: float, stop: float) -> int:
    overlaps = [max(0.0, min(stop, b) - max(start, a)) for a, b in spans]
    return int(np.argmax(overlaps))


# The engine's defaults (RecognizerOptions): 100 ms of tail, 300 ms of zeros, beam search for
# finals without earlier text, word timings.
ENGINE: dict[str, Any] = {
    "engine": True,
    "tail_ms": 100,
    "silence_ms": 300,
    "beam": 5,
    "words": True,
}

STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("causal-file", context_s=0, beam=5, causal_file=True),
        # The file path over the utterances within the context only, decoded freely (no
        # forced prefix: an earlier final's error is not carried into this one).
        *(
            Strategy(f"free-{c}-beam{b}", context_s=c, beam=b, causal_file=True)
            for c in (-1, 12, 20)
            for b in (1, 5)
        ),
        Strategy("none-greedy", context_s=0),
        Strategy("textprefix-greedy", context_s=-1, context_audio=False),
        Strategy("none-beam5-ts", context_s=0, beam=5, timestamps=True),
        Strategy("prev-greedy", context_s=-1),
        Strategy("prev-beam5", context_s=-1, beam=5),
        Strategy("prev-greedy-ts", context_s=-1, timestamps=True),
        Strategy("prev-beam5-ts", context_s=-1, beam=5, timestamps=True),
        Strategy("prev-prompt-greedy", context_s=-1, prev_prompt=True),
        Strategy("fill10-greedy", context_s=10),
        Strategy("fill20-greedy", context_s=20),
        Strategy("fill28-greedy", context_s=28),
        Strategy("fill10-beam5", context_s=10, beam=5),
        Strategy("fill28-beam5", context_s=28, beam=5),
        Strategy("fill10-greedy-ts", context_s=10, timestamps=True),
        Strategy("fill28-greedy-ts", context_s=28, timestamps=True),
        Strategy("fill10-beam5-ts", context_s=10, beam=5, timestamps=True),
        Strategy("fill20-beam5-ts", context_s=20, beam=5, timestamps=True),
        Strategy("fill28-beam5-ts", context_s=28, beam=5, timestamps=True),
        Strategy("fill28-beam5-ts-pad30", context_s=28, beam=5, timestamps=True, padding_s=30),
        Strategy("prev-greedy-tail100-zeros300", context_s=-1, tail_ms=100, silence_ms=300),
        Strategy("fill20-greedy-tail100-zeros300", context_s=20, tail_ms=100, silence_ms=300),
        Strategy("engine-none", context_s=0, **ENGINE),
        Strategy("engine-prev", context_s=-1, **ENGINE),
        Strategy("engine-prev+10", context_s=10, **ENGINE),
        Strategy("engine-prev+20", context_s=20, **ENGINE),
        Strategy("engine-prev+28", context_s=28, **ENGINE),
        Strategy("engine-prev+10-nowords", context_s=10, **{**ENGINE, "words": False}),
        Strategy("engine-prev-beam5", context_s=-1, context_beam=5, **ENGINE),
        Strategy("engine-prev+10-beam5", context_s=10, context_beam=5, **ENGINE),
        Strategy("engine-prev+20-beam5", context_s=20, context_beam=5, **ENGINE),
        Strategy("engine-prev+28-beam5", context_s=28, context_beam=5, **ENGINE),
        # How soon a final can start: less real tail (more zeros) lets it start earlier.
        *(
            Strategy(
                f"engine-prev+20-beam5-tail{t}-zeros{400 - t}",
                context_s=20,
                context_beam=5,
                **{**ENGINE, "tail_ms": t, "silence_ms": 400 - t},
            )
            for t in (0, 30, 50)
        ),
        Strategy("engine-prev+8-beam5", context_s=8, context_beam=5, **ENGINE),
        Strategy("engine-prev+12-beam5", context_s=12, context_beam=5, **ENGINE),
        *(
            Strategy(
                f"engine-prev+{c}-beam5-tail0-zeros400",
                context_s=c,
                context_beam=5,
                **{**ENGINE, "tail_ms": 0, "silence_ms": 400},
            )
            for c in (8, 10, 12)
        ),
        *(
            Strategy(
                f"engine-prev+12-beam{b}-tail0-zeros400",
                context_s=12,
                context_beam=b,
                **{**ENGINE, "tail_ms": 0, "silence_ms": 400},
            )
            for b in (2, 3)
        ),
        Strategy("engine-prev+8", context_s=8, **ENGINE),
        # The engine's reduced finals (under load): previous utterance, greedy; first finals
        # beam 5 + timestamps with (as before) or without the temperature fallback.
        *(
            Strategy(
                f"engine-reduced{'-fallback' if fb else ''}",
                context_s=-1,
                reduced=True,
                reduced_fallback=fb,
                **{**ENGINE, "tail_ms": 0, "silence_ms": 400},
            )
            for fb in (False, True)
        ),
        Strategy("prev-greedy-pad0.5", context_s=-1, padding_s=0.5),
        Strategy("prev-greedy-pad2", context_s=-1, padding_s=2.0),
        Strategy("prev-greedy-ctx100", context_s=-1, context_pad_ms=100),
        Strategy("prev-greedy-ctx500", context_s=-1, context_pad_ms=500),
    ]
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache root")
    parser.add_argument("--only", nargs="*", default=None, help="strategy names to run")
    parser.add_argument("--analyse", nargs="*", default=[], help="per-sentence diff for these")
    parser.add_argument("--committed", action="store_true", help="replay partials' words")
    parser.add_argument("--repeat", type=int, default=1, help="runs per strategy (CPU time)")
    parser.add_argument(
        "--endpoint-ms", type=int, default=None, help="endpoint silence (default: the engine's)"
    )
    parser.add_argument("--fables", type=int, default=0, help="use N fable sentences instead")
    parser.add_argument("--json", type=Path, default=None, help="write the table here")
    args = parser.parse_args()

    from audiototext.models import ModelCache, pull

    entry = pull("tiny.en", precision="int8", cache=ModelCache(args.cache)).entry
    model = WhisperModel(entry.path, OrtConfig(device="cpu", intra_op_threads=1))
    synth = SpeechSynthesizer(Path("/tmp/audiototext-bench-espeak"))
    synth._cache_dir.mkdir(parents=True, exist_ok=True)
    clips = clips_with_spans(
        synth, fable_sentences(args.fables) if args.fables else list(SENTENCES)
    )
    refs = [text for _, text, _, _ in clips]
    vad = SileroVad()
    utterances = [
        stream_utterances(vad, c, audio, args.endpoint_ms) for c, (audio, *_) in enumerate(clips)
    ]
    n_utt = sum(len(u) for u in utterances)
    endpoint = args.endpoint_ms or StreamOptions().endpoint_silence_ms
    print(f"{len(clips)} clips, {n_utt} utterances (endpoint detector, {endpoint} ms of silence)")

    began = time.process_time()
    segments = [list(Transcriber(model).transcribe(audio)) for audio, *_ in clips]
    file_cpu = time.process_time() - began
    file_text = [" ".join(s.text for s in segs) for segs in segments]
    file_wer = wer(refs, file_text)
    print(
        f"file transcription: WER {file_wer:.2%} (package normaliser "
        f"{package_wer(refs, file_text):.2%}), CPU {file_cpu:.1f} s for the set"
    )

    committed = committed_words(model, vad, clips) if args.committed else None
    names = args.only or list(STRATEGIES)
    rows = []
    outcomes: dict[str, Outcome] = {}
    header = (
        f"{'strategy':28s} {'WER':>7s} {'Δ pp':>6s} {'pkg Δ':>6s} {'frames':>7s} "
        f"{'CPU ms p50':>10s} {'p95':>6s} {'prefix':>6s}"
    )
    print(header)
    for name in names:
        strategy = STRATEGIES[name]
        cpu: list[float] = []
        outcome = None
        for _ in range(args.repeat):
            outcome = run_strategy(model, strategy, clips, utterances, committed)
            cpu.extend(outcome.cpu_ms)
        assert outcome is not None
        outcomes[name] = outcome
        hyps = [" ".join(t for t in texts if t) for texts in outcome.texts]
        w = wer(refs, hyps)
        ordered = sorted(cpu)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        row = {
            "strategy": name,
            "wer": w,
            "delta_pp": 100 * (w - file_wer),
            "delta_pp_package_normaliser": 100
            * (package_wer(refs, hyps) - package_wer(refs, file_text)),
            "frames_mean": statistics.mean(outcome.frames),
            "cpu_ms_p50": statistics.median(cpu),
            "cpu_ms_p95": p95,
            "prefix_tokens_mean": statistics.mean(outcome.prefix_tokens),
        }
        rows.append(row)
        print(
            f"{name:28s} {w:7.2%} {row['delta_pp']:6.2f} "
            f"{row['delta_pp_package_normaliser']:6.2f} {row['frames_mean']:7.0f} "
            f"{row['cpu_ms_p50']:10.0f} {p95:6.0f} {row['prefix_tokens_mean']:6.1f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"file_wer": file_wer, "rows": rows}, indent=1))
    for name in args.analyse:
        analyse(
            outcomes.get(name)
            or run_strategy(model, STRATEGIES[name], clips, utterances, committed),
            clips,
            utterances,
            segments,
        )


def analyse(
    outcome: Outcome,
    clips: list[tuple[FloatArray, str, list[tuple[int, int]], list[str]]],
    utterances: list[list[Utterance]],
    segments: list[list[object]],
) -> None:
    """Per sentence: the reference, the file path's text and the strategy's, where they differ."""
    print(f"\nper-sentence differences, {outcome.strategy.name} vs file transcription")
    for c, (_, _, spans, sentences) in enumerate(clips):
        file_by: list[list[str]] = [[] for _ in sentences]
        for seg in segments[c]:
            mid = (seg.start_s + seg.end_s) / 2 * SAMPLE_RATE_HZ  # type: ignore[attr-defined]
            file_by[sentence_of(spans, mid, mid + 1)].append(seg.text)  # type: ignore[attr-defined]
        stream_by: list[list[str]] = [[] for _ in sentences]
        for utt, text in zip(utterances[c], outcome.texts[c], strict=True):
            stream_by[sentence_of(spans, utt.start, utt.stop)].append(text)
        for s, ref in enumerate(sentences):
            f = " ".join(file_by[s]).strip()
            t = " ".join(stream_by[s]).strip()
            ef = edit_distance(normalise(ref), normalise(f))
            et = edit_distance(normalise(ref), normalise(t))
            if ef or et:
                print(f"  ref    {ref}\n  file   {f}  ({ef} err)\n  stream {t}  ({et} err)")


if __name__ == "__main__":
    main()
