"""Turn fp32 Whisper graphs into the variant a device wants, and pre-optimise them.

* ``fp32``: the converted graphs, ORT-optimised offline. Reference accuracy; any device.
* ``int8``: dynamic quantisation of every MatMul weight (per output channel: measured to keep
  tiny.en's logits closer to fp32 than per-tensor), activations quantised at run time, in the
  encoder with one scale per block of frames (:mod:`audiototext.models.row_blocks`). For CPU.
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

from audiototext.models.versions import PRECISIONS, TABLES_SUFFIX

__all__ = ["PRECISIONS", "TABLES_SUFFIX", "optimise_offline", "to_fp16", "to_int8"]

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
    """Store float32 tables read only by Gather (the token embedding) as float16, one row per
    token.

    After quantisation the output projection reads an int8 copy of the token table, and the
    float32 original survives only for the embedding lookup: 4 bytes per weight for a lookup
    of one row per token. float16 halves that (tiny.en: 80 MB → 40 MB) at no measurable cost.

    The converter stores that table transposed, ``[d_model, vocab]`` (the fp32 graph's
    projection reads it), and looks tokens up as columns: one token then touches a page in each
    of the ``d_model`` rows, so decoding a few hundred distinct tokens pulls the whole table into
    memory. Here a column lookup followed by the Transpose that puts ``d_model`` last becomes a
    row lookup in a ``[vocab, d_model]`` table: one token reads 2 × d_model contiguous bytes.
    With the table in external data (:func:`_externalise_gather_tables`), the engine fills only
    the rows of tokens actually decoded (``RowTable``); ONNX Runtime mapping the file itself
    would not be enough, as the kernel's fault-around reads 64 KB around every row.
    """
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    consumers = _readers(g)
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
        table = numpy_helper.to_array(init).astype("float16")
        columns = [n for n in users if _gather_axis(n) == 1]
        # Column lookups whose result goes only to a Transpose moving the table's axis 0 last.
        movable = [n for n in columns if _transpose_to_last(n, consumers) is not None]
        by_rows = bool(columns) and len(movable) == len(users)
        if by_rows:
            table = table.T.copy()
        init.CopyFrom(numpy_helper.from_array(table, init.name))
        for node in users:
            transpose = _transpose_to_last(node, consumers) if by_rows else None
            out = node.output[0]
            node.output[0] = out + "_fp16"
            cast_out = out
            if transpose is not None:
                for attr in node.attribute:
                    if attr.name == "axis":
                        attr.i = 0
                cast_out = transpose.output[0]
                g.node.remove(transpose)
            cast = helper.make_node(
                "Cast",
                [out + "_fp16"],
                [cast_out],
                name=node.name + "_to_fp32",
                to=TensorProto.FLOAT,
            )
            g.node.insert(list(g.node).index(node) + 1, cast)
        changed = True
    if changed:
        onnx.save(model, str(path))


def _gather_axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes that read each value of ``graph``, by value name."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def _transpose_to_last(
    gather: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]
) -> onnx.NodeProto | None:
    """The Transpose that alone reads ``gather``'s output and moves its axis 0 last (so that
    ``Gather(table_t, ids, axis=1)`` then it equals ``Gather(table, ids, axis=0)``), if any."""
    users = consumers.get(gather.output[0], [])
    if len(users) != 1 or users[0].op_type != "Transpose":
        return None
    perm = next((list(a.ints) for a in users[0].attribute if a.name == "perm"), None)
    if perm is None or perm != [*range(1, len(perm)), 0]:
        return None
    return users[0]


def _externalise_gather_tables(path: Path, min_bytes: int = 1 << 20) -> None:
    """Move the float16 tables read only by Gather into ``<file>.data`` beside ``path``, and
    describe them in ``<file>.tables.json`` (:data:`TABLES_SUFFIX`).

    Quantised weights stay inside the graph (ONNX Runtime repacks them at load time anyway).
    At run time the engine gives ONNX Runtime its own copy of such a table, filled row by row
    from the file as tokens are looked up (``audiototext.inference.ort_session.RowTable``):
    tiny.en's 40-MB token table then costs the few MB of rows a transcription uses. Without
    that (a GPU session, or a reader that ignores the description) ONNX Runtime maps the file,
    which is still correct.
    """
    import json

    from onnx import TensorProto, external_data_helper

    model = onnx.load(str(path))
    g = model.graph
    readers = _readers(g)
    graph_inputs = {i.name for i in g.input}
    data_name = path.name + ".data"
    offset = 0
    chunks: list[bytes] = []
    tables: list[dict[str, Any]] = []
    for init in g.initializer:
        users = readers.get(init.name, [])
        if (
            init.data_type != TensorProto.FLOAT16
            or len(init.dims) != 2
            or len(init.raw_data) < min_bytes
            or not users
            or any(n.op_type != "Gather" or n.input[0] != init.name for n in users)
        ):
            continue
        raw = init.raw_data
        pad = -offset % 4096  # page-aligned, so that it can be mapped directly
        chunks.append(b"\0" * pad)
        offset += pad
        external_data_helper.set_external_data(init, data_name, offset=offset, length=len(raw))
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        # Row lookups of graph inputs can be served from a table filled on demand.
        indices = {n.input[1] for n in users}
        if all(_gather_axis(n) == 0 for n in users) and indices <= graph_inputs:
            tables.append(
                {
                    "name": init.name,
                    "dtype": "float16",
                    "shape": list(init.dims),
                    "file": data_name,
                    "offset": offset,
                    "indices": sorted(indices),
                }
            )
        chunks.append(raw)
        offset += len(raw)
    if not chunks:
        return
    (path.parent / data_name).write_bytes(b"".join(chunks))
    onnx.save(model, str(path))
    if tables:
        (path.parent / (path.name + TABLES_SUFFIX)).write_text(
            json.dumps({"row_tables": tables}, indent=2), encoding="utf-8"
        )


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


def _with_row_blocks(src: Path, dst: Path) -> Path:
    """The encoder rewritten so each block of frames gets its own activation scale
    (:mod:`audiototext.models.row_blocks`); other graphs unchanged (``src`` itself)."""
    from audiototext.models.row_blocks import split_rows

    model = onnx.load(str(src))
    if "input_features" not in {i.name for i in model.graph.input} or not split_rows(model):
        return src
    onnx.save(model, str(dst))
    return dst


def quantise_and_optimise(src: Path, dst: Path, precision: str) -> None:
    """``src`` fp32 graph → ``dst`` in ``precision``, ORT-optimised where the CPU runs it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        mid = Path(tmp) / "stage.onnx"
        if precision == "fp32":
            optimise_offline(src, dst)
        elif precision == "int8":
            to_int8(_with_row_blocks(src, Path(tmp) / "rows.onnx"), mid)
            optimise_offline(mid, dst)
            _externalise_gather_tables(dst)
        else:
            # fp16 graphs are optimised by the GPU provider at load time, not here on the CPU.
            to_fp16(src, dst)
