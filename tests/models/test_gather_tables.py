"""int8 post-processing of Gather-only tables: float16, one row per token, in external data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from audiototext.models.optimize import _externalise_gather_tables, _half_gather_tables
from audiototext.models.versions import TABLES_SUFFIX

D, V = 16, 70_000  # >= 1M elements: big enough to be treated as a table


def _column_lookup_graph(path: Path, table_t: np.ndarray) -> None:
    """The converter's pattern: Gather columns of a [d, vocab] table, Transpose d last."""
    nodes = [
        helper.make_node("Gather", ["table_t", "ids"], ["cols"], axis=1, name="Gather_emb"),
        helper.make_node("Transpose", ["cols"], ["emb"], perm=[1, 2, 0]),
        helper.make_node("Relu", ["emb"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "t"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "t", D])],
        [numpy_helper.from_array(table_t, "table_t")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path: Path, ids: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"ids": ids})[0]
    return np.asarray(out)


def test_column_lookup_becomes_a_row_lookup_in_external_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table_t = rng.standard_normal((D, V)).astype(np.float32)
    path = tmp_path / "decoder.onnx"
    _column_lookup_graph(path, table_t)
    ids = np.array([[0, 5, V - 1], [7, 7, 123]], dtype=np.int64)
    before = _run(path, ids)

    _half_gather_tables(path)
    model = onnx.load(str(path))
    (init,) = model.graph.initializer
    assert init.data_type == TensorProto.FLOAT16 and list(init.dims) == [V, D]
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Gather", "Cast", "Relu"]  # the Transpose is gone
    np.testing.assert_array_equal(
        _run(path, ids), np.maximum(table_t.T.astype(np.float16).astype(np.float32)[ids], 0)
    )
    np.testing.assert_allclose(_run(path, ids), before, atol=2e-3)

    _externalise_gather_tables(path)
    data = tmp_path / "decoder.onnx.data"
    assert data.stat().st_size == V * D * 2
    assert path.stat().st_size < 10_000
    spec = json.loads((tmp_path / ("decoder.onnx" + TABLES_SUFFIX)).read_text())
    assert spec["row_tables"] == [
        {
            "name": "table_t",
            "dtype": "float16",
            "shape": [V, D],
            "file": "decoder.onnx.data",
            "offset": 0,
            "indices": ["ids"],
        }
    ]
    np.testing.assert_array_equal(
        _run(path, ids), np.maximum(table_t.T.astype(np.float16).astype(np.float32)[ids], 0)
    )


def test_other_uses_of_a_table_keep_its_layout(tmp_path: Path) -> None:
    """A column lookup not followed by the Transpose keeps the transposed table."""
    rng = np.random.default_rng(1)
    table_t = rng.standard_normal((D, V)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table_t", "ids"], ["out"], axis=1)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [D, "n"])],
        [numpy_helper.from_array(table_t, "table_t")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    _half_gather_tables(path)
    (init,) = onnx.load(str(path)).graph.initializer
    assert list(init.dims) == [D, V]
    ids = np.array([3, 9], dtype=np.int64)
    np.testing.assert_array_equal(
        _run(path, ids), table_t.astype(np.float16).astype(np.float32)[:, ids]
    )
    _externalise_gather_tables(path)  # external, but not a row table: no description
    assert (tmp_path / "g.onnx.data").is_file()
    assert not (tmp_path / ("g.onnx" + TABLES_SUFFIX)).exists()
