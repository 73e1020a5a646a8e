"""An ONNX export's graph, read for its weights: constants folded, edges indexed, and the
building blocks of a Whisper layer (linears, layer norms) found by their place in the graph.

See :mod:`audiototext.models.onnx_import` for how these are assembled into layers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from audiototext.errors import ConversionError

__all__ = [
    "FUSED_ATTENTION",
    "LOOKUP",
    "Array",
    "Attention",
    "Block",
    "ExportGraph",
    "Linear",
    "Norm",
    "f32",
]

Array = np.ndarray

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
FUSED_ATTENTION = {"Attention", "MultiHeadAttention"}  # inputs: query, key, value
_QUANTISED = {
    "DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
    "QLinearMatMul", "MatMulNBits", "ConvInteger", "GatherBlockQuantized",
    "DynamicQuantizeMatMul",
}  # fmt: skip
# Pointers from a positional / token table to the value added to the residual stream.
LOOKUP = {
    "Gather", "GatherND", "Slice", "Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape",
    "Expand", "Tile",
}  # fmt: skip


@dataclass
class Linear:
    """``MatMul(x, W)`` with a constant ``W``, and the ``Add`` of its bias if there is one."""

    index: int  # position of the MatMul in the graph
    input: str
    output: str  # after the bias, when there is one
    weight: Array  # torch layout [out, in]
    bias: Array | None


@dataclass
class Norm:
    """A layer norm, fused or decomposed."""

    index: int
    input: str
    output: str
    weight: Array
    bias: Array


@dataclass
class Attention:
    """The projections of one attention, by role."""

    parts: dict[str, Linear] = field(default_factory=dict)  # q, k, v, out


@dataclass
class Block:
    """A layer norm and what it feeds: an attention, an MLP, or nothing (the final norm)."""

    norm: Norm
    kind: str  # "attn", "mlp" or "final"
    attention: Attention | None = None
    mlp: tuple[Linear, Linear] | None = None  # fc1, fc2


class ExportGraph:
    """One ONNX graph (or If branch) with its constants folded and its edges indexed."""

    def __init__(self, graph: onnx.GraphProto, label: str, parent: ExportGraph | None = None):
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

    def linears(self) -> list[Linear]:
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
                    out, bias = add.output[0], f32(b)
            found.append(Linear(idx, node.input[0], out, f32(w.T), bias))
        return found

    def norms(self) -> list[Norm]:
        found = []
        for idx, node in enumerate(self.nodes):
            if node.op_type == "LayerNormalization":
                g = self.const(node.input[1])
                b = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
                if g is None:
                    continue
                bias = b if b is not None else np.zeros_like(g)
                found.append(Norm(idx, node.input[0], node.output[0], f32(g), f32(bias)))
            elif node.op_type == "Div" and (norm := self._decomposed_norm(idx)) is not None:
                found.append(norm)
        return found

    def _decomposed_norm(self, idx: int) -> Norm | None:
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
        return Norm(idx, sub.input[0], shifted[0], f32(scaled[1]), f32(shifted[1]))

    def _affine(self, name: str, op: str) -> tuple[str, Array] | None:
        users = self.consumers.get(name, [])
        if len(users) != 1 or self.nodes[users[0][0]].op_type != op:
            return None
        node = self.nodes[users[0][0]]
        value = self.const(node.input[1 - users[0][1]])
        if value is None or value.ndim != 1:
            return None
        return node.output[0], value


def f32(a: Array) -> Array:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))
