"""The clip set the streaming WER is measured on: espeak-ng sentences joined by pauses."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from support.speech import SpeechSynthesizer, join_with_gaps

SENTENCES = (
    "Good morning everyone, welcome to the weekly meeting.",
    "Please take a seat and open your notebooks.",
    "We will start with the first chapter today.",
    "The weather forecast says it will rain tomorrow afternoon.",
    "My phone number is easy to remember.",
    "Turn left at the next corner and walk two blocks.",
    "The library closes at six o'clock on Fridays.",
    "She bought apples, bread and milk at the market.",
    "Could you send me the report before lunch?",
    "The train to London leaves from platform four.",
    "Our team finished the project two weeks early.",
    "Remember to water the plants while I am away.",
    "The museum has a new exhibition about ancient Egypt.",
    "He plays the guitar in a small band on weekends.",
    "Please close the window, it is getting cold in here.",
    "The children were playing football in the park.",
    "I would like a cup of coffee with milk, please.",
    "The meeting has been moved to Thursday morning.",
    "Scientists discovered a new species of frog in the forest.",
    "Dinner will be ready in about twenty minutes.",
)
GAP_S = 1.2  # longer than the default endpoint silence, as between spoken sentences
PER_CLIP = 5


def clip_set(synth: SpeechSynthesizer) -> list[tuple[NDArray[np.float32], str]]:
    """Four clips of five sentences each (about 17 s apiece) and their reference texts."""
    return clips_of(synth, list(SENTENCES))


def fable_sentences(count: int) -> list[str]:
    """The first ``count`` sentences (of three words or more) of the benchmark's fables
    (bench/corpus.py): a larger and harder set than :data:`SENTENCES`."""
    path = Path(__file__).resolve().parents[2] / "bench" / "corpus.py"
    module = sys.modules.get("bench_corpus")
    if module is None:
        spec = importlib.util.spec_from_file_location("bench_corpus", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_corpus"] = module
        spec.loader.exec_module(module)
    out: list[str] = []
    for fable in module.FABLES:
        out += [s.strip() for s in re.findall(r"[^.!?]+[.!?]", fable) if len(s.split()) >= 3]
    return out[:count]


def clips_with_spans(
    synth: SpeechSynthesizer, sentences: list[str]
) -> list[tuple[NDArray[np.float32], str, list[tuple[int, int]], list[str]]]:
    """``sentences`` spoken in clips of :data:`PER_CLIP`, joined by :data:`GAP_S` pauses: each
    clip's audio, its text, each sentence's sample span in it, and its sentences."""
    clips = []
    for k in range(0, len(sentences), PER_CLIP):
        texts = sentences[k : k + PER_CLIP]
        audio, spans = join_with_gaps([synth.speak(t).audio for t in texts], GAP_S)
        clips.append((audio, " ".join(texts), spans, texts))
    return clips


def clips_of(
    synth: SpeechSynthesizer, sentences: list[str]
) -> list[tuple[NDArray[np.float32], str]]:
    """``sentences`` spoken in clips of :data:`PER_CLIP`, joined by :data:`GAP_S` pauses."""
    return [(audio, text) for audio, text, _, _ in clips_with_spans(synth, sentences)]
