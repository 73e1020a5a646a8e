"""Build Whisper ONNX graphs straight from numpy weights (no torch, no tracing).

Two graphs per model; their input/output contract is what the inference engine relies on, so
it is written down here and in ``docs/architecture.md``:

``encoder.onnx``
    in  ``input_features``  float32 [batch, n_mels, frames]   frames even, 2..2·n_audio_ctx
    out ``last_hidden_state`` float32 [batch, frames/2, d_model]
    out ``cross_k_{i}`` float32 [batch, heads, frames/2, head_dim] and
        ``cross_v_{i}`` float32 [batch, heads, head_dim, frames/2] (transposed, version 8 on)
        for each decoder layer ``i``: the cross-attention keys and values, computed once per
        audio window so that decoding steps never recompute them.

    The positional embedding is sliced to ``frames/2``, so a 5-s clip (500 frames) is encoded
    without padding it to 30 s. Whisper was trained on padded 30-s windows; callers choose.

``decoder.onnx``
    in  ``input_ids``       int64 [batch, tokens]
    in  ``position_ids``    int64 [batch, tokens]        absolute positions (< n_text_ctx)
    in  ``attention_mask``  int64 [batch, past + tokens] 1 = real token, 0 = padding
    in  ``logits_index``    int64 [batch, picked]        which of this call's token positions
        (0..tokens-1) to compute logits for: the last one when generating; the
        start-of-transcript one too for the no-speech probability; all of them for alignment
    in  ``past_k_{i}``, ``past_v_{i}`` float32 [batch, heads, past, head_dim]  (past may be 0)
    in  ``cross_k_{i}`` [windows, heads, positions, head_dim], ``cross_v_{i}`` [windows, heads,
        head_dim, positions], float32, from the encoder. ``batch`` must be a multiple of
        ``windows``: consecutive groups of ``batch / windows`` rows (the beams of one window)
        share one window's keys and values, so beam search reads the encoder output once per
        step instead of once per beam.
    out ``logits``          float32 [batch, picked, n_vocab]
    out ``present_k_{i}``, ``present_v_{i}`` float32 [batch, heads, past + tokens, head_dim]
    out ``cross_attention_{i}`` float32 [windows, heads_i, rows, positions]  (version 8 on)
        for each decoder layer ``i`` that holds alignment heads: the softmax cross-attention
        weights of its ``heads_i`` alignment heads, in the order given; ``rows`` = (batch /
        windows) · tokens, window by window, each row's tokens in turn.
        ``ModelMetadata.alignment_attention`` joins them (for word timestamps) as [batch,
        n_alignment_heads, tokens, positions].
        Fused graphs (version 9 on) compute them only when asked: see ``alignment``.
    in  ``alignment``       bool []  (fused graphs, version 9 on; default false)  true: fill
        ``cross_attention_{i}``. False: a call with at least ``FUSED_CROSS_MIN_ROWS`` (48)
        queries per window (batch / windows · tokens: a long prompt's prefill) runs the
        cross-attention as one fused kernel and leaves them with 0 rows; a step or a short
        prompt fills them either way.

    In-place mode (fused graphs, version 6 on; three inputs with defaults that select the mode
    above, so callers that do not know them are unaffected):
    in  ``in_place``        bool []                       true: one token per row, and
        ``past_*`` are fixed-size buffers [batch, heads, max_cache, head_dim] holding the
        first ``past`` positions; this call's keys/values are written at position ``past``
        (``attention_mask`` still has ``past + 1`` columns) and ``present_*`` are the same
        buffers (bind both to one memory: nothing is copied)
    in  ``beam_width``      int32 [1]                     rows per group (a window's beams)
    in  ``cache_indirection`` int32 [batch / beam_width, beam_width, max_cache]  which row of
        its group holds each earlier position for each row: beams reorder by rewriting it

    Explicit positions and a padding mask let the engine batch streams whose prompts differ in
    length (left padding) and run greedy or beam search with the same graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from audiototext.models.graph_builder import MS_DOMAIN, GraphBuilder, value_info
from audiototext.models.graph_cross import (
    FUSED_CROSS_MIN_ROWS,
    cross_attention_either,
    cross_attention_plain,
)
from audiototext.models.versions import GRAPH_VERSION, OPSET
from audiototext.models.weights import WhisperCheckpoint

__all__ = ["GRAPH_VERSION", "OPSET", "build_decoder", "build_encoder"]

_NEG = -1e9  # additive mask value; large but finite so a fully masked row stays finite


def _model(
    b: GraphBuilder,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    name: str,
) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, name, inputs, outputs, initializer=b.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="audiototext",
    )
    model.ir_version = 8  # readable by every onnxruntime since 1.11
    return model


def build_encoder(ckpt: WhisperCheckpoint, fused: bool = True) -> onnx.ModelProto:
    d = ckpt.dims
    hd = d.d_model // d.encoder_heads
    scale = hd**-0.5
    b = GraphBuilder("encoder", fused=fused)

    x = "input_features"
    for conv, stride in (("conv1", 1), ("conv2", 2)):
        w = b.init(f"encoder.{conv}.weight", ckpt[f"encoder.{conv}.weight"])
        bias = b.init(f"encoder.{conv}.bias", ckpt[f"encoder.{conv}.bias"])
        x = b.gelu(b.op("Conv", [x, w, bias], kernel_shape=[3], pads=[1, 1], strides=[stride]))
    x = b.op("Transpose", [x], perm=[0, 2, 1])  # [B, S, d]
    # Slice the positional table to the number of encoded positions (variable-length input).
    s = b.op("Gather", [b.op("Shape", [x]), b.const([1])], axis=0)
    pos = b.init("encoder.embed_positions.weight", ckpt["encoder.embed_positions.weight"])
    pos = b.op("Slice", [pos, b.const([0]), s, b.const([0])])
    x = b.op("Add", [x, pos])

    for i in range(d.encoder_layers):
        p = f"encoder.layers.{i}"
        h = b.layer_norm(x, ckpt, f"{p}.self_attn_layer_norm")
        q = b.linear(
            h,
            ckpt[f"{p}.self_attn.q_proj.weight"],
            ckpt[f"{p}.self_attn.q_proj.bias"],
            f"{p}.self_attn.q_proj",
            scale,
        )
        k = b.linear(h, ckpt[f"{p}.self_attn.k_proj.weight"], None, f"{p}.self_attn.k_proj")
        v = b.linear(
            h,
            ckpt[f"{p}.self_attn.v_proj.weight"],
            ckpt[f"{p}.self_attn.v_proj.bias"],
            f"{p}.self_attn.v_proj",
        )
        if b.fused:
            ctx = b.op(
                "MultiHeadAttention",
                [q, k, v],
                domain=MS_DOMAIN,
                num_heads=d.encoder_heads,
                scale=1.0,
            )
        else:
            ctx4 = b.attend(
                b.split_heads(q, d.encoder_heads, hd),
                b.split_heads(k, d.encoder_heads, hd, (0, 2, 3, 1)),
                b.split_heads(v, d.encoder_heads, hd),
                None,
            )
            ctx = b.merge_heads(ctx4, d.d_model)
        o = b.linear(
            ctx,
            ckpt[f"{p}.self_attn.out_proj.weight"],
            ckpt[f"{p}.self_attn.out_proj.bias"],
            f"{p}.self_attn.out_proj",
        )
        x = b.mlp(b.op("Add", [x, o]), ckpt, p)

    g = b.init("encoder.layer_norm.weight", ckpt["encoder.layer_norm.weight"])
    beta = b.init("encoder.layer_norm.bias", ckpt["encoder.layer_norm.bias"])
    b.op("LayerNormalization", [x, g, beta], out=["last_hidden_state"], axis=-1, epsilon=1e-5)

    outputs = [
        value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "positions", d.d_model])
    ]
    hdec = d.d_model // d.decoder_heads
    for i in range(d.decoder_layers):
        p = f"decoder.layers.{i}.encoder_attn"
        k = b.linear("last_hidden_state", ckpt[f"{p}.k_proj.weight"], None, f"{p}.k_proj")
        v = b.linear(
            "last_hidden_state", ckpt[f"{p}.v_proj.weight"], ckpt[f"{p}.v_proj.bias"], f"{p}.v_proj"
        )
        # Keys as [B, heads, S, hd] and values transposed, [B, heads, hd, S]: the decoder
        # multiplies both from the left (see build_decoder's cross-attention).
        layouts: list[tuple[str, str, list[int], list[str | int]]] = [
            ("k", k, [0, 2, 1, 3], ["batch", d.decoder_heads, "positions", hdec]),
            ("v", v, [0, 2, 3, 1], ["batch", d.decoder_heads, hdec, "positions"]),
        ]
        for kind, t, perm, shape in layouts:
            r = b.op("Reshape", [t, b.const([0, 0, d.decoder_heads, hdec])])
            b.op("Transpose", [r], out=[f"cross_{kind}_{i}"], perm=perm)
            outputs.append(value_info(f"cross_{kind}_{i}", TensorProto.FLOAT, shape))
    inputs = [value_info("input_features", TensorProto.FLOAT, ["batch", d.n_mels, "frames"])]
    return _model(b, inputs, outputs, "whisper_encoder")


def build_decoder(
    ckpt: WhisperCheckpoint, alignment_heads: Sequence[tuple[int, int]], fused: bool = True
) -> onnx.ModelProto:
    d = ckpt.dims
    heads = d.decoder_heads
    hd = d.d_model // heads
    scale = hd**-0.5
    b = GraphBuilder("decoder", fused=fused)
    for layer, head in alignment_heads:
        if not (0 <= layer < d.decoder_layers and 0 <= head < heads):
            raise ValueError(f"alignment head ({layer}, {head}) is outside the model")

    # One copy of the token table, stored transposed for the output projection (the largest
    # MatMul per step); the embedding lookup gathers its columns instead of duplicating it.
    emb_t = b.init("decoder.embed_tokens.weight_t", ckpt["decoder.embed_tokens.weight"].T)
    tok = b.op("Transpose", [b.op("Gather", [emb_t, "input_ids"], axis=1)], perm=[1, 2, 0])
    pos_table = b.init("decoder.embed_positions.weight", ckpt["decoder.embed_positions.weight"])
    x = b.op("Add", [tok, b.op("Gather", [pos_table, "position_ids"], axis=0)])

    # Additive mask [B, 1, T, past+T]: causal over absolute cache indices, plus padding.
    total = b.op("Gather", [b.op("Shape", ["attention_mask"]), b.const([1])], axis=0)
    ntok = b.op("Gather", [b.op("Shape", ["input_ids"]), b.const([1])], axis=0)
    zero, one = b.const(0), b.const(1)
    total_s = b.op("Squeeze", [total, b.const([0])])
    past_s = b.op("Squeeze", [b.op("Sub", [total, ntok]), b.const([0])])
    key_idx = b.op("Range", [zero, total_s, one])
    query_idx = b.op("Unsqueeze", [b.op("Range", [past_s, total_s, one]), b.const([1])])
    causal = b.op("LessOrEqual", [key_idx, query_idx])  # [T, total]
    pad = b.op(
        "Cast", [b.op("Unsqueeze", ["attention_mask", b.const([1, 2])])], to=TensorProto.BOOL
    )
    allowed = b.op("And", [causal, pad])  # [B, 1, T, total]
    mask = b.op("Where", [allowed, b.const([0.0], np.float32), b.const([_NEG], np.float32)])
    if b.fused:  # the in-place cache's mask and write position (see GraphBuilder.self_attention)
        b.op("Cast", ["attention_mask"], out=["mask_index"], to=TensorProto.INT32)
        b.op("Cast", [b.op("Sub", [total, ntok])], out=["past_length"], to=TensorProto.INT32)

    align_layers: dict[int, list[int]] = {}  # layer -> its alignment heads, in the given order
    for layer, head in alignment_heads:
        align_layers.setdefault(layer, []).append(head)
    if not align_layers:
        raise ValueError("at least one alignment head is required")

    # Cross-attention by window: the rows of the batch come in equal consecutive groups (the
    # beams of one window), so the queries of a group become extra query positions of their
    # window, [windows, group*tokens, d], and the encoder output is read once per window.
    # Cross-attention has no mask and no position dependence, so this changes nothing else.
    cross_shape = b.op("Shape", ["cross_k_0"])
    windows = b.op("Gather", [cross_shape, b.const([0])], axis=0)
    grouped_heads = b.op("Concat", [windows, b.const([-1, heads, hd])], axis=0)
    ungrouped = b.op("Concat", [b.const([-1]), ntok, b.const([d.d_model])], axis=0)
    grouped = b.op("Concat", [windows, b.const([-1, d.d_model])], axis=0)
    shapes = (grouped_heads, grouped, ungrouped)
    if b.fused:  # cross-attention in plain ops for a step or alignment, else fused (prefill)
        b.op("Identity", [windows], out=["cross_windows"])
        b.op("Gather", [cross_shape, b.const([2])], out=["cross_positions"], axis=0)
        batch = b.op("Gather", [b.op("Shape", ["input_ids"]), b.const([0])], axis=0)
        rows = b.op("Mul", [b.op("Div", [batch, windows]), ntok])  # queries per window
        few = b.op("Less", [b.op("Squeeze", [rows, b.const([0])]), b.const(FUSED_CROSS_MIN_ROWS)])
        b.op("Or", [few, "alignment"], out=["cross_plain"])

    inputs = [
        value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
        value_info("position_ids", TensorProto.INT64, ["batch", "tokens"]),
        value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        value_info("logits_index", TensorProto.INT64, ["batch", "picked"]),
    ]
    outputs = [value_info("logits", TensorProto.FLOAT, ["batch", "picked", d.n_vocab])]
    for i in range(d.decoder_layers):
        p = f"decoder.layers.{i}"
        for kind in ("k", "v"):
            inputs.append(
                value_info(f"past_{kind}_{i}", TensorProto.FLOAT, ["batch", heads, "past", hd])
            )
        inputs.append(
            value_info(f"cross_k_{i}", TensorProto.FLOAT, ["windows", heads, "positions", hd])
        )
        inputs.append(
            value_info(f"cross_v_{i}", TensorProto.FLOAT, ["windows", heads, hd, "positions"])
        )
        for kind in ("k", "v"):
            outputs.append(
                value_info(f"present_{kind}_{i}", TensorProto.FLOAT, ["batch", heads, "cache", hd])
            )

        h = b.layer_norm(x, ckpt, f"{p}.self_attn_layer_norm")
        q = b.linear(
            h,
            ckpt[f"{p}.self_attn.q_proj.weight"],
            ckpt[f"{p}.self_attn.q_proj.bias"],
            f"{p}.self_attn.q_proj",
            scale,
        )
        k = b.linear(h, ckpt[f"{p}.self_attn.k_proj.weight"], None, f"{p}.self_attn.k_proj")
        v = b.linear(
            h,
            ckpt[f"{p}.self_attn.v_proj.weight"],
            ckpt[f"{p}.self_attn.v_proj.bias"],
            f"{p}.self_attn.v_proj",
        )
        if b.fused:
            ctx = b.self_attention(q, k, v, mask, i, heads)
        else:
            k_all = b.op(
                "Concat",
                [f"past_k_{i}", b.split_heads(k, heads, hd)],
                out=[f"present_k_{i}"],
                axis=2,
            )
            v_all = b.op(
                "Concat",
                [f"past_v_{i}", b.split_heads(v, heads, hd)],
                out=[f"present_v_{i}"],
                axis=2,
            )
            ctx4 = b.attend(
                b.split_heads(q, heads, hd),
                b.op("Transpose", [k_all], perm=[0, 1, 3, 2]),
                v_all,
                mask,
            )
            ctx = b.merge_heads(ctx4, d.d_model)
        o = b.linear(
            ctx,
            ckpt[f"{p}.self_attn.out_proj.weight"],
            ckpt[f"{p}.self_attn.out_proj.bias"],
            f"{p}.self_attn.out_proj",
        )
        x = b.op("Add", [x, o])

        h = b.layer_norm(x, ckpt, f"{p}.encoder_attn_layer_norm")
        q = b.linear(
            h,
            ckpt[f"{p}.encoder_attn.q_proj.weight"],
            ckpt[f"{p}.encoder_attn.q_proj.bias"],
            f"{p}.encoder_attn.q_proj",
            scale,
        )
        if b.fused:
            ctx = cross_attention_either(b, q, i, align_layers.get(i), shapes, heads)
        else:
            ctx = cross_attention_plain(b, q, i, align_layers.get(i), grouped_heads, ungrouped)
        o = b.linear(
            ctx,
            ckpt[f"{p}.encoder_attn.out_proj.weight"],
            ckpt[f"{p}.encoder_attn.out_proj.bias"],
            f"{p}.encoder_attn.out_proj",
        )
        x = b.mlp(b.op("Add", [x, o]), ckpt, p)

    if b.fused:
        # Inputs of the in-place mode, with defaults (initializers of the same name) that select
        # the appending mode: callers that do not know them feed nothing new.
        inputs += [
            value_info("in_place", TensorProto.BOOL, []),
            value_info("beam_width", TensorProto.INT32, [1]),
            value_info("cache_indirection", TensorProto.INT32, ["groups", "group", "max_cache"]),
            value_info("alignment", TensorProto.BOOL, []),
        ]
        b.inits.append(numpy_helper.from_array(np.array(False), "in_place"))  # a scalar
        b.init("beam_width", np.array([1], dtype=np.int32))
        b.init("cache_indirection", np.zeros((1, 1, 1), dtype=np.int32))
        b.inits.append(numpy_helper.from_array(np.array(False), "alignment"))

    x = b.layer_norm(x, ckpt, "decoder.layer_norm")
    # Project only the positions asked for: the vocabulary projection is the largest MatMul,
    # and a 200-token prompt needs logits at two positions, not 200.
    picked = b.op("GatherND", [x, b.op("Unsqueeze", ["logits_index", b.const([2])])], batch_dims=1)
    b.op("MatMul", [picked, emb_t], out=["logits"])
    # The alignment heads' attention leaves per layer, rows still grouped by window: regrouping
    # the rows and joining the layers in the graph ran in every decoding step (ORT runs every
    # node whatever is fetched) for nothing but word timing (bench/NOTES.md, round 9). One
    # Gather per layer stays, so that a word-timing pass holds only the alignment heads, not
    # every head of those layers (large models). ModelMetadata.alignment_attention regroups
    # them.
    outputs += [
        value_info(
            f"cross_attention_{i}",
            TensorProto.FLOAT,
            ["windows", len(align_layers[i]), "rows", "positions"],
        )
        for i in sorted(align_layers)
    ]
    return _model(b, inputs, outputs, "whisper_decoder")
