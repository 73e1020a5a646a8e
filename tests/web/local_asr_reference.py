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

from audiototext.audio.features import HOP_LENGTH_SAMPLES, log_mel_spectrogram
from audiototext.inference.decoding import DecodingOptions, generate
from audiototext.inference.whisper import WhisperModel
from audiototext.streaming._decode import encoder_input
from support.speech import SpeechSynthesizer, silence

# Sentences of the test clips: different lengths, numbers, names, punctuation; one clip has
# two sentences with a pause, one starts after a silence (timestamps not at zero).
SENTENCES = (
    ("Please call Stella and ask her to bring these things.", 0.3),
    ("The quick brown fox jumps over the lazy dog.", 1.2),
    ("We meet at seven thirty on Tuesday. Bring the blue folder, please.", 0.5),
    ("Hello world.", 0.2),
)


def model_dir(cache_root: Path, precision: str) -> Path:
    found = sorted((cache_root / "models" / "tiny.en").glob(f"*/{precision}"))
    assert found, f"no tiny.en {precision} in {cache_root}"
    return found[-1]


def clips(tmp: Path) -> list[tuple[str, np.ndarray]]:
    synth = SpeechSynthesizer(tmp)
    out = []
    for text, lead_s in SENTENCES:
        speech = synth.speak(text)
        out.append((text, np.concatenate([silence(lead_s), speech.audio, silence(0.4)])))
    return out


def reference(model: WhisperModel, audio: np.ndarray, timestamps: bool) -> dict[str, Any]:
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
    }


# In a page of the server: keeps tiny.en's browser files (model-store.js), starts the local
# transcription worker on them (local-asr.js) with `threads`, feeds it the clip (float32,
# base64) as one utterance, and returns its segments and timings.
PAGE_TRANSCRIBE = """async ([audioBase64, threads, keep]) => {
  const { keepModel } = await import("/js/model-store.js");
  const { LocalAsr } = await import("/js/local-asr.js");
  const listing = await (await fetch("/api/v1/models/tiny.en/browser")).json();
  if (keep) await keepModel(listing);
  const bytes = Uint8Array.from(atob(audioBase64), (c) => c.charCodeAt(0));
  const audio = new Float32Array(bytes.buffer);
  const audioS = audio.length / 16000; // feed() transfers the buffer
  const segments = [];
  let finished;
  const done = new Promise((resolve, reject) => {
    finished = { resolve, reject };
  });
  const asr = new LocalAsr({
    onSegment: (s) => segments.push(s),
    onDone: (d) => finished.resolve(d),
    onError: (message) => finished.reject(new Error(message)),
  });
  const ready = await asr.start(listing, { threads });
  const t0 = performance.now();
  asr.feed(audio, { end: true });
  const info = await done;
  const wallMs = performance.now() - t0;
  asr.stop();
  return { ready, segments, info, wallMs, isolated: crossOriginIsolated,
           precision: listing.precision, audioS };
}"""


def audio_b64(audio: np.ndarray) -> str:
    return base64.b64encode(audio.astype("<f4").tobytes()).decode()
