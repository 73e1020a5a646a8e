"""merge_committed (streaming/_merge.py): a final that keeps the words partials committed."""

from __future__ import annotations

from audiototext.streaming._merge import merge_committed


def test_the_committed_words_replace_the_start_they_align_with() -> None:
    assert merge_committed("The quick brown", "The quick brown fox jumps.") == (
        "The quick brown fox jumps."
    )
    # The final read the start differently: the committed words stay as shown.
    assert merge_committed("The quick, brown", "A quick brown fox jumps.") == (
        "The quick, brown fox jumps."
    )


def test_words_are_matched_without_case_or_punctuation() -> None:
    assert merge_committed("hello there", "Hello, there! How are you?") == (
        "hello there How are you?"
    )


def test_empty_sides() -> None:
    assert merge_committed("", "  Just the final. ") == "Just the final."
    assert merge_committed("  Shown words ", "") == "Shown words"
    assert merge_committed("Shown words", "Shown words") == "Shown words"


def test_a_final_shorter_or_longer_than_the_committed_text() -> None:
    # The final dropped a committed word: nothing after the aligned point is lost.
    assert merge_committed("one two three", "one three four") == "one two three four"
    # The final inserted a word inside the committed span: it is not repeated.
    assert merge_committed("one two three", "one extra two three four") == ("one two three four")
