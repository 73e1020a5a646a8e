"""LocalAgreement-2: commit the words two successive hypotheses agree on.

Each partial is decoded with the already committed tokens forced as its prefix, so only the
tail after them is free. A word joins the committed prefix when the previous tail and the
current tail both start with it (exact text, punctuation included: "fox" and "fox." differ,
because a final period often turns into a comma once more speech arrives). Committed words are
never revisited, so ``stable_text`` only grows within an utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["AgreementState", "Words"]

# (text with its leading space, the tokens that spell it), per word
Words = list[tuple[str, tuple[int, ...]]]


@dataclass
class AgreementState:
    """The committed prefix of one utterance and the last unconfirmed tail."""

    committed_tokens: list[int] = field(default_factory=list)
    committed_words: int = 0
    previous_tail: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.committed_tokens = []
        self.committed_words = 0
        self.previous_tail = []

    def update(self, tail: Words) -> int:
        """Take the words decoded after the committed prefix; commit the agreed ones.

        Returns how many words of ``tail`` were committed; the rest stays the unstable tail.
        """
        texts = [w.strip() for w, _ in tail]
        agreed = _common_prefix(self.previous_tail, texts)
        for _, tokens in tail[:agreed]:
            self.committed_tokens.extend(tokens)
        self.committed_words += agreed
        self.previous_tail = texts[agreed:]
        return agreed


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
