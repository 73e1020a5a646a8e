"""Finals after context that fail (nothing, a loop, the previous final's words again) are
decoded again alone (streaming/_final.py, streaming/_repeats.py; bench/NOTES.md "streamwer")."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from audiototext.streaming import StreamingRecognizer, _final
from audiototext.streaming._final import better_of, context_failed
from audiototext.streaming._repeats import echoes_prefix, loop_start, repeats_itself
from streaming.streaming_helpers import normalise, stream_audio
from support.speech import POCKETSPHINX_DATA, pocketsphinx_file, read_wav

MakeRecognizer = Callable[..., StreamingRecognizer]
RATE = 16_000


def test_repeats_itself_flags_loops_and_doubled_sentences_not_doubled_words() -> None:
    # What the engine wrote for short card hands and a first final (capacity.py's programs).
    assert repeats_itself("5 5 5 5 5 5 5 5 5 5 5 5")
    assert repeats_itself("4. Queen of Close. 4. Queen of Close.")
    assert repeats_itself(
        "The children were playing football in the park. "
        "The children were playing football in the park."
    )
    # Speech that says a word twice, and ordinary sentences.
    assert not repeats_itself("five five")
    assert not repeats_itself("It was very very cold.")
    assert not repeats_itself("He was not an ill-disposed young man.")
    assert not repeats_itself("")
    # The partials' use is unchanged: the words before the loop.
    assert loop_start(["My", "phone,", "my", "phone,", "my", "phone,", "my"]) == 2


def test_echoes_prefix_needs_a_run_of_the_previous_final() -> None:
    assert echoes_prefix("Queen of Clothes 7. Of Clothes", "Hello. 4. Queen of Clothes 4.")
    assert echoes_prefix("of clubs", "Ten of clubs.")
    # One shared word, or a shared run that is not the new final's opening, is no echo.
    assert not echoes_prefix("Seven of clubs", "Ten of clubs.")
    assert not echoes_prefix("The museum has a new exhibition.", "The weather is nice.")
    assert not echoes_prefix("Hello", "Hello.")


def test_context_failed_and_which_text_is_kept() -> None:
    assert context_failed("", "He might even have been made amiable himself.")
    assert context_failed("5 5 5 5 5 5", "Dinner will be ready in about 20 minutes.")
    assert not context_failed("Five, five.", "Dinner will be ready in about 20 minutes.")
    assert not context_failed("7 of clubs.", "4. Queen of Clothes")
    # The alone decode wins unless it has no words, or loops too and is the longer.
    assert better_of("", "10 of close.") == "10 of close."
    assert better_of("5 5 5 5 5 5", "5 5") == "5 5"
    assert better_of("Queen of Clothes 7. Of Clothes", "") == "Queen of Clothes 7. Of Clothes"
    assert better_of("5 5 5", "5 5 5 5 5 5") == "5 5 5"


def _hand_after_reader() -> np.ndarray:
    cards = pocketsphinx_file("cards", "001.wav")
    reader, _ = read_wav(
        POCKETSPHINX_DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0930.wav"
    )
    hand, _ = read_wav(cards)
    rng = np.random.default_rng(1)
    gaps = [(rng.standard_normal(int(s * RATE)) * 1e-3).astype(np.float32) for s in (1.3, 1.5)]
    parts = [gaps[0], reader, gaps[1], hand, np.zeros(RATE, np.float32)]
    return np.concatenate([np.asarray(p, np.float32) for p in parts])


def test_a_short_hand_after_a_long_sentence_gets_its_words(
    make_recognizer: MakeRecognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "ten of clubs" (1.1 s, another speaker) after the LibriVox reader's "He might even
    have been made amiable himself.": decoded after that sentence as context, the final had
    no text (capacity.py, 1 stream and 16). Decoded again alone it has its words."""
    audio = _hand_after_reader()

    def finals() -> tuple[list[str], int]:
        rec = make_recognizer()
        log = asyncio.run(stream_audio(rec.open(), audio, RATE, chunk=100))
        return [f.text for f in log.finals], rec.final_decoder.retried

    with monkeypatch.context() as m:
        m.setattr(_final, "context_failed", lambda text, prefix: False)
        before, _ = finals()
    # The case this guards against, on this audio: the hand's final is empty (a final with
    # no text replaces the partials shown).
    assert len(before) == 2 and "amiable" in normalise(before[0]) and not before[1], before
    after, retried = finals()
    assert retried == 1
    assert len(after) == 2 and after[0] == before[0], after
    hand = normalise(after[1])
    assert "of" in hand and ({"ten", "10"} & set(hand)), after
