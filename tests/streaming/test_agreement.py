"""LocalAgreement-2 (streaming/_agreement.py): words two successive partials agree on."""

from __future__ import annotations

from audiototext.streaming._agreement import AgreementState, Words


def _words(*texts: str) -> Words:
    return [(f" {t}", (hash(t) % 1000, k)) for k, t in enumerate(texts)]


def test_words_are_committed_when_two_tails_start_with_them() -> None:
    state = AgreementState()
    assert state.update(_words("the", "quick")) == 0  # nothing to agree with yet
    assert state.committed_words == 0 and state.previous_tail == ["the", "quick"]
    assert state.update(_words("the", "quick", "brown")) == 2
    assert state.committed_words == 2
    assert state.committed_tokens == [t for _, g in _words("the", "quick") for t in g]
    assert state.previous_tail == ["brown"]
    # The next tail comes after the committed prefix (decoded with it forced).
    assert state.update(_words("brown", "fox")) == 1
    assert state.committed_words == 3 and state.previous_tail == ["fox"]


def test_punctuation_counts_and_a_disagreement_stops_the_prefix() -> None:
    state = AgreementState()
    state.update(_words("fox."))
    assert state.update(_words("fox,", "jumps")) == 0  # "fox." and "fox," differ
    assert state.update(_words("fox,", "runs")) == 1  # only the common start
    assert state.previous_tail == ["runs"]


def test_committed_words_are_never_revisited_and_reset_starts_over() -> None:
    state = AgreementState()
    state.update(_words("a", "b"))
    state.update(_words("a", "b"))
    before = list(state.committed_tokens)
    assert state.update(_words("x", "y")) == 0  # a different tail takes nothing back
    assert state.committed_tokens == before and state.committed_words == 2
    state.reset()
    assert (state.committed_tokens, state.committed_words, state.previous_tail) == ([], 0, [])


def test_an_empty_tail_commits_nothing() -> None:
    state = AgreementState()
    assert state.update([]) == 0
    assert state.update(_words("hello")) == 0
    assert state.update([]) == 0 and state.previous_tail == []
