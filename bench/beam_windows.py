"""Window by window: our beam search against faster-whisper's on the same windows and prompts.

faster-whisper transcribes a corpus file; for each of its 30-s windows this records the mel it
encoded, the prompt it decoded from, every decode attempt (temperature, tokens, score) and the
result. Each window is then decoded by our engine from *the same mel and prompt*, so a
difference is the search's or the weights' (not an earlier window's). For every window that
differs, both token sequences are scored under our decoder (sum of log-probabilities after
Whisper's rules, and the length-normalised score): if faster-whisper's sequence scores higher
under our model, our search missed it; if lower, the two models disagree (int8 numerics).

    PYTHONPATH=src python bench/beam_windows.py [--corpus human-long] [--beam-size 5]
        [--precision int8|float32] [--cache HOME]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import corpus_real
from audiototext.inference import decoding
from audiototext.inference.decoding import DecodingOptions, _Rules
from audiototext.inference.transcribe import TranscribeOptions, Transcriber
from audiototext.inference.whisper import CrossAttention, WhisperModel

OUT = Path(__file__).parent / "out"


@dataclass
class FwWindow:
    mel: np.ndarray
    prompt: list[int]
    attempts: list[tuple[float, list[int], float]] = field(default_factory=list)
    result: tuple[list[int], float, float, float] | None = None  # tokens, avg_lp, T, no_speech


class _Recorder:
    """Stands in for faster-whisper's ctranslate2 model and records every generate call."""

    def __init__(self, inner: Any, windows: list[FwWindow]) -> None:
        self._inner = inner
        self._windows = windows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        results = self._inner.generate(*args, **kwargs)
        r = results[0]
        t = kwargs.get("sampling_temperature", 0.0) if kwargs.get("beam_size", 1) == 1 else 0.0
        self._windows[-1].attempts.append((t, list(r.sequences_ids[0]), float(r.scores[0])))
        return results


def run_faster_whisper(path: str, precision: str, beam: int, model_dir: str) -> list[FwWindow]:
    from faster_whisper import WhisperModel as FwModel

    fw = FwModel(model_dir, device="cpu", compute_type=precision, cpu_threads=2)
    windows: list[FwWindow] = []
    encode, gwf = fw.encode, fw.generate_with_fallback

    def enc(features: np.ndarray) -> Any:
        windows.append(FwWindow(np.array(features, dtype=np.float32), []))
        return encode(features)

    def gen(encoder_output: Any, prompt: list[int], tokenizer: Any, options: Any) -> Any:
        windows[-1].prompt = list(prompt)
        out = gwf(encoder_output, prompt, tokenizer, options)
        res, avg, temp, _ = out
        windows[-1].result = (list(res.sequences_ids[0]), avg, temp, res.no_speech_prob)
        return out

    fw.encode = enc  # type: ignore[method-assign]
    fw.generate_with_fallback = gen  # type: ignore[method-assign]
    fw.model = _Recorder(fw.model, windows)  # type: ignore[assignment]
    segs, _ = fw.transcribe(path, beam_size=beam)
    text = " ".join(s.text for s in segs)
    print("faster-whisper:", text[:200], "...")
    return windows


def score(
    model: WhisperModel, cross: CrossAttention, prompt: list[int], tokens: list[int], opts: Any
) -> float:
    """Sum of log-probabilities of ``tokens`` + end, after the rules, under our decoder."""
    tok = model.tokenizer
    rules = _Rules(tok, opts, model.dims.n_vocab, prompt[-1] != tok.no_timestamps)
    kv = model.decoder_for(cross)
    logits_all, _ = kv.prefill([prompt])
    logits = np.array(logits_all[:, -1], dtype=np.float32)
    total = 0.0
    seq: list[int] = []
    for step, t in enumerate([*tokens, tok.eot]):
        lp = rules.apply(logits, [seq], step)
        total += float(lp[0, t])
        if not np.isfinite(lp[0, t]) and os.environ.get("BEAM_DEBUG"):
            print(f"    -inf at step {step} token {t} after {seq[-3:]}")
        if t == tok.eot:
            break
        seq.append(t)
        logits = np.asarray(kv.step(np.array([t])), dtype=np.float32)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", default="human-long")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--cache", type=Path)
    args = ap.parse_args()
    if args.cache:
        os.environ["AUDIOTOTEXT_HOME"] = str(args.cache)
    from audiototext.models.packaged import packaged_dir
    from audiototext.models.registry import resolve

    source = next(s.repo_id for s in resolve("tiny.en").sources if s.kind == "package")
    model_dir = str(packaged_dir(source, Path(os.environ.get("TMPDIR", "/tmp")) / "fw")[0])
    clips = corpus_real.build(args.corpus, OUT / "real")
    ours = Transcriber.load("tiny.en", precision=args.precision, device="cpu", threads=2)
    model = ours.model
    tok = model.tokenizer
    topts = TranscribeOptions(beam_size=args.beam_size)
    dec: DecodingOptions = topts.decoding(tok.default_suppress_tokens())
    fw_prec = "int8" if args.precision == "int8" else "float32"
    for clip in clips:
        windows = run_faster_whisper(str(clip.path), fw_prec, args.beam_size, model_dir)
        same = 0
        for n, w in enumerate(windows):
            assert w.result is not None
            cross = model.encode(w.mel[None])
            r = decoding.decode_with_fallback(model, cross, [w.prompt], dec)[0]
            fw_tokens, fw_avg, fw_t, fw_ns = w.result
            if list(r.tokens) == fw_tokens and r.temperature == fw_t:
                same += 1
                continue
            ours_sum = score(model, cross, w.prompt, list(r.tokens), dec)
            fw_sum = score(model, cross, w.prompt, fw_tokens, dec)
            print(
                f"\nwindow {n}: prompt {len(w.prompt)} tokens; attempts fw "
                f"{[(a[0], len(a[1]), round(a[2], 3)) for a in w.attempts]}"
            )
            print(f"  ours T={r.temperature} avg_lp {r.avg_logprob:.3f} ns {r.no_speech_prob:.3f}")
            print(f"  fw   T={fw_t} avg_lp {fw_avg:.3f} ns {fw_ns:.3f}")
            print(
                f"  under our model: ours sum {ours_sum:.3f} ({len(r.tokens)} tok, score "
                f"{ours_sum / max(len(r.tokens), 1):.4f}); fw sum {fw_sum:.3f} "
                f"({len(fw_tokens)} tok, score {fw_sum / max(len(fw_tokens), 1):.4f})"
            )
            print("  ours:", tok.decode_with_timestamps(list(r.tokens)))
            print("  fw:  ", tok.decode_with_timestamps(fw_tokens))
        print(f"\n{clip.path.name}: {same} of {len(windows)} windows identical")


if __name__ == "__main__":
    main()
