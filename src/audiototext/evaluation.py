"""Word error rate with a Whisper-style English normaliser (no dependencies).

The normaliser lowercases, spells out nothing, drops punctuation except word-internal
apostrophes, splits hyphenated words and collapses whitespace; this removes the differences
that are formatting rather than recognition (``"It's"`` vs ``"its"`` stays an error, as a
listener would count it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["edit_distance", "normalise", "wer"]

_PUNCT = re.compile(r"[^\w\s']|_")
_EDGE_APOSTROPHE = re.compile(r"(^|\s)'+|'+(\s|$)")


def normalise(text: str) -> list[str]:
    text = text.lower().replace("-", " ").replace("’", "'")
    text = _PUNCT.sub(" ", text)
    text = _EDGE_APOSTROPHE.sub(" ", text)
    return text.split()


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance over words (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> float:
    """Errors per reference word, corpus-level when given several texts."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise ValueError("reference and hypothesis lists differ in length")
    errors = sum(edit_distance(normalise(r), normalise(h)) for r, h in zip(refs, hyps, strict=True))
    words = sum(len(normalise(r)) for r in refs)
    if words == 0:
        raise ValueError("the reference has no words")
    return errors / words
