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
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
import onnx
from onnx import helper, numpy_helper

from audiototext.errors import ConversionError, NotWhisperError
from audiototext.models.weights import WhisperCheckpoint, _finish

__all__ = ["load_onnx_export", "pick_onnx_files"]

Array = np.ndarray

# ---------------------------------------------------------------------------- file choice

_FOLDERS = ("onnx/", "")
# fp32 first: those are the exported weights themselves; fp16 copies lost precision.
_PRECISIONS = ("", "_fp16")
# The decoder without a cache is smaller than the merged one and holds the same weights.
_DECODERS = ("decoder_model", "decoder_model_merged")
_OPTIONAL = ("generation_config.json", "preprocessor_config.json")
_ONNX_NAME = re.compile(
    r"(?:^|/)(encoder_model|decoder_model|decoder_model_merged|"
    r"decoder_with_past_model)(_[a-z0-9]+)?\.onnx$"
)


@dataclass(frozen=True)
class _Choice:
    encoder: str
    decoder: str
    files: tuple[str, ...]  # everything to download, including external data and configs


def _external_data(onnx_file: str, names: Iterable[str]) -> list[str]:
    # optimum and transformers.js write one side file named after the graph (``x.onnx_data``,
    # large ones split as ``x.onnx_data_1``...); onnx's own default is ``x.onnx.data``.
    prefixes = (onnx_file + "_data", onnx_file + ".data")
    return sorted(n for n in names if n.startswith(prefixes))


def _find_pair(top: set[str]) -> tuple[str, str] | None:
    for precision in _PRECISIONS:
        for folder in _FOLDERS:
            encoder = f"{folder}encoder_model{precision}.onnx"
            if encoder not in top:
                continue
            for decoder in (f"{folder}{d}{precision}.onnx" for d in _DECODERS):
                if decoder in top:
                    return encoder, decoder
    return None


def _choose(names: Sequence[str]) -> _Choice:
    top = {n.replace("\\", "/") for n in names}
    pair = _find_pair(top)
    if pair is None:
        _explain_missing(top)
    encoder, decoder = pair
    for required in ("config.json", "tokenizer.json"):
        if required not in top:
            raise ConversionError(f"the ONNX export has no {required}")
    files = [
        "config.json",
        "tokenizer.json",
        encoder,
        *_external_data(encoder, top),
        decoder,
        *_external_data(decoder, top),
        *(n for n in _OPTIONAL if n in top),
    ]
    return _Choice(encoder, decoder, tuple(files))


def _explain_missing(top: set[str]) -> NoReturn:
    variants = sorted({(m.group(1), m.group(2) or "") for n in top if (m := _ONNX_NAME.search(n))})
    found = {graph for graph, _ in variants}
    if "encoder_model" not in found:
        raise NotWhisperError("no encoder_model.onnx: not an ONNX Whisper export")
    if not any(name in found for name in _DECODERS):
        if "decoder_with_past_model" in found:
            raise ConversionError(
                "the ONNX export has only decoder_with_past_model.onnx, which lacks the "
                "cross-attention key/value weights; decoder_model.onnx or "
                "decoder_model_merged.onnx is needed"
            )
        raise NotWhisperError("no decoder_model.onnx: not an ONNX Whisper export")
    listed = ", ".join(f"{name}{suffix}.onnx" for name, suffix in variants)
    raise ConversionError(
        "the ONNX export has only quantised graphs "
        f"({listed}); float weights (fp32 or fp16 files) are needed to rebuild the model"
    )


def pick_onnx_files(names: Sequence[str]) -> list[str]:
    """Repository files needed to import an optimum / transformers.js ONNX Whisper export.

    ``names`` are repo-relative paths. Raises :class:`NotWhisperError` when there is no ONNX
    Whisper encoder and decoder, and :class:`ConversionError` when only quantised graphs, only a
    ``decoder_with_past_model.onnx``, or no ``config.json``/``tokenizer.json`` are present.
    """
    return list(_choose(names).files)


# ---------------------------------------------------------------------------- graph reading

# Ops through which a constant is still a constant: folded here as the runtime would.
_FOLDABLE = {"Transpose", "Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Constant"}
# Ops that only reshape, scale, mask or activate a tensor on its way from one matrix product
# to the next; searches for "the next MatMul" walk through them.
_PASS = {
    "Reshape", "Transpose", "Cast", "Identity", "Unsqueeze", "Squeeze", "Concat", "Slice",
    "Expand", "Mul", "Div", "Add", "Sub", "Where", "Erf", "Gelu", "Tanh", "Pow", "Sigmoid",
    "Relu", "Dropout",
}  # fmt: skip
# Read only the shape of a tensor, or derive a mask from it (torch's SDPA guards its softmax
# with Where(IsNaN(p), 0, p)); the values never travel on from there.
_IGNORED = {"Shape", "Size", "IsNaN", "IsInf"}
# Pass-through ops whose further inputs are shapes, indices or axes rather than data.
_SHAPED = {
    "Reshape", "Transpose", "Cast", "Identity", "Unsqueeze", "Squeeze", "Slice", "Expand",
    "Erf", "Gelu", "Tanh", "Sigmoid", "Relu", "Dropout",
}  # fmt: skip
_FUSED_ATTENTION = {"Attention", "MultiHeadAttention"}  # inputs: query, key, value
_QUANTISED = {
    "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "QLinearMatMul", "MatMulNBits", "ConvInteger", "GatherBlockQuantized",
    "DynamicQuantizeMatMul",
}  # fmt: skip
# Pointers from a positional / token table to the value added to the residual stream.
_LOOKUP = {
    "Gather", "GatherND", "Slice", "Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape",
    "Expand", "Tile",
}  # fmt: skip


@dataclass
class _Linear:
    index: int  # position of the MatMul in the graph
    input: str
    output: str  # after the bias, when there is one
    weight: Array  # torch layout [out, in]
    bias: Array | None


@dataclass
class _Norm:
    index: int
    input: str
    output: str
    weight: Array
    bias: Array


@dataclass
class _Attention:
    parts: dict[str, _Linear] = field(default_factory=dict)  # q, k, v, out


@dataclass
class _Block:
    """A layer norm and what it feeds: an attention, an MLP, or nothing (the final norm)."""

    norm: _Norm
    kind: str  # "attn", "mlp" or "final"
    attention: _Attention | None = None
    mlp: tuple[_Linear, _Linear] | None = None  # fc1, fc2


class _Graph:
    """One ONNX graph (or If branch) with its constants folded and its edges indexed."""

    def __init__(self, graph: onnx.GraphProto, label: str, parent: _Graph | None = None):
        self.label = label
        # An If branch reads the initializers of the graph around it (optimum's merged decoder
        # keeps all of them there, deduplicated); they are looked up there on demand.
        self.parent = parent
        self.nodes = list(graph.node)
        bad = sorted({n.op_type for n in self.nodes} & _QUANTISED)
        if bad:
            raise ConversionError(
                f"{label} is quantised ({', '.join(bad)}); float weights are needed"
            )
        self.consts: dict[str, Array] = {}
        self._raw = {t.name: t for t in graph.initializer}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[tuple[int, int]]] = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                self.producer[out] = i
            for slot, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((i, slot))
        self._variable: set[str] = set()  # names known not to be constant

    # ---- constants

    def const(self, name: str) -> Array | None:
        """The value of ``name`` if it does not depend on any graph input, else None."""
        if name in self.consts:
            return self.consts[name]
        if name in self._variable:
            return None
        value: Array | None = None
        if name in self._raw:
            value = numpy_helper.to_array(self._raw[name])
        elif name in self.producer:
            self._variable.add(name)  # also guards against cycles while folding
            value = self._fold(self.nodes[self.producer[name]])
        elif self.parent is not None:
            value = self.parent.const(name)
        if value is None:
            self._variable.add(name)
            return None
        self._variable.discard(name)
        self.consts[name] = value
        return value

    def _fold(self, node: onnx.NodeProto) -> Array | None:
        if node.op_type not in _FOLDABLE or len(node.output) != 1:
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Constant":
            if "value" in attrs:
                return numpy_helper.to_array(attrs["value"])
            for key in ("value_float", "value_floats", "value_int", "value_ints"):
                if key in attrs:
                    return np.asarray(attrs[key])
            return None
        args = [self.const(n) if n else None for n in node.input]
        if args[0] is None:
            return None
        x = args[0]
        op = node.op_type
        if op == "Identity":
            return x
        if op == "Transpose":
            perm = attrs.get("perm")
            return np.transpose(x, perm if perm is not None else None)
        if op == "Cast":
            return x.astype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
        axes_arg = args[1] if len(args) > 1 else None
        if op in ("Squeeze", "Unsqueeze"):
            axes = axes_arg if axes_arg is not None else attrs.get("axes")
            if op == "Squeeze":
                return np.squeeze(x, tuple(int(a) for a in axes) if axes is not None else None)
            if axes is None:
                return None
            out = x
            for a in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
                out = np.expand_dims(out, a)
            return out
        if op == "Reshape" and axes_arg is not None:
            shape = [int(s) if s != 0 else x.shape[i] for i, s in enumerate(axes_arg)]
            return x.reshape(shape)
        return None

    def external(self, name: str) -> bool:
        """A value fed from outside this graph: a graph input or an outer-scope activation."""
        return name not in self.producer and self.const(name) is None

    # ---- navigation

    def source(self, name: str) -> str:
        """Walk back through casts and identities, which exporters add around fp16 parts."""
        while name in self.producer:
            node = self.nodes[self.producer[name]]
            if node.op_type not in ("Cast", "Identity"):
                break
            name = node.input[0]
        return name

    def forward_hits(self, name: str) -> list[tuple[int, int]]:
        """(node, input slot) of the first non-pass-through nodes reading ``name``."""
        hits: dict[int, int] = {}
        seen = {name}
        todo = deque([name])
        while todo:
            for idx, slot in self.consumers.get(todo.popleft(), []):
                node = self.nodes[idx]
                if node.op_type in _IGNORED:
                    continue
                if node.op_type in _PASS and not self.is_linear(idx):
                    for out in node.output:
                        if out not in seen:
                            seen.add(out)
                            todo.append(out)
                else:
                    hits.setdefault(idx, slot)
        return sorted(hits.items())

    def back_to(self, name: str, ops: set[str]) -> int | None:
        """The nearest node of a type in ``ops`` that ``name`` is computed from, walking back
        through pass-through nodes along their data inputs (never shapes or masks)."""
        seen = {name}
        todo = deque([name])
        hits: list[int] = []
        while todo:
            idx = self.producer.get(todo.popleft())
            if idx is None:
                continue
            node = self.nodes[idx]
            if node.op_type in ops:
                hits.append(idx)
                continue
            if node.op_type not in _PASS or self.is_linear(idx):
                continue
            if node.op_type in _SHAPED:
                inputs = node.input[:1]
            elif node.op_type == "Where":
                inputs = node.input[1:]
            else:
                inputs = node.input
            for inp in inputs:
                if inp and inp not in seen and self.const(inp) is None:
                    seen.add(inp)
                    todo.append(inp)
        return max(hits) if len(set(hits)) == 1 else None

    def is_linear(self, idx: int) -> bool:
        node = self.nodes[idx]
        return node.op_type == "MatMul" and self._matmul_weight(node) is not None

    def _matmul_weight(self, node: onnx.NodeProto) -> Array | None:
        if self.const(node.input[0]) is not None:
            return None
        w = self.const(node.input[1])
        return w if w is not None and w.ndim == 2 else None

    # ---- building blocks

    def linears(self) -> list[_Linear]:
        found = []
        for idx, node in enumerate(self.nodes):
            if node.op_type != "MatMul":
                continue
            w = self._matmul_weight(node)
            if w is None:
                continue
            out, bias = node.output[0], None
            users = self.consumers.get(out, [])
            if len(users) == 1 and self.nodes[users[0][0]].op_type == "Add":
                add = self.nodes[users[0][0]]
                other = add.input[1 - users[0][1]]
                b = self.const(other)
                if b is not None and b.shape == (w.shape[1],):
                    out, bias = add.output[0], _f32(b)
            found.append(_Linear(idx, node.input[0], out, _f32(w.T), bias))
        return found

    def norms(self) -> list[_Norm]:
        found = []
        for idx, node in enumerate(self.nodes):
            if node.op_type == "LayerNormalization":
                g = self.const(node.input[1])
                b = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                if g is None:
                    continue
                bias = b if b is not None else np.zeros_like(g)
                found.append(_Norm(idx, node.input[0], node.output[0], _f32(g), _f32(bias)))
            elif node.op_type == "Div" and (norm := self._decomposed_norm(idx)) is not None:
                found.append(norm)
        return found

    def _decomposed_norm(self, idx: int) -> _Norm | None:
        # torch's opset < 17 LayerNorm: d = x - ReduceMean(x); d / Sqrt(ReduceMean(d^2) + eps),
        # then Mul by the weight and Add the bias.
        div = self.nodes[idx]
        sub_i = self.producer.get(div.input[0])
        sqrt_i = self.producer.get(div.input[1])
        if sub_i is None or sqrt_i is None or self.nodes[sqrt_i].op_type != "Sqrt":
            return None
        sub = self.nodes[sub_i]
        mean_i = self.producer.get(sub.input[1])
        if sub.op_type != "Sub" or mean_i is None or self.nodes[mean_i].op_type != "ReduceMean":
            return None
        scaled = self._affine(div.output[0], "Mul")
        if scaled is None:
            return None
        shifted = self._affine(scaled[0], "Add")
        if shifted is None:
            return None
        return _Norm(idx, sub.input[0], shifted[0], _f32(scaled[1]), _f32(shifted[1]))

    def _affine(self, name: str, op: str) -> tuple[str, Array] | None:
        users = self.consumers.get(name, [])
        if len(users) != 1 or self.nodes[users[0][0]].op_type != op:
            return None
        node = self.nodes[users[0][0]]
        value = self.const(node.input[1 - users[0][1]])
        if value is None or value.ndim != 1:
            return None
        return node.output[0], value


def _f32(a: Array) -> Array:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


# ---------------------------------------------------------------------------- structure


@dataclass
class _Blocks:
    """What one graph holds, in the order of computation."""

    blocks: list[_Block]
    leftovers: list[_Linear]  # linears in no block (the decoder's output projection)


def _analyse(g: _Graph) -> _Blocks:
    linears = g.linears()
    norms = g.norms()
    by_output = {n.output: n for n in norms}
    attentions: dict[int, _Attention] = {}
    assigned: set[int] = set()

    def core_of(lin: _Linear) -> tuple[str, int] | None:
        hits = g.forward_hits(lin.output)
        if len(hits) != 1:
            return None
        idx, slot = hits[0]
        node = g.nodes[idx]
        if node.op_type in _FUSED_ATTENTION and slot < 3:
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
        parts = attentions.setdefault(core, _Attention()).parts
        if role in parts:
            raise ConversionError(f"{g.label}: attention at node {core} has two {role} inputs")
        parts[role] = lin
        assigned.add(lin.index)

    for lin in linears:
        if lin.index in assigned:
            continue
        back = g.back_to(lin.input, {"MatMul", *_FUSED_ATTENTION})
        if back is not None and back in attentions:
            if "out" in attentions[back].parts:
                raise ConversionError(f"{g.label}: attention at node {back} has two outputs")
            attentions[back].parts["out"] = lin
            assigned.add(lin.index)

    q_norm: dict[str, int] = {}
    for core, att in attentions.items():
        if "q" in att.parts:
            q_norm[g.source(att.parts["q"].input)] = core
    fc1_by_input: dict[str, _Linear] = {}
    for lin in linears:
        if lin.index not in assigned and g.source(lin.input) in by_output:
            fc1_by_input[g.source(lin.input)] = lin
    blocks: list[_Block] = []
    by_index = {lin.index: lin for lin in linears}
    for norm in norms:
        if norm.output in q_norm:
            blocks.append(_Block(norm, "attn", attention=attentions[q_norm[norm.output]]))
        elif (
            norm.output in fc1_by_input
            and (fc1 := fc1_by_input[norm.output])
            and (nxt := g.forward_hits(fc1.output))
            and len(nxt) == 1
            and nxt[0][0] in by_index
            and nxt[0][0] not in assigned
        ):
            fc2 = by_index[nxt[0][0]]
            blocks.append(_Block(norm, "mlp", mlp=(fc1, fc2)))
            assigned.update((fc1.index, fc2.index))
        else:
            blocks.append(_Block(norm, "final"))
    return _Blocks(blocks, [lin for lin in linears if lin.index not in assigned])


def _put_norm(t: dict[str, Array], name: str, norm: _Norm) -> None:
    t[f"{name}.weight"] = norm.weight
    t[f"{name}.bias"] = norm.bias


def _put_attention(t: dict[str, Array], name: str, att: _Attention, label: str) -> None:
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


def _put_mlp(t: dict[str, Array], name: str, fcs: tuple[_Linear, _Linear], label: str) -> None:
    for fc, lin in zip(("fc1", "fc2"), fcs, strict=True):
        if lin.bias is None:
            raise ConversionError(f"{label}: {name}.{fc} has no bias")
        t[f"{name}.{fc}.weight"] = lin.weight
        t[f"{name}.{fc}.bias"] = lin.bias


def _layers(found: _Blocks, pattern: Sequence[str], label: str) -> list[list[_Block]]:
    """Split the blocks into layers of ``pattern``, after which only the final norm remains."""
    kinds = [b.kind for b in found.blocks]
    n = (len(kinds) - 1) // len(pattern)
    if n < 1 or kinds != [*pattern] * n + ["final"]:
        raise ConversionError(
            f"{label}: unexpected layer structure {kinds}; a Whisper graph repeats "
            f"{' / '.join(pattern)} blocks and ends with a layer norm"
        )
    return [found.blocks[i * len(pattern) : (i + 1) * len(pattern)] for i in range(n)]


def _attention(block: _Block) -> _Attention:
    assert block.attention is not None  # guaranteed by _layers' kind check
    return block.attention


def _mlp(block: _Block) -> tuple[_Linear, _Linear]:
    assert block.mlp is not None  # guaranteed by _layers' kind check
    return block.mlp


def _table_for(g: _Graph, value: str) -> tuple[Array, int | None] | None:
    """The constant table behind an embedding lookup, and the Gather node reading it."""
    gather = None
    for _ in range(16):
        c = g.const(value)
        if c is not None:
            while c.ndim > 2 and c.shape[0] == 1:
                c = c[0]
            return c, gather
        idx = g.producer.get(value)
        if idx is None or g.nodes[idx].op_type not in _LOOKUP:
            return None
        node = g.nodes[idx]
        if node.op_type == "Gather" and gather is None:
            gather = idx
        value = node.input[0]
    return None


def _read_encoder(g: _Graph, t: dict[str, Array]) -> None:
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
        t[f"encoder.{name}.weight"], t[f"encoder.{name}.bias"] = _f32(w), _f32(b)
    found = _analyse(g)
    if not found.blocks:
        raise ConversionError(f"{label}: no layer norms found")
    tokens, positions = _embeddings(g, found.blocks[0].norm)
    if positions is None or positions.ndim != 2 or tokens is not None:
        raise ConversionError(f"{label}: cannot find the positional embedding table")
    t["encoder.embed_positions.weight"] = _f32(positions)
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


def _check_inputs(g: _Graph, att: _Attention, name: str, *, cross: bool) -> None:
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


def _embeddings(g: _Graph, first_norm: _Norm) -> tuple[Array | None, Array | None]:
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


def _read_decoder(g: _Graph, t: dict[str, Array]) -> None:
    label = g.label
    found = _analyse(g)
    if not found.blocks:
        raise ConversionError(f"{label}: no layer norms found")
    embed, positions = _embeddings(g, found.blocks[0].norm)
    if embed is None or positions is None or embed.ndim != 2 or positions.ndim != 2:
        raise ConversionError(f"{label}: cannot find the token and position embeddings")
    t["decoder.embed_positions.weight"] = _f32(positions)
    t["decoder.embed_tokens.weight"] = _f32(embed)

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
    if heads[0].weight.shape != embed.shape or not np.array_equal(heads[0].weight, _f32(embed)):
        raise ConversionError(
            f"{label}: the output projection differs from the token embedding (untied "
            "embeddings are not supported)"
        )


def _decoder_graph(model: onnx.ModelProto, label: str) -> _Graph:
    """The decoder graph; for a merged decoder, its If branch that runs without a cache."""
    ifs = [n for n in model.graph.node if n.op_type == "If"]
    if not ifs:
        return _Graph(model.graph, label)
    outer = _Graph(model.graph, label)
    branches = [
        _Graph(helper.get_attribute_value(a), f"{label} ({a.name})", outer)
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
    choice = _choose(names)
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
    _read_encoder(_Graph(_load_model(source_dir / choice.encoder).graph, choice.encoder), t)
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
