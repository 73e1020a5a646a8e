"""Where to cut a long input so that its parts can be transcribed side by side: in pauses."""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from audiototext.audio.chunks import input_chunks
from audiototext.audio.decode import AudioSource
from audiototext.audio.features import FRAME_S, HOP_LENGTH_SAMPLES

__all__ = ["SPLIT_MIN_PART_S", "parts_that_fit", "split_at_pauses"]

FloatArray = NDArray[np.float32]
# A cut costs at most one extra (partial) 30-s encoder window: 60-s parts, about three windows
# each, still gain from the idle core; shorter ones would not (bench/NOTES.md, "split").
SPLIT_MIN_PART_S = 60.0


def parts_that_fit(duration_s: float, parts: int, min_part_s: float | None = None) -> int:
    """How many of ``parts`` a ``duration_s`` input is cut into: each at least ``min_part_s``
    (default :data:`SPLIT_MIN_PART_S`) long; 1 means no cut."""
    shortest = SPLIT_MIN_PART_S if min_part_s is None else min_part_s
    return max(1, min(parts, int(duration_s // shortest)))


def split_at_pauses(
    audio: AudioSource | NDArray[np.floating],
    parts: int,
    *,
    min_part_s: float | None = None,
    search_s: float = 15.0,
) -> list[int]:
    """Sample positions that cut ``audio`` into up to ``parts`` pieces of similar length.

    Each cut is the middle of the longest quiet stretch (300-ms RMS energy near its lowest)
    within ``search_s`` of the even split, so a cut falls in a pause, not in a word. Reads the
    audio once, keeping one RMS value per 10 ms. Fewer cuts when the parts would be shorter
    than ``min_part_s`` (default :data:`SPLIT_MIN_PART_S`); none for a file object (it cannot
    be read twice).
    """
    if parts < 2 or not isinstance(audio, np.ndarray | str | os.PathLike | bytes):
        return []
    hop = HOP_LENGTH_SAMPLES
    energies: list[FloatArray] = []
    carry = np.zeros(0, dtype=np.float32)
    for chunk in input_chunks(audio):
        block = np.concatenate([carry, chunk]) if carry.size else chunk
        whole = block.size // hop * hop
        if whole:
            frames = block[:whole].reshape(-1, hop)
            energies.append(np.sqrt(np.mean(frames * frames, axis=1, dtype=np.float32)))
        carry = block[whole:]
    if not energies:
        return []
    energy = np.concatenate(energies)
    parts = parts_that_fit(energy.size * FRAME_S, parts, min_part_s)
    if parts < 2:
        return []
    smooth = np.convolve(energy, np.ones(30, dtype=np.float32) / 30, mode="same")
    reach = round(search_s / FRAME_S)
    cuts = []
    for k in range(1, parts):
        target = round(k * energy.size / parts)
        lo, hi = max(0, target - reach), min(energy.size, target + reach)
        cuts.append((lo + _middle_of_longest_quiet(smooth[lo:hi])) * hop)
    return cuts


def _middle_of_longest_quiet(energy: NDArray[np.floating]) -> int:
    """Index in the middle of the longest run of values near ``energy``'s minimum."""
    floor = float(energy.min())
    quiet = energy <= floor + 0.1 * (float(np.median(energy)) - floor) + 1e-7
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.view(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]  # runs [start, end) of quiet values
    longest = int(np.argmax(ends - starts))
    return int(starts[longest] + ends[longest]) // 2
