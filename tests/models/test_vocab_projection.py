"""int8 decoders project onto the vocabulary in 4 bits (MatMulNBits), the table kept for Gather."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from audiototext.models.optimize import PROJECTION_BITS, PROJECTION_BLOCK, to_int8

D, V = 64, 20_000  # a [d_model, vocab] table of >= 1M elements, as the converter stores it


def _decoder_like(path: Path, table_t: np.ndarray, w: np.ndarray) -> None:
    """The converter's pattern: the token table looked up by columns (embedding) and read
    whole by the MatMul that makes ``logits``; one ordinary weight MatMul in between."""
    nodes = [
        helper.make_node("Gather", ["table_t", "ids"], ["cols"], axis=1, name="Gather_emb"),
        helper.make_node("Transpose", ["cols"], ["emb"], perm=[1, 2, 0]),
        helper.make_node("MatMul", ["emb", "w"], ["h"], name="MatMul_hidden"),
        helper.make_node("MatMul", ["h", "table_t"], ["logits"], name="MatMul_logits"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "t", V])],
        [numpy_helper.from_array(table_t, "table_t"), numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _logits(path: Path, ids: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"ids": ids})[0])


def test_projection_becomes_4_bit_and_the_table_stays_for_the_lookup(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table_t = rng.standard_normal((D, V)).astype(np.float32)
    w = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
    src, dst = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    _decoder_like(src, table_t, w)
    ids = np.array([[0, 5, V - 1], [7, 7, 123]], dtype=np.int64)
    reference = _logits(src, ids)

    to_int8(src, dst)

    model = onnx.load(str(dst))
    by_output = {o: n for n in model.graph.node for o in n.output}
    projection = by_output["logits"]
    assert projection.op_type == "MatMulNBits" and projection.domain == "com.microsoft"
    attrs = {a.name: a.i for a in projection.attribute}
    assert attrs["bits"] == PROJECTION_BITS and attrs["block_size"] == PROJECTION_BLOCK
    assert attrs["K"] == D and attrs["N"] == V
    # The other weight MatMul is int8 as before; the table is now read only by the lookup,
    # so it is stored in float16, one row per token.
    assert any(n.op_type == "MatMulInteger" for n in model.graph.node)
    table = next(i for i in model.graph.initializer if i.name == "table_t")
    assert table.data_type == TensorProto.FLOAT16 and list(table.dims) == [V, D]
    readers = [n for n in model.graph.node if "table_t" in n.input]
    assert [n.op_type for n in readers] == ["Gather"]

    got = _logits(dst, ids)
    assert got.shape == reference.shape
    cos = (got * reference).sum(-1) / (
        np.linalg.norm(got, axis=-1) * np.linalg.norm(reference, axis=-1)
    )
    assert cos.min() > 0.99, cos
    # Not the fp32 projection in disguise: 4-bit rounding leaves a visible error.
    assert np.abs(got - reference).max() > 1e-3


def test_graphs_without_a_vocabulary_projection_are_only_int8(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", D])
    w = numpy_helper.from_array(rng.standard_normal((D, D)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src, dst = tmp_path / "enc.onnx", tmp_path / "enc8.onnx"
    onnx.save(model, str(src))
    to_int8(src, dst)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert "MatMulNBits" not in ops and "MatMulInteger" in ops
