"""A small ONNX graph builder for the Whisper graphs (models/graph.py, models/graph_cross.py).

Unique node names from one counter, initializers, deduplicated constants, and the layers both
graphs share (linear, layer norm, GELU, MLP, head split/merge, self-attention). Node order and
names are part of the built bytes: callers build in a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from audiototext.models.weights import WhisperCheckpoint

__all__ = ["MS_DOMAIN", "GraphBuilder", "value_info"]

MS_DOMAIN = "com.microsoft"  # onnxruntime's contrib ops (MultiHeadAttention, Gelu)


@dataclass
class GraphBuilder:
    """A tiny ONNX graph builder: unique names, initializers, nodes in order."""

    prefix: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    _n: int = 0
    _const: dict[tuple[str, bytes], str] = field(default_factory=dict)
    fused: bool = True

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const(
        self, value: int | Sequence[int] | Sequence[float] | np.ndarray, dtype: type = np.int64
    ) -> str:
        arr: np.ndarray = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str + str(arr.shape), arr.tobytes())
        if key not in self._const:
            self._const[key] = self.init(self.name("const"), arr)
        return self._const[key]

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        n_out: int = 1,
        out: Sequence[str] | None = None,
        **attrs: Any,
    ) -> str:
        outs = list(out) if out else [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outs, name=self.name(op_type), **attrs)
        )
        return outs[0]

    # ---- composite layers --------------------------------------------------------------

    def linear(
        self, x: str, w: np.ndarray, b: np.ndarray | None, name: str, scale: float = 1.0
    ) -> str:
        # Stored as [in, out] so MatMul needs no transpose; a query scale is folded in.
        wt = self.init(f"{name}.weight_t", (w.T * scale).astype(np.float32))
        y = self.op("MatMul", [x, wt])
        if b is not None:
            y = self.op("Add", [y, self.init(f"{name}.bias", (b * scale).astype(np.float32))])
        return y

    def layer_norm(self, x: str, ckpt: WhisperCheckpoint, name: str) -> str:
        g = self.init(f"{name}.weight", ckpt[f"{name}.weight"])
        b = self.init(f"{name}.bias", ckpt[f"{name}.bias"])
        return self.op("LayerNormalization", [x, g, b], axis=-1, epsilon=1e-5)

    def gelu(self, x: str) -> str:
        # Exact (erf) GELU as in Whisper, as one onnxruntime kernel: ORT's optimiser does not
        # fuse the Erf/Mul/Add pattern (its cost: bench/NOTES.md, first section).
        if self.fused:
            return self.op("Gelu", [x], domain=MS_DOMAIN)
        half = self.const([0.5], np.float32)
        one = self.const([1.0], np.float32)
        inv_sqrt2 = self.const([1.0 / math.sqrt(2.0)], np.float32)
        e = self.op("Erf", [self.op("Mul", [x, inv_sqrt2])])
        return self.op("Mul", [self.op("Mul", [x, half]), self.op("Add", [e, one])])

    def mlp(self, x: str, ckpt: WhisperCheckpoint, p: str) -> str:
        h = self.layer_norm(x, ckpt, f"{p}.final_layer_norm")
        h = self.gelu(self.linear(h, ckpt[f"{p}.fc1.weight"], ckpt[f"{p}.fc1.bias"], f"{p}.fc1"))
        h = self.linear(h, ckpt[f"{p}.fc2.weight"], ckpt[f"{p}.fc2.bias"], f"{p}.fc2")
        return self.op("Add", [x, h])

    def split_heads(
        self, x: str, heads: int, head_dim: int, perm: Sequence[int] = (0, 2, 1, 3)
    ) -> str:
        r = self.op("Reshape", [x, self.const([0, 0, heads, head_dim])])
        return self.op("Transpose", [r], perm=list(perm))

    def merge_heads(self, x: str, d_model: int) -> str:
        t = self.op("Transpose", [x], perm=[0, 2, 1, 3])
        return self.op("Reshape", [t, self.const([0, 0, d_model])])

    def self_attention(self, q: str, k: str, v: str, mask: str, layer: int, heads: int) -> str:
        """Masked self-attention over the cache, as one ``If`` on ``in_place``.

        Else (the default): ``MultiHeadAttention`` appends this call's keys/values to
        ``past_*`` and returns the whole cache as ``present_*`` (a new tensor each call).
        Then: ``DecoderMaskedMultiHeadAttention`` over a fixed-size cache for one token per
        row: ``past_*`` and ``present_*`` are the same buffer (the caller binds both to it), the
        new keys/values are written at ``past_length``, and ``cache_indirection`` tells each
        row which row of its group (its window's beams) holds each earlier position, so beam
        search never copies the cache to reorder it.
        """
        ctx_t, ctx_e = self.name("mha"), self.name("dmmha")
        pk, pv = f"past_k_{layer}", f"past_v_{layer}"
        kt, vt = self.name("present_k"), self.name("present_v")
        ke, ve = self.name("present_k"), self.name("present_v")

        def branch(
            graph: str, op: str, inputs: list[str], outs: list[str], **attrs: Any
        ) -> onnx.GraphProto:
            node = helper.make_node(
                op,
                inputs,
                outs,
                name=self.name(op),
                domain=MS_DOMAIN,
                num_heads=heads,
                scale=1.0,
                **attrs,
            )
            outputs = [value_info(n, TensorProto.FLOAT, None) for n in outs]
            return helper.make_graph([node], f"{graph}_{layer}", [], outputs)

        step = branch(
            "in_place",
            "DecoderMaskedMultiHeadAttention",
            [q, k, v, "mask_index", "", pk, pv, "past_length", "beam_width", "cache_indirection"],
            [ctx_e, ke, ve],
            past_present_share_buffer=1,
        )
        grow = branch(
            "appended", "MultiHeadAttention", [q, k, v, "", "", mask, pk, pv], [ctx_t, kt, vt]
        )
        ctx = self.name("self_attn")
        self.op(
            "If",
            ["in_place"],
            out=[ctx, f"present_k_{layer}", f"present_v_{layer}"],
            then_branch=step,
            else_branch=grow,
        )
        return ctx

    def attend(self, q: str, k_t: str, v: str, bias: str | None) -> str:
        """q [B,H,T,hd] · k_t [B,H,hd,S] → softmax → · v [B,H,S,hd]; returns the context."""
        scores = self.op("MatMul", [q, k_t])
        if bias is not None:
            scores = self.op("Add", [scores, bias])
        weights = self.op("Softmax", [scores], axis=-1)
        return self.op("MatMul", [weights, v])


def value_info(name: str, elem: int, shape: Sequence[str | int] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))
