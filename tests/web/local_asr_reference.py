"""The server engine's side of the local-transcription parity checks: espeak-ng clips and, for
each, the log-mel, greedy tokens and text that ``audiototext`` computes for it now (the real
WhisperModel and decoding.generate on the converted tiny.en files, greedy, no fallback, no
prompt, the streaming engine's variable-length encoder input). Shared by
``test_local_asr_parity.py`` and ``bench/local_asr.py``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from audiototext.audio.features import HOP_LENGTH_SAMPLES, SAMPLE_RATE_HZ, log_mel_spectrogram
from audiototext.inference.decoding import DecodingOptions, generate
from audiototext.inference.whisper import WhisperModel
from audiototext.models.cache import ModelCache
from audiototext.streaming._decode import encoder_input, max_new_tokens_for
from support.speech import SpeechSynthesizer, silence

# Sentences of the test clips (spoken text, silence before it): different lengths, numbers,
# names, punctuation; one with two sentences, one starting after a second of silence
# (timestamps not at zero). tiny.en decodes each without looping.
SENTENCES = (
    ("Please call Stella and ask her to bring these things.", 0.3),
    ("We will meet at the train station tomorrow morning.", 1.2),
    ("We meet at seven thirty on Tuesday. Bring the blue folder, please.", 0.5),
    ("My sister bought three apples, two oranges and a loaf of bread at the market.", 0.3),
)
# A clip on which greedy tiny.en repeats itself to the token budget (224 tokens): the budget.
LOOP = ("Hello world.", 0.2)


def model_dir(cache_root: Path, precision: str) -> Path:
    return ModelCache(cache_root).find("tiny.en", precision).path


def clips(tmp: Path) -> list[tuple[str, np.ndarray]]:
    """The SENTENCES' clips, then LOOP's."""
    synth = SpeechSynthesizer(tmp)
    out = []
    for text, lead_s in (*SENTENCES, LOOP):
        speech = synth.speak(text)
        out.append((text, np.concatenate([silence(lead_s), speech.audio, silence(0.4)])))
    return out


def budget(sentence: str, audio: np.ndarray) -> int | None:
    """The streaming engine's token budget for the clip (None for LOOP: Whisper's 224)."""
    return None if sentence == LOOP[0] else max_new_tokens_for(len(audio) / SAMPLE_RATE_HZ)


def reference(
    model: WhisperModel, audio: np.ndarray, timestamps: bool, max_new_tokens: int | None
) -> dict[str, Any]:
    """What the server's engine decodes from ``audio`` (tokens, text, no-speech probability)."""
    tok = model.tokenizer
    mel = encoder_input(audio, model.n_mels, None, model.window_frames)
    cross = model.encode(mel)
    prompt = [*tok.sot_sequence(), *([] if timestamps else [tok.no_timestamps])]
    opts = DecodingOptions(
        beam_size=1,
        best_of=1,
        temperatures=(0.0,),
        suppress_tokens=tok.default_suppress_tokens(),
        without_timestamps=not timestamps,
        max_new_tokens=max_new_tokens,
    )
    hyps, no_speech = generate(model, cross, [prompt], opts, 0.0)
    tokens = list(hyps[0].tokens)
    return {
        "tokens": tokens,
        "text": tok.decode(tokens).strip(),
        "no_speech_prob": no_speech[0],
        "frames": int(mel.shape[-1]),
    }


def clip_json(text: str, audio: np.ndarray) -> dict[str, Any]:
    mel = log_mel_spectrogram(audio, 80, padding_samples=HOP_LENGTH_SAMPLES)
    return {
        "sentence": text,
        "audio_f32": base64.b64encode(audio.astype("<f4").tobytes()).decode(),
        "mel_f32": base64.b64encode(mel.astype("<f4").tobytes()).decode(),
        "mel_frames": int(mel.shape[1]),
        "max_new_tokens": budget(text, audio),
    }


# In a page of the server: keeps tiny.en's browser files (model-store.js) when asked, starts
# the local transcription worker on them (local-asr.js) with `threads`, feeds it each clip
# (float32, base64) as one utterance, waiting for each to be done, and returns the segments
# and timings of each.
PAGE_TRANSCRIBE = """async ([clips, threads, keep]) => {
  const { keepModel } = await import("/js/model-store.js");
  const { LocalAsr } = await import("/js/local-asr.js");
  const listing = await (await fetch("/api/v1/models/tiny.en/browser")).json();
  if (keep) await keepModel(listing);
  let segments = [];
  let finished;
  const asr = new LocalAsr({
    onSegment: (s) => segments.push(s),
    onDone: (d) => finished.resolve(d),
    onError: (message) => finished.reject(new Error(message)),
  });
  const ready = await asr.start(listing, { threads });
  const runs = [];
  for (const clip of clips) {
    const bytes = Uint8Array.from(atob(clip), (c) => c.charCodeAt(0));
    const audio = new Float32Array(bytes.buffer);
    const audioS = audio.length / 16000; // feed() transfers the buffer
    const done = new Promise((resolve, reject) => { finished = { resolve, reject }; });
    segments = [];
    const t0 = performance.now();
    asr.feed(audio, { end: true });
    const info = await done;
    runs.push({ segments, info, audioS, wallMs: performance.now() - t0 });
  }
  asr.stop();
  return { ready, runs, isolated: crossOriginIsolated, precision: listing.precision };
}"""


def audio_b64(audio: np.ndarray) -> str:
    return base64.b64encode(audio.astype("<f4").tobytes()).decode()


# Messages the worker must refuse, each with an error a person can act on; then the replies.
PAGE_BAD_MESSAGES = """async () => {
  const worker = new Worker("/js/local-asr-worker.js", { type: "module" });
  const replies = [];
  worker.onmessage = (e) => replies.push(e.data);
  worker.postMessage({ type: "audio", samples: new Float32Array(160) });
  worker.postMessage({ type: "bogus" });
  worker.postMessage({ type: "init" });
  worker.postMessage({ type: "init", listing: { model: "nope", version: "0", files: [
    { name: "encoder.onnx", url: "/api/v1/models/nope/browser/0/encoder.onnx" }] } });
  for (let i = 0; i < 100 && replies.length < 4; i++) await new Promise((r) => setTimeout(r, 50));
  worker.postMessage({ type: "audio", samples: "loud" });
  for (let i = 0; i < 100 && replies.length < 5; i++) await new Promise((r) => setTimeout(r, 50));
  worker.terminate();
  return replies;
}"""


# Text whose tokens cross UTF-8 character boundaries (accents, CJK, symbols, emoji).
DETOKENISE = ("café naïve — 日本語の文 ♪ 👍 «ok»", " Ünïcödé, 12.5% & <tags>")


def rules_cases(model: WhisperModel, seed: int = 0) -> list[dict[str, Any]]:
    """decoding.py's logit rules on random logits after chosen sequences: what each forbids.

    Each case: the logits (float32, base64), the sequence, the step, and a bitmap (one byte per
    vocabulary entry, base64) of what the server's rules set to -inf.
    """
    from audiototext.inference.decoding import _Rules

    tok = model.tokenizer
    tb = tok.timestamp_begin
    n = model.dims.n_vocab
    rng = np.random.default_rng(seed)
    opts = DecodingOptions(suppress_tokens=tok.default_suppress_tokens())
    seqs: list[tuple[list[int], int, bool]] = [
        ([], 0, True),  # first step: a timestamp no later than 1 s
        ([], 0, False),  # first step without timestamps: blank and end suppressed
        ([tb + 5], 1, True),  # a lone timestamp: another or the end
        ([tb + 5, 400, 500, tb + 40, tb + 40], 5, True),  # a closed pair: text must follow
        ([tb + 5, 400, 500], 3, True),  # text after a timestamp: none earlier than it
        ([400, 500, 600], 3, False),
        ([tb, 400, 500], 3, True),  # made to force a timestamp (below)
    ]
    cases = []
    for k, (seq, step, timestamps) in enumerate(seqs):
        logits = rng.normal(0.0, 3.0, size=(1, n)).astype(np.float32)
        if k == len(seqs) - 1:
            logits[0, tb:] += 6.0  # all timestamps together beat the best text token
        rules = _Rules(tok, opts, n, timestamps)
        masked = logits.copy()
        rules.mask(masked, [seq], step)
        cases.append(
            {
                "logits": base64.b64encode(logits.astype("<f4").tobytes()).decode(),
                "seq": seq,
                "step": step,
                "timestamps": timestamps,
                "forbidden": base64.b64encode(np.isneginf(masked[0]).astype(np.uint8)).decode(),
            }
        )
    return cases
