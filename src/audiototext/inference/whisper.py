"""The Whisper runner: encoder once per 30-s window, decoder steps over a key/value cache.

The graphs follow the contract in :mod:`audiototext.models.graph`. A :class:`WhisperModel` holds
the two sessions, the metadata and the tokenizer; it is read-only and shared by every request.
Each decoding call creates a :class:`KVDecoder`, which owns that call's cache.

The cache never round-trips through numpy between steps: ``present_*`` outputs come back as
``OrtValue`` objects and are fed straight in as the next step's ``past_*`` inputs, so a step
copies only its logits (one row of the vocabulary per sequence) out of ONNX Runtime. Reordering
the cache (beam search, finished rows) is one ``Gather`` per tensor in a tiny ONNX Runtime graph
(shipped in ``assets/``: see :mod:`audiototext.inference.helper_graphs`),
and the rows of one window (its beams) share that window's encoder output: the decoder graph
groups them, so the cross-attention keys and values are neither copied nor read once per beam.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from audiototext.errors import ModelError
from audiototext.inference.helper_graphs import REORDER_SIZES, reorder_session
from audiototext.inference.kv_cache import CValue, InPlaceCache, ort_value, run_c
from audiototext.inference.ort_session import OrtConfig, OrtSession
from audiototext.inference.tokenizer import WhisperTokenizer
from audiototext.models.metadata import ModelMetadata
from audiototext.models.versions import CONFIG_FILE, DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE

__all__ = ["CrossAttention", "KVDecoder", "WhisperModel"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class CrossAttention:
    """The encoder's per-layer cross-attention keys and values for a batch of windows."""

    keys: tuple[ort.OrtValue, ...]
    values: tuple[ort.OrtValue, ...]
    batch: int
    positions: int  # encoded positions (frames / 2)

    def take(self, rows: Sequence[int]) -> CrossAttention:
        """A batch made of ``rows`` of this one (repeats allowed: beams share a window)."""
        idx = np.asarray(rows, dtype=np.int64)
        if len(idx) == self.batch and np.array_equal(idx, np.arange(self.batch)):
            return self
        keys = tuple(ort_value(np.take(k.numpy(), idx, axis=0)) for k in self.keys)
        values = tuple(ort_value(np.take(v.numpy(), idx, axis=0)) for v in self.values)
        return CrossAttention(keys, values, len(idx), self.positions)


class WhisperModel:
    """Encoder and decoder sessions, metadata and tokenizer of one converted model."""

    def __init__(self, path: Path, config: OrtConfig | None = None) -> None:
        missing = [
            f
            for f in (ENCODER_FILE, DECODER_FILE, CONFIG_FILE, TOKENIZER_FILE)
            if not (path / f).is_file()
        ]
        if missing:
            raise ModelError(f"{path} is not a converted model: {', '.join(missing)} missing")
        try:
            meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read {path / CONFIG_FILE}: {exc}") from exc
        self.path = path
        self.metadata = ModelMetadata.from_json(meta)
        self.dims = self.metadata.dims
        self.tokenizer = WhisperTokenizer(path / TOKENIZER_FILE, self.metadata)
        self.config = config or OrtConfig()
        # The encoder's activations (tiny.en: ~2.2 MiB each, tens per window) come from ORT's
        # arena, reused window after window: glibc maps blocks of 1 MiB and more on their own
        # (tune_allocator), which would fault them all in again every window (bench/NOTES.md,
        # round 11). Streaming's shorter encodes
        # reuse the same chunks, so the arena stays at the largest window's working set per
        # concurrent encode. The decoder's shapes change every step: plain allocations.
        self.encoder = OrtSession(path / ENCODER_FILE, replace(self.config, memory_arena=True))
        self.decoder = OrtSession(path / DECODER_FILE, self.config)
        layers = range(self.dims.decoder_layers)
        self._cross_names = [f"cross_{kind}_{i}" for i in layers for kind in ("k", "v")]
        self._present_names = [f"present_{kind}_{i}" for i in layers for kind in ("k", "v")]
        self._past_names = [f"past_{kind}_{i}" for i in layers for kind in ("k", "v")]
        self.head_dim = self.dims.d_model // self.dims.decoder_heads
        # Decoders of graph version 6 on (fused graphs) can keep the self-attention cache in
        # place (see InPlaceCache); only on the CPU, where the cache buffers are numpy arrays
        # that ONNX Runtime reads and writes directly. False restores the appending mode.
        overridable = {i.name for i in self.decoder.raw.get_overridable_initializers()}
        self.in_place_cache = "cache_indirection" in overridable and self.decoder.on_cpu
        # Decoders of graph version 9 on fill the alignment heads' weights of a long prompt only
        # when asked (``alignment``): otherwise its cross-attention is one fused kernel. False
        # asks for them on every call, i.e. the plain cross-attention of version 8.
        self._alignment_input = "alignment" in overridable
        self.fused_prefill = self._alignment_input

    def with_threads(self, threads: int) -> WhisperModel:
        """This model with new sessions of ``threads`` intra-op threads (blocking: loads both
        graphs again); tokenizer and metadata are shared. ONNX Runtime fixes a session's
        threads when it is created, so this is the only way to change them."""
        other = copy.copy(self)
        other.config = replace(self.config, intra_op_threads=threads)
        other.encoder = OrtSession(
            self.path / ENCODER_FILE, replace(other.config, memory_arena=True)
        )
        other.decoder = OrtSession(self.path / DECODER_FILE, other.config)
        return other

    @property
    def threads(self) -> int:
        """Intra-op threads of the sessions, as ONNX Runtime was given them."""
        return int(self.decoder.raw.get_session_options().intra_op_num_threads)

    @property
    def n_mels(self) -> int:
        return self.dims.n_mels

    @property
    def window_frames(self) -> int:
        """Mel frames in one 30-s window (3000)."""
        return 2 * self.dims.n_audio_ctx

    @property
    def max_text_tokens(self) -> int:
        return self.dims.n_text_ctx

    @property
    def providers(self) -> list[str]:
        return self.decoder.providers

    def encode(self, mel: FloatArray) -> CrossAttention:
        """Encode ``mel`` ``[batch, n_mels, frames]`` (frames even) into cross-attention K/V."""
        if mel.ndim == 2:
            mel = mel[None]
        if (
            mel.ndim != 3
            or mel.shape[1] != self.n_mels
            or mel.shape[2] % 2
            or mel.shape[2] > self.window_frames
        ):
            raise ValueError(
                f"mel must be [batch, {self.n_mels}, even frames <= {self.window_frames}], "
                f"got {mel.shape}"
            )
        feeds = {"input_features": ort_value(mel.astype(np.float32, copy=False))}
        outs = self._run(self.encoder, self._cross_names, feeds)
        return CrossAttention(tuple(outs[0::2]), tuple(outs[1::2]), mel.shape[0], mel.shape[2] // 2)

    def encode_each(self, mel: FloatArray) -> CrossAttention:
        """:meth:`encode`, one window at a time on the CPU: the int8 encoder quantises its
        activations with one scale per block of frames spanning the whole batch (see
        models/row_blocks.py), so windows encoded together share scales and a window's words
        could depend on its batch-mates; on a CPU a batch is no faster (the encoder's GEMMs
        already have 1500 rows). An accelerator encodes the batch at once."""
        if mel.ndim != 3 or mel.shape[0] <= 1 or not self.encoder.on_cpu:
            return self.encode(mel)
        first = self.encode(mel[:1])
        keys = [np.empty((mel.shape[0], *k.shape()[1:]), np.float32) for k in first.keys]
        values = [np.empty((mel.shape[0], *v.shape()[1:]), np.float32) for v in first.values]
        for row in range(mel.shape[0]):
            one = first if row == 0 else self.encode(mel[row : row + 1])
            for dst, src in zip([*keys, *values], [*one.keys, *one.values], strict=True):
                dst[row] = src.numpy()[0]
        return CrossAttention(
            tuple(ort_value(k) for k in keys),
            tuple(ort_value(v) for v in values),
            mel.shape[0],
            first.positions,
        )

    def _run(
        self, session: OrtSession, outputs: list[str], feeds: dict[str, ort.OrtValue]
    ) -> list[ort.OrtValue]:
        try:
            return list(session.raw.run_with_ort_values(outputs, feeds))
        except Exception as exc:  # provider failure at run time: retry once on CPU
            if not session.fall_back_to_cpu(str(exc)):
                raise
            return list(session.raw.run_with_ort_values(outputs, feeds))

    def reorder(self, cache: Sequence[CValue], rows: IntArray) -> list[CValue]:
        """``cache`` tensors (the decoder's ``present_*`` order) with their batch rows picked by
        ``rows``, in one ONNX Runtime call (no numpy round trip)."""
        index = ort_value(rows.astype(np.int64, copy=False))  # alive until the call returns
        n = len(cache)
        if n in REORDER_SIZES:
            feeds = {f"c{i}": value for i, value in enumerate(cache)}
            feeds["rows"] = index._get_c_value()
            return run_c(reorder_session(n), [f"o{i}" for i in range(n)], feeds)
        one = reorder_session(1)  # a decoder depth without its own graph: one call per tensor
        return [
            run_c(one, ["o0"], {"c0": value, "rows": index._get_c_value()})[0] for value in cache
        ]

    def _run_decoder(self, outputs: list[str], feeds: dict[str, CValue]) -> list[CValue]:
        self.decoder.prepare(feeds)  # the token embedding rows these ids look up
        try:
            return run_c(self.decoder.raw, outputs, feeds)
        except Exception as exc:  # provider failure at run time: retry once on CPU
            if not self.decoder.fall_back_to_cpu(str(exc)):
                raise
            return run_c(self.decoder.raw, outputs, feeds)

    def _run_bound(self, binding: ort.IOBinding, ids: IntArray) -> None:
        self.decoder.prepare({"input_ids": ids})
        self.decoder.raw.run_with_iobinding(binding)

    def decoder_for(self, cross: CrossAttention) -> KVDecoder:
        return KVDecoder(self, cross)

    def forward_full(
        self, cross: CrossAttention, tokens: Sequence[Sequence[int]]
    ) -> tuple[FloatArray, FloatArray, IntArray]:
        """One pass over whole sequences (no cache kept): logits, alignment attention, padding.

        Sequences are left-padded to a common length; the returned int array holds each row's
        pad count. Used for word alignment, where every position's attention is needed.
        """
        kv = KVDecoder(self, cross)
        logits, attention = kv.prefill(tokens, want_attention=True, logits_for="all")
        return logits, attention, kv.pads


class KVDecoder:
    """One decoding call's cache over a batch of sequences.

    Row ``r`` decodes window ``r // group`` of ``cross``: the rows of a window (its beams) come
    in one consecutive group, and every window has the same number of rows.
    """

    def __init__(self, model: WhisperModel, cross: CrossAttention) -> None:
        self.model = model
        self.cross = cross
        self.batch = cross.batch
        self.group = 1
        d = model.dims
        empty = ort_value(np.zeros((self.batch, d.decoder_heads, 0, model.head_dim), np.float32))
        self._empty = empty  # owns the buffer of the initial (empty) cache
        self._past: list[CValue] = [empty._get_c_value() for _ in model._past_names]
        self._mask = np.zeros((self.batch, 0), dtype=np.int64)
        self._next_pos = np.zeros(self.batch, dtype=np.int64)
        self.pads = np.zeros(self.batch, dtype=np.int64)
        self._cache: InPlaceCache | None = None  # after the prefill, in the in-place mode
        self._owned: list[FloatArray] = []  # numpy memory behind OrtValues in self._past

    def _use_cache(self) -> InPlaceCache | None:
        """The in-place cache, made from the prefill's cache at the first step or selection
        (a prefill that is not followed by either, e.g. word alignment, never copies it); the
        appending mode again if the cache would outgrow the text context (left padding of
        dropped rows can make it longer than any row's positions)."""
        if self._cache is None and self.model.in_place_cache and self.length > 0:
            if self.length < self.model.max_text_tokens:
                self._cache = InPlaceCache.from_present(self.model, self._past, self.group)
                self._cache.bind_cross(self.cross)
                self._past, self._owned = [], []
        elif self._cache is not None and self.length >= self._cache.size:
            self._owned = self._cache.materialise(self.batch, self.length)
            self._past = [ort_value(o)._get_c_value() for o in self._owned]
            self._cache = None
        return self._cache

    @property
    def length(self) -> int:
        """Cached positions (including left padding)."""
        return int(self._mask.shape[1])

    def _small_inputs(
        self, ids: IntArray, pos: IntArray, index: IntArray
    ) -> dict[str, ort.OrtValue]:
        """A call's per-row inputs as OrtValues over their numpy buffers (which the caller must
        keep referenced until the run returns)."""
        return {
            "input_ids": ort_value(ids),
            "position_ids": ort_value(pos),
            "attention_mask": ort_value(self._mask),
            "logits_index": ort_value(index),
        }

    def _forward(
        self, ids: IntArray, pos: IntArray, want_attention: bool, index: IntArray
    ) -> tuple[FloatArray, FloatArray | None]:
        meta = self.model.metadata
        names = ["logits", *self.model._present_names]
        if want_attention:
            names += [f"cross_attention_{i}" for i in meta.alignment_layers]
        small = self._small_inputs(ids, pos, index)  # referenced until the run returns
        if self.model._alignment_input and (want_attention or not self.model.fused_prefill):
            small["alignment"] = ort_value(np.array(True))
        feeds = {name: value._get_c_value() for name, value in small.items()}
        feeds.update(zip(self.model._past_names, self._past, strict=True))
        for i in range(self.model.dims.decoder_layers):
            feeds[f"cross_k_{i}"] = self.cross.keys[i]._get_c_value()
            feeds[f"cross_v_{i}"] = self.cross.values[i]._get_c_value()
        outs = self.model._run_decoder(names, feeds)
        n_past = len(self.model._present_names)
        self._past = outs[1 : 1 + n_past]
        logits: FloatArray = outs[0].numpy()
        if not want_attention:
            return logits, None
        weights = {
            i: o.numpy() for i, o in zip(meta.alignment_layers, outs[1 + n_past :], strict=True)
        }
        return logits, meta.alignment_attention(weights, tokens=ids.shape[1])

    def prefill(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        want_attention: bool = False,
        logits_for: str = "sot_and_last",
    ) -> tuple[FloatArray, FloatArray]:
        """Feed each row's prompt (left-padded, :meth:`_prefill_first_apart`); return logits.

        ``logits_for="sot_and_last"``: ``[batch, 2, vocab]``, the logits at each row's
        start-of-transcript token (for the no-speech probability) and at its last token (the
        next token); the vocabulary projection runs for those positions only.
        ``logits_for="all"``: ``[batch, tokens, vocab]`` over the padded width.
        With ``want_attention`` also the alignment heads' attention
        ``[batch, heads, tokens, positions]`` (else an empty array).
        """
        if logits_for not in ("sot_and_last", "all"):
            raise ValueError("logits_for must be 'sot_and_last' or 'all'")
        if len(prompts) != self.batch:
            raise ValueError(f"expected {self.batch} prompts, got {len(prompts)}")
        if self.length:
            raise ValueError("prefill must come first")
        width = max(len(p) for p in prompts)
        if width == 0 or width > self.model.max_text_tokens:
            raise ValueError(f"prompt lengths must be in 1..{self.model.max_text_tokens}")
        prev = self.model.tokenizer.sot_prev  # unprompted: a second call gains nothing
        if (
            logits_for == "sot_and_last"
            and not want_attention
            and any(p[0] == prev for p in prompts)
        ):
            return self._prefill_first_apart(prompts, width), np.zeros(0, dtype=np.float32)
        ids = np.full((self.batch, width), self.model.tokenizer.eot, dtype=np.int64)
        pos = np.zeros((self.batch, width), dtype=np.int64)
        self._mask = np.zeros((self.batch, width), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            pad = width - len(prompt)
            ids[row, pad:] = prompt
            pos[row, pad:] = np.arange(len(prompt))
            self._mask[row, pad:] = 1
            self.pads[row] = pad
            self._next_pos[row] = len(prompt)
        if logits_for == "all":
            index = np.tile(np.arange(width, dtype=np.int64), (self.batch, 1))
        else:
            sot = self.model.tokenizer.sot
            index = np.empty((self.batch, 2), dtype=np.int64)
            for row, prompt in enumerate(prompts):
                at = list(prompt).index(sot) if sot in prompt else len(prompt) - 1
                index[row] = (self.pads[row] + at, width - 1)
        logits, attention = self._forward(ids, pos, want_attention, index)
        return logits, (attention if attention is not None else np.zeros(0, dtype=np.float32))

    def _prefill_first_apart(self, prompts: Sequence[Sequence[int]], width: int) -> FloatArray:
        """:meth:`prefill` of ``[batch, 2, vocab]`` logits in two calls: each row's first token,
        then the rest (left-padded, so the padding sits between the two in the cache). Used when
        a row is prompted with previous text: a prompt's first token (an attention sink) has
        activations far larger than the rest,
        and the int8 decoder quantises a MatMul's input with one scale per call (CTranslate2:
        one per row): together, the rest would keep a few quantisation steps (bench/NOTES.md,
        beamwer: beam 5 WER on recorded long-form speech 15.0 → 6.7 %)."""
        b = self.batch
        rest = width - 1
        self._mask = np.ones((b, 1), dtype=np.int64)
        first, _ = self._forward(
            np.asarray([[p[0]] for p in prompts], dtype=np.int64),
            np.zeros((b, 1), dtype=np.int64),
            False,
            np.zeros((b, 1), dtype=np.int64),
        )
        ids = np.full((b, rest), self.model.tokenizer.eot, dtype=np.int64)
        pos = np.ones((b, rest), dtype=np.int64)  # padding: not position 0, the sink's
        mask = np.zeros((b, rest), dtype=np.int64)
        index = np.zeros((b, 2), dtype=np.int64)
        sot = self.model.tokenizer.sot
        ats = [list(p).index(sot) if sot in p else len(p) - 1 for p in prompts]
        for row, (prompt, at) in enumerate(zip(prompts, ats, strict=True)):
            n = len(prompt)
            pad = width - n
            ids[row, pad:] = prompt[1:]
            pos[row, pad:] = np.arange(1, n)
            mask[row, pad:] = 1
            self.pads[row] = pad
            self._next_pos[row] = n
            index[row] = (pad + at - 1 if at else 0, rest - 1)
        self._mask = np.concatenate([self._mask, mask], axis=1)
        logits, _ = self._forward(ids, pos, False, index)
        out = np.array(logits, dtype=np.float32)
        for row, (prompt, at) in enumerate(zip(prompts, ats, strict=True)):
            if at == 0:  # the start of transcript was the first token
                out[row, 0] = first[row, 0]
            if len(prompt) == 1:
                out[row, 1] = first[row, 0]
        return out

    def step(self, tokens: IntArray) -> FloatArray:
        """Feed one token per row; logits ``[batch, vocab]`` for the next position (the caller
        owns them: no other reference to their buffer remains)."""
        if self._next_pos.max(initial=0) >= self.model.max_text_tokens:
            raise ValueError(
                f"the decoder's context of {self.model.max_text_tokens} tokens is full"
            )
        ids = np.asarray(tokens, dtype=np.int64).reshape(self.batch, 1)
        pos = self._next_pos.reshape(self.batch, 1).copy()
        self._next_pos += 1
        index = np.zeros((self.batch, 1), dtype=np.int64)
        cache = self._use_cache()
        self._mask = np.concatenate([self._mask, np.ones((self.batch, 1), dtype=np.int64)], axis=1)
        if cache is None:
            logits, _ = self._forward(ids, pos, want_attention=False, index=index)
            return logits[:, -1]
        small = self._small_inputs(ids, pos, index)  # referenced until the run returns
        for name, value in small.items():
            cache.binding.bind_ortvalue_input(name, value)
        # A fresh logits array per step, bound as the output: ORT writes into it, and the caller
        # owns it (a buffer ORT allocated would be reused by the next step). Binding our own
        # memory also spares get_outputs(), which wraps every bound output (bench/NOTES.md).
        out = np.empty((self.batch, 1, self.model.dims.n_vocab), dtype=np.float32)
        cache.binding.bind_output("logits", "cpu", 0, np.float32, out.shape, out.ctypes.data)
        self.model._run_bound(cache.binding, ids)
        return out[:, -1]

    def select(self, rows: Sequence[int]) -> None:
        """Keep (and reorder or repeat) ``rows``: beam reordering, or dropping finished rows.

        The encoder output, the largest tensor, is left alone while the new rows still come in
        equal consecutive groups per window (beams reordered within their window, or repeated
        from one row per window); windows without rows are dropped from it, and only rows of
        uneven groups make it repeat windows per row.
        """
        idx = np.asarray(rows, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= self.batch:
            raise ValueError(f"rows must be a non-empty list of indices below {self.batch}")
        if len(idx) == self.batch and np.array_equal(idx, np.arange(self.batch)):
            return
        windows = idx // self.group
        kept, counts = np.unique(windows, return_counts=True)
        grouped = bool(np.all(np.diff(windows) >= 0) and np.all(counts == counts[0]))
        group = int(counts[0]) if grouped else 1
        cache = self._use_cache()
        if cache is None:
            self._past = self.model.reorder(self._past, idx)
        else:
            self._cache = cache.select(idx, group, self.length)
        self._mask = self._mask[idx]
        self._next_pos = self._next_pos[idx]
        self.pads = self.pads[idx]
        self.batch = len(idx)
        self.group = group
        if grouped:
            if len(kept) != self.cross.batch:
                self.cross = self.cross.take(kept.tolist())
        else:
            self.cross = self.cross.take(windows.tolist())
        if self._cache is not None:
            self._cache.bind_cross(self.cross)
