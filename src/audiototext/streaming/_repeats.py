"""Repetition in decoded text: greedy loops, sentences written twice, a previous final echoed.

Pure functions over words (case and punctuation aside), shared by partials (the words before a
loop may be an utterance's first text) and finals (a final that repeats itself or the previous
final's words is decoded again alone: bench/NOTES.md "streamwer").
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["common_words", "echoes_prefix", "loop_start", "repeats_itself"]

# A final opening with this many words of the previous final's last _ECHO_SPAN wrote them
# again (two when it has only two); one common word ("the", "and") may truly open both.
_ECHO_RUN = 3
_ECHO_SPAN = 20


def _norm(words: Sequence[str]) -> list[str]:
    return [w.strip().strip(".,!?;:-").lower() for w in words]


def loop_start(words: Sequence[str]) -> int:
    """The number of ``words`` up to the end of the first occurrence of a block that then
    repeats to the end (case and punctuation aside; the last word may be cut short), or 0."""
    norm = _norm(words)
    n = len(norm)
    for i in range(n):
        for p in range(1, (n - i) // 2 + 1):
            if all(
                norm[j] == norm[j - p] or (j == n - 1 and norm[j - p].startswith(norm[j]))
                for j in range(i + p, n)
            ):
                return i + p
    return 0


def repeats_itself(text: str, min_repeat_words: int = 2) -> bool:
    """Whether ``text`` ends by repeating a block of its words, at least ``min_repeat_words``
    words of repeat ("5 5 5 5", "4. Queen of Clothes. 4. Queen of Clothes."): a decoder loop or
    a sentence written twice. By default a single doubled word ("five five", "very very") is
    speech."""
    words = [w for w in text.split() if any(c.isalnum() for c in w)]
    first = loop_start(words)
    return first > 0 and len(words) - first >= min_repeat_words


def echoes_prefix(text: str, prefix_text: str) -> bool:
    """Whether ``text`` opens with a run of words (its first three, or two if that is all)
    found among the last words of ``prefix_text`` (the previous final's): the context's words
    written again as this utterance's ("Queen of Clothes 7. Of Clothes" after "4. Queen of
    Clothes 4.")."""
    new = [w for w in _norm(text.split()) if w][:_ECHO_RUN]
    old = [w for w in _norm(prefix_text.split()) if w][-_ECHO_SPAN:]
    if len(new) < _ECHO_RUN - 1:
        return False
    m = len(new)
    return any(old[j : j + m] == new for j in range(len(old) - m + 1))


def common_words(a: Sequence[str], b: Sequence[str]) -> int:
    """How many opening words ``a`` and ``b`` share (case and punctuation aside)."""
    n = 0
    for x, y in zip(_norm(a), _norm(b), strict=False):
        if not x or x != y:
            break
        n += 1
    return n
