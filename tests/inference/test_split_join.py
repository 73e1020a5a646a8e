"""One input cut at pauses into parts done side by side: where the parts join, no word is lost
or doubled, and the parts share the one loaded model."""

from __future__ import annotations

import threading
from difflib import SequenceMatcher

import numpy as np
import pytest

from audiototext.audio import pauses
from audiototext.audio.pauses import parts_that_fit
from audiototext.inference import TranscribeOptions, Transcriber
from audiototext.inference.whisper import WhisperModel
from inference.corpus import HARVARD
from inference.wer import normalise
from support.speech import SpeechSynthesizer, silence

GREEDY = TranscribeOptions(beam_size=1, temperatures=(0.0,))
SENTENCES = HARVARD[:16]


def test_parts_that_fit_counts_parts_of_the_minimum_length() -> None:
    assert parts_that_fit(254.0, 2) == 2
    assert parts_that_fit(254.0, 8) == 254 // pauses.SPLIT_MIN_PART_S
    assert parts_that_fit(2 * pauses.SPLIT_MIN_PART_S - 0.1, 2) == 1  # one part would be short
    assert parts_that_fit(30.0, 4, min_part_s=10.0) == 3
    assert parts_that_fit(0.0, 2) == 1


def test_a_cut_in_a_pause_loses_and_doubles_no_word(
    fp32: Transcriber, synth: SpeechSynthesizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sixteen sentences, 1.2 s of silence after each: ~61 s, one pass in three windows; the
    # even split falls inside a sentence, so the cut must move to a pause.
    speech = [np.concatenate([synth.speak(s).audio, silence(1.2)]) for s in SENTENCES]
    audio = np.concatenate(speech)
    monkeypatch.setattr(pauses, "SPLIT_MIN_PART_S", 10.0)
    (cut,) = pauses.split_at_pauses(audio, 2)
    assert np.abs(audio[cut - 3200 : cut + 3200]).max() == 0.0  # 200 ms of silence each side

    encoders: set[int] = set()
    encode = WhisperModel.encode

    def spy(model: WhisperModel, mel: np.ndarray) -> object:
        encoders.add(id(model.encoder))
        return encode(model, mel)

    one_pass = normalise(" ".join(s.text for s in fp32.transcribe(audio, GREEDY)))
    monkeypatch.setattr(WhisperModel, "encode", spy)
    threads: set[str] = set()

    def progress(index: int, done_s: float) -> None:
        threads.add(threading.current_thread().name)

    (result,) = list(fp32.transcribe_each([audio], GREEDY, jobs=2, progress=progress))
    assert result.error is None and len(threads) == 2  # two parts, side by side...
    assert encoders == {id(fp32.model.encoder)}  # ...on the one loaded encoder session
    words = normalise(" ".join(s.text for s in result.segments))
    # The same words as one pass, but for tiny.en's mishearings, which depend on the prompt
    # (the second part starts without the first part's text): word for word, none lost or
    # doubled, where the parts join or anywhere else.
    assert len(words) == len(one_pass) > 100
    opcodes = SequenceMatcher(None, one_pass, words, autojunk=False).get_opcodes()
    changes = [op for op in opcodes if op[0] != "equal"]
    assert all(tag == "replace" and i2 - i1 == j2 - j1 for tag, i1, i2, j1, j2 in changes)
    assert sum(i2 - i1 for _, i1, i2, _, _ in changes) <= 0.1 * len(words)
    # The second part's segments carry the input's times, after the cut, in order.
    starts = [s.start_s for s in result.segments]
    assert starts == sorted(starts) and any(t >= cut / 16_000 for t in starts)
    assert result.segments[-1].end_s <= audio.size / 16_000 + 0.5
