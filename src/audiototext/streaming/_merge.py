"""Text of a final that keeps the words partials committed (``final_keeps_committed``)."""

from __future__ import annotations

__all__ = ["merge_committed"]


def merge_committed(committed: str, decoded: str) -> str:
    """``decoded`` with its start replaced by the ``committed`` words shown in partials.

    Committed words never change, so the final is the committed text followed by whatever
    the final decoding says after the point that best aligns with the committed words.
    """
    committed = committed.strip()
    decoded = decoded.strip()
    if not committed:
        return decoded
    c = [_norm(w) for w in committed.split()]
    words = decoded.split()
    d = [_norm(w) for w in words]
    # Edit distance of all of c against every prefix of d, in one table.
    prev = list(range(len(d) + 1))
    for i in range(1, len(c) + 1):
        cur = [i] + [0] * len(d)
        for j in range(1, len(d) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (c[i - 1] != d[j - 1]))
        prev = cur
    best = min(range(len(d) + 1), key=lambda k: (prev[k], abs(k - len(c))))
    rest = " ".join(words[best:])
    return f"{committed} {rest}" if rest else committed


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())
