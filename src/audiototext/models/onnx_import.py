"""Recover Whisper weights from ONNX exports in the optimum / transformers.js layout.

Repositories such as ``onnx-community/whisper-*`` or ``Xenova/whisper-*`` hold no safetensors,
only ONNX graphs: ``encoder_model.onnx`` and ``decoder_model.onnx`` (or
``decoder_model_merged.onnx``), in ``onnx/`` or at the root, sometimes with the weights in an
``*.onnx_data`` side file, plus quantised copies (``*_quantized``, ``*_int8``, ``*_q4`` ...).
We do not run those graphs: their inputs, cache layout and attention masks differ from the
contract of :mod:`audiototext.models.graph`. Instead the float weights are read back out of
their initializers and fed to our own converter, like any other checkpoint.

Exporters keep a parameter's name only when the graph uses it unchanged (layer norms, biases,
convolutions, embedding tables) -- and even then under a prefix that depends on which module
was exported (``layers.0.fc1.bias``, ``model.decoder.layers.0.fc1.bias``...). Linear weights
are used transposed, so constant folding stores a new, anonymous tensor (``onnx::MatMul_123``
from the TorchScript exporter, ``val_42`` from the dynamo one) or keeps a ``Transpose`` node.
Names are therefore ignored altogether: every weight is identified by its place in the graph.

* A *linear* is ``MatMul(x, W)`` with a constant ``W`` (folded through Transpose, Cast...),
  optionally followed by ``Add(·, b)``; the torch weight is ``W.T``.
* A *layer norm* is a ``LayerNormalization`` node, or the opset < 17 decomposition
  ``(x - mean) / sqrt(var + eps) * g + b``.
* An *attention* is found from its score ``MatMul`` (two activations, leads to ``Softmax``)
  and context ``MatMul`` (its left side comes from that ``Softmax``): the linear reaching the
  scores on the left is ``q_proj``, on the right ``k_proj``; the one reaching the context is
  ``v_proj``; the linear reading the context is ``out_proj``. Self- and cross-attention differ
  by where ``k``/``v`` read from (the layer norm, or the encoder states fed in from outside).
* Layers are then assembled from the order of the layer norms, which is the order of the
  computation: ``[attention, mlp] × n + final`` in the encoder, ``[self-attention,
  cross-attention, mlp] × n + final`` in the decoder. Every linear must get a role, and every
  shape must fit, or the import fails rather than guessing.

``decoder_with_past_model.onnx`` alone is not enough: it reads cross-attention keys and values
from its inputs and so holds no ``encoder_attn.k_proj``/``v_proj`` weights. In a merged decoder
the branch without the cache is the complete one and is read instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from audiototext.errors import ConversionError, NotWhisperError
from audiototext.models.onnx_export_files import choose_files, pick_onnx_files
from audiototext.models.onnx_export_graph import (
    FUSED_ATTENTION,
    LOOKUP,
    Array,
    Attention,
    Block,
    ExportGraph,
    Linear,
    Norm,
    f32,
)
from audiototext.models.weights import WhisperCheckpoint, _finish

__all__ = ["load_onnx_export", "pick_onnx_files"]


@dataclass
class _Blocks:
    """What one graph holds, in the order of computation."""

    blocks: list[Block]
    leftovers: list[Linear]  # linears in no block (the decoder's output projection)


def _analyse(g: ExportGraph) -> _Blocks:
    linears = g.linears()
    norms = g.norms()
    by_output = {n.output: n for n in norms}
    attentions: dict[int, Attention] = {}
    assigned: set[int] = set()

    def core_of(lin: Linear) -> tuple[str, int] | None:
        hits = g.forward_hits(lin.output)
        if len(hits) != 1:
            return None
        idx, slot = hits[0]
        node = g.nodes[idx]
        if node.op_type in FUSED_ATTENTION and slot < 3:
            return "qkv"[slot], idx
        if node.op_type != "MatMul" or g.is_linear(idx):
            return None
        # Scores MatMul: its output reaches a Softmax, whose output feeds the context MatMul.
        after = g.forward_hits(node.output[0])
        if len(after) == 1 and g.nodes[after[0][0]].op_type == "Softmax":
            ctx = g.forward_hits(g.nodes[after[0][0]].output[0])
            if len(ctx) == 1 and g.nodes[ctx[0][0]].op_type == "MatMul" and ctx[0][1] == 0:
                return ("q" if slot == 0 else "k"), ctx[0][0]
            return None
        if slot == 1 and g.back_to(node.input[0], {"Softmax"}) is not None:
            return "v", idx
        return None

    for lin in linears:
        found = core_of(lin)
        if found is None:
            continue
        role, core = found
        parts = attentions.setdefault(core, Attention()).parts
        if role in parts:
            raise ConversionError(f"{g.label}: attention at node {core} has two {role} inputs")
        parts[role] = lin
        assigned.add(lin.index)

    for lin in linears:
        if lin.index in assigned:
            continue
        back = g.back_to(lin.input, {"MatMul", *FUSED_ATTENTION})
        if back is not None and back in attentions:
            if "out" in attentions[back].parts:
                raise ConversionError(f"{g.label}: attention at node {back} has two outputs")
            attentions[back].parts["out"] = lin
            assigned.add(lin.index)

    q_norm: dict[str, int] = {}
    for core, att in attentions.items():
        if "q" in att.parts:
            q_norm[g.source(att.parts["q"].input)] = core
    fc1_by_input: dict[str, Linear] = {}
    for lin in linears:
        if lin.index not in assigned and g.source(lin.input) in by_output:
            fc1_by_input[g.source(lin.input)] = lin
    blocks: list[Block] = []
    by_index = {lin.index: lin for lin in linears}
    for norm in norms:
        if norm.output in q_norm:
            blocks.append(Block(norm, "attn", attention=attentions[q_norm[norm.output]]))
        elif (
            norm.output in fc1_by_input
            and (fc1 := fc1_by_input[norm.output])
            and (nxt := g.forward_hits(fc1.output))
            and len(nxt) == 1
            and nxt[0][0] in by_index
            and nxt[0][0] not in assigned
        ):
            fc2 = by_index[nxt[0][0]]
            blocks.append(Block(norm, "mlp", mlp=(fc1, fc2)))
            assigned.update((fc1.index, fc2.index))
        else:
            blocks.append(Block(norm, "final"))
    return _Blocks(blocks, [lin for lin in linears if lin.index not in assigned])


def _put_norm(t: dict[str, Array], name: str, norm: Norm) -> None:
    t[f"{name}.weight"] = norm.weight
    t[f"{name}.bias"] = norm.bias


def _put_attention(t: dict[str, Array], name: str, att: Attention, label: str) -> None:
    missing = [p for p in ("q", "k", "v", "out") if p not in att.parts]
    if missing:
        raise ConversionError(
            f"{label}: {name} lacks its {', '.join(p + '_proj' for p in missing)} weights "
            "(a decoder exported with past keys/values has no cross-attention projections)"
        )
    for part, lin in att.parts.items():
        proj = "out_proj" if part == "out" else f"{part}_proj"
        t[f"{name}.{proj}.weight"] = lin.weight
        # Whisper's k_proj has no bias; one would not change the attention (softmax ignores a
        # per-query constant), so an exporter's zero bias is dropped rather than refused.
        if lin.bias is not None and part != "k":
            t[f"{name}.{proj}.bias"] = lin.bias
        elif lin.bias is None and part != "k":
            raise ConversionError(f"{label}: {name}.{proj} has no bias")


def _put_mlp(t: dict[str, Array], name: str, fcs: tuple[Linear, Linear], label: str) -> None:
    for fc, lin in zip(("fc1", "fc2"), fcs, strict=True):
        if lin.bias is None:
            raise ConversionError(f"{label}: {name}.{fc} has no bias")
        t[f"{name}.{fc}.weight"] = lin.weight
        t[f"{name}.{fc}.bias"] = lin.bias


def _layers(found: _Blocks, pattern: Sequence[str], label: str) -> list[list[Block]]:
    """Split the blocks into layers of ``pattern``, after which only the final norm remains."""
    kinds = [b.kind for b in found.blocks]
    n = (len(kinds) - 1) // len(pattern)
    if n < 1 or kinds != [*pattern] * n + ["final"]:
        raise ConversionError(
            f"{label}: unexpected layer structure {kinds}; a Whisper graph repeats "
            f"{' / '.join(pattern)} blocks and ends with a layer norm"
        )
    return [found.blocks[i * len(pattern) : (i + 1) * len(pattern)] for i in range(n)]


def _attention(block: Block) -> Attention:
    assert block.attention is not None  # guaranteed by _layers' kind check
    return block.attention


def _mlp(block: Block) -> tuple[Linear, Linear]:
    assert block.mlp is not None  # guaranteed by _layers' kind check
    return block.mlp


def _table_for(g: ExportGraph, value: str) -> tuple[Array, int | None] | None:
    """The constant table behind an embedding lookup, and the Gather node reading it."""
    gather = None
    for _ in range(16):
        c = g.const(value)
        if c is not None:
            while c.ndim > 2 and c.shape[0] == 1:
                c = c[0]
            return c, gather
        idx = g.producer.get(value)
        if idx is None or g.nodes[idx].op_type not in LOOKUP:
            return None
        node = g.nodes[idx]
        if node.op_type == "Gather" and gather is None:
            gather = idx
        value = node.input[0]
    return None


def _read_encoder(g: ExportGraph, t: dict[str, Array]) -> None:
    label = g.label
    convs = [i for i, n in enumerate(g.nodes) if n.op_type == "Conv"]
    if len(convs) != 2:
        raise NotWhisperError(f"{label} has {len(convs)} convolutions; a Whisper encoder has 2")
    for name, idx in zip(("conv1", "conv2"), convs, strict=True):
        node = g.nodes[idx]
        w = g.const(node.input[1])
        b = g.const(node.input[2]) if len(node.input) > 2 else None
        if w is None or b is None:
            raise ConversionError(f"{label}: {name} has no constant weight and bias")
        t[f"encoder.{name}.weight"], t[f"encoder.{name}.bias"] = f32(w), f32(b)
    found = _analyse(g)
    if not found.blocks:
        raise ConversionError(f"{label}: no layer norms found")
    tokens, positions = _embeddings(g, found.blocks[0].norm)
    if positions is None or positions.ndim != 2 or tokens is not None:
        raise ConversionError(f"{label}: cannot find the positional embedding table")
    t["encoder.embed_positions.weight"] = f32(positions)
    for i, (attn, mlp) in enumerate(_layers(found, ("attn", "mlp"), label)):
        p = f"encoder.layers.{i}"
        att = _attention(attn)
        _check_inputs(g, att, p, cross=False)
        _put_norm(t, f"{p}.self_attn_layer_norm", attn.norm)
        _put_attention(t, f"{p}.self_attn", att, label)
        _put_norm(t, f"{p}.final_layer_norm", mlp.norm)
        _put_mlp(t, p, _mlp(mlp), label)
    _put_norm(t, "encoder.layer_norm", found.blocks[-1].norm)
    if found.leftovers:
        raise ConversionError(
            f"{label}: {len(found.leftovers)} matrix weight(s) fit no Whisper encoder role"
        )


def _check_inputs(g: ExportGraph, att: Attention, name: str, *, cross: bool) -> None:
    """Self-attention keys/values come from its own layer norm; cross-attention ones from
    the encoder states handed in from outside the decoder."""
    if "q" not in att.parts:
        raise ConversionError(f"{g.label}: {name} has no query projection")
    own = g.source(att.parts["q"].input)
    for part in ("k", "v"):
        if part not in att.parts:
            continue  # reported with the other missing projections by _put_attention
        src = g.source(att.parts[part].input)
        if cross and not g.external(src):
            raise ConversionError(f"{g.label}: {name} cross-attention does not read the encoder")
        if not cross and src != own:
            raise ConversionError(f"{g.label}: {name} self-attention reads another input")


def _embeddings(g: ExportGraph, first_norm: Norm) -> tuple[Array | None, Array | None]:
    """(token table, positional table) summed into the input of the first layer norm.

    The token table is gathered by ids that come straight from outside the graph; the
    positional one is sliced or gathered by computed positions (or folded to a constant).
    """
    idx = g.producer.get(g.source(first_norm.input))
    if idx is None or g.nodes[idx].op_type != "Add":
        raise ConversionError(f"{g.label}: the first layer norm does not read embeddings")
    tokens = positions = None
    for inp in g.nodes[idx].input:
        found = _table_for(g, inp)
        if found is None:
            continue
        table, gather = found
        if gather is not None and g.external(g.source(g.nodes[gather].input[1])):
            tokens = table
        else:
            positions = table
    return tokens, positions


def _read_decoder(g: ExportGraph, t: dict[str, Array]) -> None:
    label = g.label
    found = _analyse(g)
    if not found.blocks:
        raise ConversionError(f"{label}: no layer norms found")
    embed, positions = _embeddings(g, found.blocks[0].norm)
    if embed is None or positions is None or embed.ndim != 2 or positions.ndim != 2:
        raise ConversionError(f"{label}: cannot find the token and position embeddings")
    t["decoder.embed_positions.weight"] = f32(positions)
    t["decoder.embed_tokens.weight"] = f32(embed)

    for i, (own, cross, mlp) in enumerate(_layers(found, ("attn", "attn", "mlp"), label)):
        p = f"decoder.layers.{i}"
        for block, kind in ((own, "self_attn"), (cross, "encoder_attn")):
            att = _attention(block)
            _check_inputs(g, att, p, cross=kind == "encoder_attn")
            _put_norm(t, f"{p}.{kind}_layer_norm", block.norm)
            _put_attention(t, f"{p}.{kind}", att, label)
        _put_norm(t, f"{p}.final_layer_norm", mlp.norm)
        _put_mlp(t, p, _mlp(mlp), label)
    final = found.blocks[-1].norm
    _put_norm(t, "decoder.layer_norm", final)

    # The output projection reads the final norm and must be the token table (Whisper ties
    # them; our decoder stores one table for both uses).
    heads = [lin for lin in found.leftovers if g.source(lin.input) == final.output]
    if len(heads) != 1 or len(found.leftovers) != 1:
        raise ConversionError(
            f"{label}: {len(found.leftovers)} matrix weight(s) fit no Whisper decoder role"
        )
    if heads[0].weight.shape != embed.shape or not np.array_equal(heads[0].weight, f32(embed)):
        raise ConversionError(
            f"{label}: the output projection differs from the token embedding (untied "
            "embeddings are not supported)"
        )


def _decoder_graph(model: onnx.ModelProto, label: str) -> ExportGraph:
    """The decoder graph; for a merged decoder, its If branch that runs without a cache."""
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    if not ifs:
        return ExportGraph(model.graph, label)
    outer = ExportGraph(model.graph, label)
    branches = [
        ExportGraph(helper.get_attribute_value(a), f"{label} ({a.name})", outer)
        for node in ifs
        for a in node.attribute
        if a.name in ("then_branch", "else_branch")
    ]
    # The branch without past keys/values computes the cross-attention projections too, so it
    # has the most weight matrices.
    return max(branches, key=lambda b: sum(b.is_linear(i) for i in range(len(b.nodes))))


def _load_model(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # OSError, protobuf's DecodeError, onnx's own errors...
        raise ConversionError(f"cannot read {path.name}: {exc}") from exc


def load_onnx_export(source_dir: Path) -> WhisperCheckpoint:
    """Recover float32 Whisper weights from an optimum / transformers.js ONNX export."""
    names = [p.relative_to(source_dir).as_posix() for p in source_dir.rglob("*") if p.is_file()]
    choice = choose_files(names)
    config_path = source_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConversionError(f"cannot read {config_path.name}: {exc}") from exc
    if not isinstance(config, dict) or config.get("model_type") != "whisper":
        found = config.get("model_type") if isinstance(config, dict) else None
        raise NotWhisperError(
            f"config.json says model_type={found!r}; only Whisper-architecture "
            "models can be converted"
        )
    t: dict[str, Array] = {}
    _read_encoder(ExportGraph(_load_model(source_dir / choice.encoder).graph, choice.encoder), t)
    _read_decoder(_decoder_graph(_load_model(source_dir / choice.decoder), choice.decoder), t)
    for key, name in (
        ("max_source_positions", "encoder.embed_positions.weight"),
        ("max_target_positions", "decoder.embed_positions.weight"),
    ):
        # A table cut short by constant folding would silently limit the context length.
        if key in config and int(config[key]) != t[name].shape[0]:
            raise ConversionError(
                f"{name} has {t[name].shape[0]} rows but config.json says {key}={config[key]}"
            )
    for side in ("encoder", "decoder"):
        ffn = config.get(f"{side}_ffn_dim")
        w = t.get(f"{side}.layers.0.fc1.weight")
        if ffn is not None and w is not None and w.shape[0] != int(ffn):
            raise ConversionError(f"{side} fc1 has {w.shape[0]} outputs, config says {ffn}")
    return _finish(
        t,
        int(config.get("encoder_attention_heads", 0)),
        int(config.get("decoder_attention_heads", 0)),
    )
