"""One decoder step, A/B in one process: decoder graphs of cache entries, intra-op threads.

Each variant is a ``PATH[@THREADS]``: a model's precision folder (holding ``decoder.onnx``) and
the intra-op threads of its session (default 2). The same step (``--rows`` rows, one new
token, ``--past`` cached positions, random 1500-position cross-attention keys/values) runs on
every variant in turn, ``--reps`` times; printed: wall best/median and CPU time median per step
(CPU time counts every intra-op thread, so it also shows how much a second thread works),
and each variant's ratio to the first. The order of the variants flips every repetition.

    python bench/step_ab.py CACHE/models/tiny.en/<source>/int8@2 CACHE/.../int8@1 --rows 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def _session(folder: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(folder / "decoder.onnx"), options, providers=["CPUExecutionProvider"]
    )


def _feed(folder: Path, rows: int, past: int) -> dict[str, np.ndarray]:
    graph = onnx.load(str(folder / "decoder.onnx"), load_external_data=False).graph
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    layers = sum(1 for name in dims if name.startswith("cross_k_"))
    heads, head_dim = dims["cross_k_0"][1], dims["cross_k_0"][3]
    rng = np.random.default_rng(0)
    feed = {
        "input_ids": np.full((rows, 1), 440, np.int64),
        "position_ids": np.full((rows, 1), past, np.int64),
        "attention_mask": np.ones((rows, past + 1), np.int64),
        "logits_index": np.zeros((rows, 1), np.int64),
    }
    for i in range(layers):
        for kind in "kv":
            feed[f"past_{kind}_{i}"] = rng.standard_normal((rows, heads, past, head_dim)).astype(
                np.float32
            )
        feed[f"cross_k_{i}"] = rng.standard_normal((1, heads, 1500, head_dim)).astype(np.float32)
        feed[f"cross_v_{i}"] = rng.standard_normal((1, heads, head_dim, 1500)).astype(np.float32)
    return feed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("variants", nargs="+", help="PATH[@THREADS]")
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--past", type=int, default=100)
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    runs = []
    for v in args.variants:
        path, _, threads = v.partition("@")
        folder = Path(path)
        runs.append((v, _session(folder, int(threads or 2)), _feed(folder, args.rows, args.past)))
    wall: dict[str, list[float]] = {v: [] for v, _, _ in runs}
    cpu: dict[str, list[float]] = {v: [] for v, _, _ in runs}
    for _, s, feed in runs:
        s.run(["logits"], feed)
    for rep in range(args.reps):
        # ABBA order: whichever variant runs right after another pays for what the other left
        # in the caches (5-9 % seen with a fixed order), so the order flips every repetition.
        for v, s, feed in runs if rep % 2 == 0 else runs[::-1]:
            t, c = time.perf_counter(), time.process_time()
            s.run(["logits"], feed)
            wall[v].append(time.perf_counter() - t)
            cpu[v].append(time.process_time() - c)
    first = runs[0][0]
    for v, _, _ in runs:
        w, c = statistics.median(wall[v]), statistics.median(cpu[v])
        print(
            f"{v}: rows {args.rows}: wall best {1000 * min(wall[v]):.2f} ms, median "
            f"{1000 * w:.2f} ms ({w / statistics.median(wall[first]):.3f}); CPU median "
            f"{1000 * c:.2f} ms ({c / statistics.median(cpu[first]):.3f})"
        )


if __name__ == "__main__":
    main()
