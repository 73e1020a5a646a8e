"""Turn fp32 Whisper graphs into the variant a device wants, and pre-optimise them.

* ``fp32``: the converted graphs, ORT-optimised offline. Reference accuracy; any device.
* ``int8``: dynamic quantisation of every MatMul weight (per output channel: measured to keep
  tiny.en's logits closer to fp32 than per-tensor), activations quantised at run time. For CPU.
* ``fp16``: weights and activations in float16 with float32 inputs/outputs, for CUDA-class GPUs.

ORT graph optimisation (fusing LayerNorm, GELU, MatMul+Add, dynamic-quant MatMuls) is run once
here and the result saved, so sessions start faster. Level "extended" is used, not "all": the
"all" level adds layout changes tied to the exact CPU, and cache entries may be copied between
machines.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import onnx

from audiototext.models.versions import PRECISIONS

__all__ = ["PRECISIONS", "optimise_offline", "to_fp16", "to_int8"]

log = logging.getLogger(__name__)


class _QuietRoot(logging.Filter):
    # onnxruntime.quantization advises "pre-processing" for CNNs through the root logger.
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def to_int8(src: Path, dst: Path, per_channel: bool = True) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietRoot()
    logging.getLogger().addFilter(quiet)
    try:
        _quantize(src, dst, per_channel, quantize_dynamic, QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(quiet)
    _half_gather_tables(dst)


def _quantize(src: Path, dst: Path, per_channel: bool, quantize_dynamic: Any, qint8: Any) -> None:
    quantize_dynamic(
        src,
        dst,
        op_types_to_quantize=["MatMul"],
        per_channel=per_channel,
        weight_type=qint8,
        # Shapes after contrib ops (Gelu, MultiHeadAttention) are not inferred by onnx.
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _half_gather_tables(path: Path) -> None:
    """Store float32 tables read only by Gather (the token embedding) as float16.

    After quantisation the output projection reads an int8 copy of the token table, and the
    float32 original survives only for the embedding lookup: 4 bytes per weight for a lookup
    of one row per token. float16 halves that (tiny.en: 80 MB → 40 MB) at no measurable cost.
    """
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    changed = False
    for init in g.initializer:
        users = consumers.get(init.name, [])
        big = (
            init.data_type == TensorProto.FLOAT
            and len(init.dims) == 2
            and init.dims[0] * init.dims[1] >= 1 << 20
        )
        if (
            not big
            or not users
            or any(n.op_type != "Gather" or n.input[0] != init.name for n in users)
        ):
            continue
        init.CopyFrom(
            numpy_helper.from_array(numpy_helper.to_array(init).astype("float16"), init.name)
        )
        for node in users:
            out = node.output[0]
            node.output[0] = out + "_fp16"
            cast = helper.make_node(
                "Cast", [out + "_fp16"], [out], name=node.name + "_to_fp32", to=TensorProto.FLOAT
            )
            g.node.insert(list(g.node).index(node) + 1, cast)
        changed = True
    if changed:
        onnx.save(model, str(path))


def to_fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # LayerNorm and Softmax stay fp32 inside: Whisper's activations overflow fp16 there.
    half = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=["LayerNormalization", "Softmax", "Range"]
    )
    onnx.save(half, str(dst))


def optimise_offline(src: Path, dst: Path, providers: list[str] | None = None) -> None:
    """Run ORT's graph optimiser once and save the result to ``dst``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(str(src), so, providers=providers or ["CPUExecutionProvider"])
    if not dst.is_file():
        raise RuntimeError(f"onnxruntime did not write {dst}")


def quantise_and_optimise(src: Path, dst: Path, precision: str) -> None:
    """``src`` fp32 graph → ``dst`` in ``precision``, ORT-optimised where the CPU runs it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        mid = Path(tmp) / "stage.onnx"
        if precision == "fp32":
            optimise_offline(src, dst)
        elif precision == "int8":
            to_int8(src, mid)
            optimise_offline(mid, dst)
        else:
            # fp16 graphs are optimised by the GPU provider at load time, not here on the CPU.
            to_fp16(src, dst)
