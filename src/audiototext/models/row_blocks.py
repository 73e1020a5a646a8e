"""Give the int8 encoder's activations one quantisation scale per block of frames, not one per
window.

ONNX Runtime's dynamic quantisation (``DynamicQuantizeLinear`` → ``MatMulInteger``) picks one
scale and zero point for a whole activation tensor: for Whisper's encoder, all 1500 frames of a
window. Some frames carry activations far larger than the rest: the last ~30 frames of every
window (where the positional embedding ends), and a few frames where speech stops. In tiny.en's
last layer the input of ``fc2`` spans 557 in those frames and about 13 in the others, so one
scale leaves ordinary frames six quantisation steps. CTranslate2 (faster-whisper) quantises
each row on its own. ORT has no per-row activation scale, and building one from elementwise
ops costs about a third of the encoder's time (estimated), so this module does the cheap
half of it: the frames are cut into a few blocks, and every row-wise stretch of the graph
(LayerNorm, the MatMuls with constant weights, bias and residual Adds, Gelu) runs once per
block, each quantising its own block. The blocks are joined only where the whole sequence is
needed (attention, and the graph's outputs).

Per-block scales bring the int8 encoder's WER to fp32's (bench/NOTES.md, round 6).

The rewrite is for graphs whose row-wise tensors are ``[batch, frames, channels]`` (our
encoder): it splits on axis 1.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

__all__ = ["BLOCKS", "TAIL", "split_rows"]

BLOCKS = 4  # equal blocks of frames...
TAIL = 32  # ...and the last frames on their own, where the large activations are.

# Elementwise nodes (given their other inputs are constants).
_ELEMENTWISE = {
    ("com.microsoft", "Gelu"),
    ("com.microsoft", "FastGelu"),
    ("com.microsoft", "BiasGelu"),
}


def split_rows(model: onnx.ModelProto, blocks: int = BLOCKS, tail: int = TAIL) -> int:
    """Rewrite ``model`` in place so row-wise nodes run once per block of frames.

    Returns how many nodes now run per block (0: nothing to do, the model is unchanged).
    Block sizes are computed in the graph from the number of frames ``T``: the last
    ``min(tail, T // (blocks + 1))`` frames, and the rest in ``blocks`` near-equal parts (the
    last part takes the remainder). Every block is non-empty from ``T = blocks + 1`` frames;
    shorter inputs give empty blocks, which ONNX Runtime runs as no-ops.
    """
    g = model.graph
    consts = {i.name: i for i in g.initializer}
    for n in g.node:
        value = next((a.t for a in n.attribute if a.name == "value"), None)
        if n.op_type == "Constant" and value is not None:
            consts[n.output[0]] = value
    pieces: dict[str, list[str]] = {}  # tensor → its blocks
    whole: set[str] = {i.name for i in g.input} | set(consts)  # tensors held whole
    count = blocks + 1
    new: list[onnx.NodeProto] = []
    sizes: list[str] = []
    prefix = "rowblocks"

    def is_small_const(name: str) -> bool:
        t = consts.get(name)
        return t is not None and len(t.dims) <= 1

    def make_sizes(first: str) -> None:
        def c(name: str, value: int) -> str:
            value_t = np.asarray([value], dtype=np.int64)
            g.initializer.append(numpy_helper.from_array(value_t, f"{prefix}_{name}"))
            return f"{prefix}_{name}"

        p = prefix
        new.extend(
            [
                helper.make_node("Shape", [first], [f"{p}_shape"], start=1, end=2),
                helper.make_node("Div", [f"{p}_shape", c("count", count)], [f"{p}_share"]),
                helper.make_node("Min", [f"{p}_share", c("tail_max", tail)], [f"{p}_tail"]),
                helper.make_node("Sub", [f"{p}_shape", f"{p}_tail"], [f"{p}_rest"]),
                helper.make_node("Div", [f"{p}_rest", c("blocks", blocks)], [f"{p}_base"]),
                helper.make_node("Mul", [f"{p}_base", c("others", blocks - 1)], [f"{p}_taken"]),
                helper.make_node("Sub", [f"{p}_rest", f"{p}_taken"], [f"{p}_last"]),
                helper.make_node(
                    "Concat",
                    [f"{p}_base"] * (blocks - 1) + [f"{p}_last", f"{p}_tail"],
                    [f"{p}_sizes"],
                    axis=0,
                ),
            ]
        )
        sizes.append(f"{p}_sizes")

    def blocks_of(name: str) -> list[str]:
        if name not in pieces:
            if not sizes:
                make_sizes(name)
            outs = [f"{name}__rows{i}" for i in range(count)]
            new.append(
                helper.make_node("Split", [name, sizes[0]], outs, axis=1, name=f"{name}__split")
            )
            pieces[name] = outs
        return pieces[name]

    def whole_of(name: str) -> None:
        if name not in whole:
            join = helper.make_node("Concat", pieces[name], [name], axis=1, name=f"{name}__join")
            new.append(join)
            whole.add(name)

    def row_wise(n: onnx.NodeProto) -> bool:
        data = [x for x in n.input if x and x not in consts]
        if len(n.output) != 1 or not data:
            return False
        if n.op_type == "MatMul" and n.domain == "":
            w = consts.get(n.input[1])
            return w is not None and len(w.dims) == 2 and n.input[0] not in consts
        if (n.domain, n.op_type) == ("", "LayerNormalization"):
            # Normalises the last axis: its input's rows are frames (the encoder's layout).
            axis = next((a.i for a in n.attribute if a.name == "axis"), -1)
            return axis == -1 and data == [n.input[0]]
        if (n.domain, n.op_type) in _ELEMENTWISE:
            # Elementwise: any layout works, but only blocks already cut know which axis holds
            # the frames (the convolutions before the first LayerNorm put channels on axis 1).
            return data == [n.input[0]] and n.input[0] in pieces
        if n.op_type == "Add" and n.domain == "":
            # Both sides already in blocks, or one side in blocks and the other a bias vector.
            return all(x in pieces or is_small_const(x) for x in n.input) and any(
                x in pieces for x in n.input
            )
        return False

    converted = 0
    for n in g.node:
        if row_wise(n):
            split_inputs = [blocks_of(x) if x not in consts and x else None for x in n.input]
            outs = [f"{n.output[0]}__rows{i}" for i in range(count)]
            for i in range(count):
                inputs = [
                    s[i] if s is not None else x for s, x in zip(split_inputs, n.input, strict=True)
                ]
                part = helper.make_node(
                    n.op_type, inputs, [outs[i]], name=f"{n.name}__rows{i}", domain=n.domain
                )
                part.attribute.extend(n.attribute)
                new.append(part)
            pieces[n.output[0]] = outs
            converted += 1
        else:
            for x in n.input:
                if x and x in pieces:
                    whole_of(x)
            new.append(n)
            whole.update(n.output)
    if not converted:
        return 0
    for out in g.output:
        if out.name in pieces:
            whole_of(out.name)
    del g.node[:]
    g.node.extend(new)
    return converted
