"""The decoder's cross-attention, built into a GraphBuilder (models/graph.py calls these).

Plain ops (steps, alignment weights) or, in fused graphs, an ``If`` between the plain ops and
onnxruntime's ``MultiHeadAttention`` for a long prompt's prefill (graph version 9).
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import TensorProto, helper

from audiototext.models.graph_builder import MS_DOMAIN, GraphBuilder, value_info

__all__ = ["FUSED_CROSS_MIN_ROWS", "cross_attention_either", "cross_attention_plain"]

# Below this many queries per window (a step's beams, a short prompt) the plain-op
# cross-attention is faster than the fused kernel, whose values need a transpose first
# (bench/prefill.py: crossover between 32 and 64 tokens on tiny.en; bench/NOTES.md, prefill).
FUSED_CROSS_MIN_ROWS = 48


def cross_attention_plain(
    b: GraphBuilder,
    q: str,
    layer: int,
    align_heads: Sequence[int] | None,
    grouped_heads: str,
    ungrouped: str,
    weights_out: str | None = None,
) -> str:
    """Cross-attention of ``q`` [batch, tokens, d] over window ``layer``'s keys/values in
    plain ops, with the alignment heads' softmax weights as ``weights_out``; the context.

    Both products have the encoder's positions on the left, K·Qᵀ and Vᵀ·Pᵀ, so the matrix
    a GEMM packs is the small one (the queries, a beam group's few rows) and not the
    encoder's 1500 positions, once per head and step (bench/NOTES.md, round 9).
    """
    q = b.op("Reshape", [q, grouped_heads])  # [windows, group*tokens, heads, hd]
    q_t = b.op("Transpose", [q], perm=[0, 2, 3, 1])  # [windows, heads, hd, rows]
    scores_t = b.op("MatMul", [f"cross_k_{layer}", q_t])  # [windows, heads, pos, rows]
    scores = b.op("Transpose", [scores_t], perm=[0, 1, 3, 2])
    weights = b.op("Softmax", [scores], axis=-1)  # [windows, heads, rows, positions]
    if align_heads is not None:  # this layer's alignment heads, as a graph output
        out = [weights_out or f"cross_attention_{layer}"]
        b.op("Gather", [weights, b.const(list(align_heads))], out=out, axis=1)
    weights_t = b.op("Transpose", [weights], perm=[0, 1, 3, 2])
    ctx_t = b.op("MatMul", [f"cross_v_{layer}", weights_t])  # [windows, heads, hd, rows]
    ctx = b.op("Transpose", [ctx_t], perm=[0, 3, 1, 2])  # [windows, rows, heads, hd]
    return b.op("Reshape", [ctx, ungrouped])  # back to [batch, tokens, d]


def cross_attention_either(
    b: GraphBuilder,
    q: str,
    layer: int,
    align_heads: Sequence[int] | None,
    shapes: tuple[str, str, str],
    heads: int,
) -> str:
    """Cross-attention as one ``If`` on ``cross_plain`` (see build_decoder): the plain ops
    above for fewer than FUSED_CROSS_MIN_ROWS queries per window (steps, short prompts:
    there they are fastest) or when the alignment weights are wanted; else (a long
    prompt's prefill) onnxruntime's ``MultiHeadAttention``,
    which never materialises the [rows, positions] weights in four passes and leaves
    ``cross_attention_{layer}`` empty (0 rows). ``shapes``: the query reshapes grouped by
    heads, grouped, and back (build_decoder).
    """
    grouped_heads, grouped, ungrouped = shapes
    outer = b.nodes
    b.nodes = []
    weights = b.name("align_weights")
    ctx = cross_attention_plain(b, q, layer, align_heads, grouped_heads, ungrouped, weights)
    plain_nodes = b.nodes
    b.nodes = []
    qg = b.op("Reshape", [q, grouped])  # [windows, group*tokens, d]
    v = b.op("Transpose", [f"cross_v_{layer}"], perm=[0, 1, 3, 2])  # [w, heads, pos, hd]
    fused = b.op(
        "MultiHeadAttention",
        [qg, f"cross_k_{layer}", v],
        domain=MS_DOMAIN,
        num_heads=heads,
        scale=1.0,
    )
    fused = b.op("Reshape", [fused, ungrouped])
    empty = b.name("no_weights")
    if align_heads is not None:
        no_rows = b.op(
            "Concat",
            ["cross_windows", b.const([len(align_heads), 0]), "cross_positions"],
            axis=0,
        )
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
        b.op("ConstantOfShape", [no_rows], out=[empty], value=zero)
    fused_nodes = b.nodes
    b.nodes = outer

    def graph(nodes: list[onnx.NodeProto], outs: list[str], kind: str) -> onnx.GraphProto:
        values = [value_info(n, TensorProto.FLOAT, None) for n in outs]
        return helper.make_graph(nodes, f"cross_{kind}_{layer}", [], values)

    result = b.name("cross_attn")
    out = [result]
    plain_outs, fused_outs = [ctx], [fused]
    if align_heads is not None:
        out.append(f"cross_attention_{layer}")
        plain_outs.append(weights)
        fused_outs.append(empty)
    b.op(
        "If",
        ["cross_plain"],
        out=out,
        then_branch=graph(plain_nodes, plain_outs, "plain"),
        else_branch=graph(fused_nodes, fused_outs, "fused"),
    )
    return result
