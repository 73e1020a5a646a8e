"""The decoder's self-attention q/k/v as one MatMul and a Split (graph version 10): one kernel
per layer and step instead of three, and the same numbers as three separate projections.

That the weights themselves are right is the converter's check against the numpy reference
(test_parity.py, and every pull); here: the joined projection changes no output bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from audiototext.models.graph import build_decoder
from audiototext.models.optimize import quantise_and_optimise
from audiototext.models.weights import load_ctranslate2

pytestmark = pytest.mark.slow  # four graph builds and quantisations of tiny.en's decoder

HEADS = [(2, 2), (3, 0), (3, 2), (3, 3)]


def _unfused(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same decoder with each ``qkv_proj`` taken apart into the three MatMuls (and two
    bias Adds) that version 9 had, by graph surgery."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {i.name: i for i in g.initializer}
    for split in [n for n in g.node if n.op_type == "Split"]:
        add = next(n for n in g.node if split.input[0] in n.output)
        matmul = next(n for n in g.node if add.input[0] in n.output)
        w = numpy_helper.to_array(inits[matmul.input[1]])
        bias = numpy_helper.to_array(inits[add.input[1]])
        sizes = numpy_helper.to_array(inits[split.input[1]])
        at = list(g.node).index(matmul)
        for n in (matmul, add, split):
            g.node.remove(n)
        start, nodes = 0, []
        for j, (size, y) in enumerate(zip(sizes, split.output, strict=True)):
            name = f"{matmul.input[1]}_part{j}"
            g.initializer.append(numpy_helper.from_array(w[:, start : start + size], name))
            part_bias = bias[start : start + size]
            if np.any(part_bias):
                g.initializer.append(numpy_helper.from_array(part_bias, f"{name}_bias"))
                nodes.append(helper.make_node("MatMul", [matmul.input[0], name], [f"{y}_mm"]))
                nodes.append(helper.make_node("Add", [f"{y}_mm", f"{name}_bias"], [y]))
            else:  # k has no bias
                nodes.append(helper.make_node("MatMul", [matmul.input[0], name], [y]))
            start += size
        for j, n in enumerate(nodes):
            g.node.insert(at + j, n)
    return out


def _feed(rows: int, past: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    feed = {
        "input_ids": rng.integers(0, 50000, (rows, 3)).astype(np.int64),
        "position_ids": np.tile(np.arange(past, past + 3), (rows, 1)).astype(np.int64),
        "attention_mask": np.ones((rows, past + 3), np.int64),
        "logits_index": np.full((rows, 1), 2, np.int64),
    }
    for i in range(4):
        for kind in "kv":
            feed[f"past_{kind}_{i}"] = rng.standard_normal((rows, 6, past, 64)).astype(np.float32)
        feed[f"cross_k_{i}"] = rng.standard_normal((1, 6, 1500, 64)).astype(np.float32)
        feed[f"cross_v_{i}"] = rng.standard_normal((1, 6, 64, 1500)).astype(np.float32)
    return feed


def _outputs(path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in sess.run(None, feed)]


def test_qkv_is_one_matmul_with_the_numbers_of_three(tiny_en_source: Path, tmp_path: Path) -> None:
    decoder = build_decoder(load_ctranslate2(tiny_en_source), HEADS)
    layer_norms = {n.output[0] for n in decoder.graph.node if n.op_type == "LayerNormalization"}
    for i in range(4):
        norm_out = next(
            n.output[0]
            for n in decoder.graph.node
            if n.op_type == "LayerNormalization"
            and n.input[1] == f"decoder.layers.{i}.self_attn_layer_norm.weight"
        )
        assert norm_out in layer_norms
        readers = [n for n in decoder.graph.node if norm_out in n.input]
        assert [n.op_type for n in readers] == ["MatMul"], f"layer {i}: {readers}"
    fused, plain = tmp_path / "fused.onnx", tmp_path / "plain.onnx"
    onnx.save(decoder, str(fused))
    onnx.save(_unfused(decoder), str(plain))
    for precision in ("fp32", "int8"):
        built = {}
        for name, src in (("fused", fused), ("plain", plain)):
            built[name] = tmp_path / f"{name}-{precision}.onnx"
            quantise_and_optimise(src, built[name], precision)
        for rows in (1, 5):
            feed = _feed(rows)
            got, want = _outputs(built["fused"], feed), _outputs(built["plain"], feed)
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{precision}, {rows} rows")
