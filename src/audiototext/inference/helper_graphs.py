"""The small ONNX graphs that beam search runs beside the model: ``TopK`` and cache reordering.

They are shipped as ``.onnx`` files in ``audiototext/inference/assets/`` so that decoding never
imports the ``onnx`` package (~13 MB of RSS) to build them; this module loads those files with
ONNX Runtime alone. The graphs have symbolic shapes, so one file serves every model size.

The builders (:func:`build_top_k`, :func:`build_reorder`) need ``onnx`` and are only used to
write the files and, in the tests, to check that the shipped bytes are still what they build::

    python -m audiototext.inference.helper_graphs   # rewrites the assets
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ASSETS",
    "REORDER_SIZES",
    "asset_graphs",
    "build_reorder",
    "build_top_k",
    "reorder_session",
    "top_k_session",
]

ASSETS = Path(__file__).parent / "assets"
TOP_K_FILE = "top_k.onnx"
# Cache tensors per decoder call (2 x decoder layers) of the Whisper sizes: tiny, base, small,
# medium, large. Other counts reorder one tensor per call with the 1-tensor graph.
REORDER_SIZES: tuple[int, ...] = (1, 8, 12, 24, 48, 64)
_OPSET = 17
_IR_VERSION = 8


def reorder_file(tensors: int) -> str:
    return f"reorder_cache_{tensors}.onnx"


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # memory copies and one TopK row each: one thread is enough
    options.log_severity_level = 3
    # No arena: it would keep the largest reordered cache it ever allocated (beam 5 late in a
    # window: tens of MB) for the rest of the process.
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return options


@functools.cache
def top_k_session() -> ort.InferenceSession:
    """``TopK`` over the last axis: inputs ``x`` [rows, vocab] float, ``k`` [1] int64."""
    return ort.InferenceSession(
        str(ASSETS / TOP_K_FILE), _options(), providers=["CPUExecutionProvider"]
    )


@functools.cache
def reorder_session(tensors: int) -> ort.InferenceSession:
    """``tensors`` Gathers on axis 0: inputs ``c{i}`` [batch, heads, length, head_dim] float and
    ``rows`` [picked] int64, outputs ``o{i}`` [picked, heads, length, head_dim]."""
    if tensors not in REORDER_SIZES:
        raise ValueError(f"no reorder graph for {tensors} tensors (have {REORDER_SIZES})")
    return ort.InferenceSession(
        str(ASSETS / reorder_file(tensors)), _options(), providers=["CPUExecutionProvider"]
    )


def build_top_k() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=-1)],
        "top_k",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", "vocab"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["rows", "k"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["rows", "k"]),
        ],
    )
    return _model(graph)


def build_reorder(tensors: int) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    shape: list[str | int] = ["batch", "heads", "length", "head_dim"]
    out_shape: list[str | int] = ["picked", "heads", "length", "head_dim"]
    nodes = [
        helper.make_node("Gather", [f"c{i}", "rows"], [f"o{i}"], axis=0) for i in range(tensors)
    ]
    inputs = [
        helper.make_tensor_value_info(f"c{i}", TensorProto.FLOAT, shape) for i in range(tensors)
    ]
    inputs.append(helper.make_tensor_value_info("rows", TensorProto.INT64, ["picked"]))
    outputs = [
        helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, out_shape) for i in range(tensors)
    ]
    return _model(helper.make_graph(nodes, "reorder_cache", inputs, outputs))


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    from onnx import checker, helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="audiototext"
    )
    model.ir_version = _IR_VERSION
    checker.check_model(model)
    return model


def asset_graphs() -> dict[str, bytes]:
    """File name → serialized graph, as the assets folder should hold them."""
    graphs = {TOP_K_FILE: build_top_k().SerializeToString(deterministic=True)}
    for n in REORDER_SIZES:
        graphs[reorder_file(n)] = build_reorder(n).SerializeToString(deterministic=True)
    return graphs


def main() -> None:
    ASSETS.mkdir(exist_ok=True)
    for name, data in asset_graphs().items():
        (ASSETS / name).write_bytes(data)
        print(f"{ASSETS / name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
