"""A decoding call's self-attention cache when the decoder writes it in place, and the
OrtValue helpers the decoder loop shares with :mod:`audiototext.inference.whisper`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

__all__ = ["CValue", "InPlaceCache", "ort_value", "own_rows", "run_c"]


# What the cache reads of a WhisperModel and its CrossAttention, as protocols: whisper.py
# imports this module, so this one may not import it back (tests/test_import_graph.py).
class _Model(Protocol):
    decoder: Any
    _past_names: list[str]
    _present_names: list[str]

    @property
    def max_text_tokens(self) -> int: ...


class _Cross(Protocol):
    @property
    def keys(self) -> tuple[ort.OrtValue, ...]: ...

    @property
    def values(self) -> tuple[ort.OrtValue, ...]: ...


FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]


def ort_value(array: NDArray[Any]) -> ort.OrtValue:
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


# The decoder loop talks to onnxruntime's C++ session directly, with its own OrtValues: the
# Python wrapper validates every input and wraps every output on each call, a few % of a
# decoding step (bench/NOTES.md, first table). ``CValue`` is what that wrapper calls.
CValue = Any  # onnxruntime.capi.onnxruntime_pybind11_state.OrtValue


def run_c(
    session: ort.InferenceSession, outputs: list[str], feeds: dict[str, CValue]
) -> list[CValue]:
    raw = getattr(session, "_sess", None)
    if raw is None or not hasattr(raw, "run_with_ort_values"):  # a future onnxruntime
        wrapped = {name: ort.OrtValue(value) for name, value in feeds.items()}
        return [v._get_c_value() for v in session.run_with_ort_values(outputs, wrapped)]
    return list(raw.run_with_ort_values(feeds, outputs, None))


class InPlaceCache:
    """A decoding call's self-attention cache in the decoder's in-place mode.

    One numpy buffer per ``past_*`` tensor, ``[rows, heads, max_text_tokens, head_dim]``, bound
    to both the ``past_*`` input and the ``present_*`` output: each step writes its keys and
    values where they stand (``DecoderMaskedMultiHeadAttention``), so nothing is copied per step.
    Rows come in groups of ``group`` (the beams of a window); ``indirection[g, i, t]`` is the
    row of group ``g`` whose buffer holds position ``t`` for row ``i``, so reordering beams
    rewrites that small table instead of the cache, and the beams of a window share its
    prompt. Buffers are ``np.empty``: pages are touched only as positions are written.
    """

    def __init__(
        self, model: _Model, buffers: list[FloatArray], indirection: NDArray[np.int32]
    ) -> None:
        self.model = model
        self.buffers = buffers
        self.group = int(indirection.shape[1])
        self.indirection = indirection  # updated in place: the binding holds its memory
        self._values = [ort_value(b) for b in buffers]  # OrtValues sharing the buffers' memory
        self._ind_value = ort_value(indirection)
        self.binding = model.decoder.raw.io_binding()
        b = self.binding  # logits are bound to a fresh array at each step (KVDecoder.step)
        for past, present, value in zip(
            model._past_names, model._present_names, self._values, strict=True
        ):
            b.bind_ortvalue_input(past, value)
            b.bind_ortvalue_output(present, value)
        self._flag = ort_value(np.array(True))
        self._width = ort_value(np.array([self.group], dtype=np.int32))
        b.bind_ortvalue_input("in_place", self._flag)
        b.bind_ortvalue_input("beam_width", self._width)
        b.bind_ortvalue_input("cache_indirection", self._ind_value)

    @property
    def size(self) -> int:
        return int(self.buffers[0].shape[2])

    @classmethod
    def from_present(cls, model: _Model, present: Sequence[CValue], group: int) -> InPlaceCache:
        """A cache holding the appending mode's ``present_*`` tensors, one row per row."""
        first = present[0].numpy()
        rows, heads, length, hd = first.shape
        size = model.max_text_tokens
        buffers = []
        for value in present:
            buf = np.empty((rows, heads, size, hd), dtype=np.float32)
            buf[:, :, :length] = value.numpy()
            buffers.append(buf)
        return cls(model, buffers, own_rows(rows, group, size))

    def bind_cross(self, cross: _Cross) -> None:
        for i in range(len(cross.keys)):
            self.binding.bind_ortvalue_input(f"cross_k_{i}", cross.keys[i])
            self.binding.bind_ortvalue_input(f"cross_v_{i}", cross.values[i])

    def sources(self, rows: IntArray, length: int) -> IntArray:
        """``[len(rows), length]``: the buffer row holding each position of each of ``rows``."""
        g = self.group
        base = (rows // g) * g
        return base[:, None] + self.indirection[rows // g, rows % g, :length].astype(np.int64)

    def gather(self, sources: IntArray, out: list[FloatArray], out_rows: IntArray) -> None:
        """Copy positions ``0..length`` of the rows that ``sources`` names into ``out_rows``."""
        length = sources.shape[1]
        straight = bool(np.all(sources == sources[:, :1]))
        pos = np.arange(length)
        for src_buf, dst in zip(self.buffers, out, strict=True):
            if straight:  # each row's positions all in one buffer row: one slice per row
                dst[out_rows, :, :length] = src_buf[sources[:, 0], :, :length]
            else:
                dst[out_rows, :, :length] = src_buf[sources, :, pos].transpose(0, 2, 1, 3)

    def select(self, rows: IntArray, group: int, length: int) -> InPlaceCache:
        """This cache with ``rows`` kept (reordered, repeated) in groups of ``group``: the
        indirection alone when each row stays in its group's slot, else new buffers."""
        src = self.sources(rows, length)
        n = len(rows)
        slots = np.arange(n) // group
        if (
            n == self.buffers[0].shape[0]
            and group == self.group
            and np.array_equal(rows // self.group, slots)
        ):
            self.indirection[:, :, :length] = (src - (slots * group)[:, None]).reshape(
                n // group, group, length
            )
            return self
        shape = (n, *self.buffers[0].shape[1:])
        buffers = [np.empty(shape, dtype=np.float32) for _ in self.buffers]
        indirection = own_rows(n, group, self.size)
        firsts = slots * group
        shared = all(np.array_equal(src[firsts[j]], src[j]) for j in range(n))
        if shared:  # every group's rows are one sequence (beams starting): keep it once
            heads = np.unique(firsts)
            self.gather(src[heads], buffers, heads)
            indirection[:, :, :length] = 0
        else:
            self.gather(src, buffers, np.arange(n))
        return InPlaceCache(self.model, buffers, indirection)

    def materialise(self, rows: int, length: int) -> list[FloatArray]:
        """The appending mode's ``present_*`` tensors ``[rows, heads, length, head_dim]``."""
        shape = (rows, *self.buffers[0].shape[1:2], length, self.buffers[0].shape[3])
        out = [np.empty(shape, dtype=np.float32) for _ in self.buffers]
        self.gather(self.sources(np.arange(rows), length), out, np.arange(rows))
        return out


def own_rows(rows: int, group: int, size: int) -> NDArray[np.int32]:
    """An indirection where each row reads only its own buffer row."""
    own = np.arange(group, dtype=np.int32)[None, :, None]
    return np.ascontiguousarray(np.broadcast_to(own, (rows // group, group, size)))
