"""The shipped TopK / cache-reorder graphs: what they compute, that the files are what the
builders write, and that beam search runs without the ``onnx`` package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from audiototext.inference.decoding import _log_softmax, _top_k, _top_k_log_softmax
from audiototext.inference.helper_graphs import (
    ASSETS,
    REORDER_SIZES,
    asset_graphs,
    reorder_session,
)
from audiototext.inference.whisper import WhisperModel


def test_shipped_graphs_are_what_the_builders_write() -> None:
    """Rebuild every asset with onnx; a change to a builder must come with regenerated files
    (``python -m audiototext.inference.helper_graphs``)."""
    built = asset_graphs()
    shipped = {p.name: p.read_bytes() for p in ASSETS.glob("*.onnx")}
    assert set(shipped) == set(built)
    for name, data in built.items():
        assert shipped[name] == data, f"{name} is stale: regenerate the assets"


def test_assets_are_package_data() -> None:
    root = Path(__file__).resolve().parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["audiototext"]
    assert "inference/assets/*.onnx" in patterns
    package = root / "src" / "audiototext"
    assert ASSETS.resolve() == (package / "inference" / "assets").resolve()


def test_top_k_matches_a_stable_sort() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 1000)).astype(np.float32)
    x[3, [10, 20, 30]] = 9.0  # ties: the lower index first
    values, indices = _top_k(x, 10)
    order = np.argsort(-x, axis=-1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(values, np.take_along_axis(x, order, axis=-1))
    assert indices[3, :3].tolist() == [10, 20, 30]


def test_top_k_log_softmax_is_the_top_k_of_the_log_softmax() -> None:
    """Beam search ranks the masked logits and computes log-probabilities for the k best only:
    the same values, bit for bit, and the same tokens as ranking the whole log-softmax."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 51864)) * 4).astype(np.float32)
    x[:, 50257:50300] = -np.inf  # masked tokens, as the rules leave them
    x[2, :50257] = -np.inf  # a row where only timestamps remain
    values, indices = _top_k_log_softmax(x.copy(), 10)
    ref_values, ref_indices = _top_k(_log_softmax(x), 10)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(values, ref_values)


@pytest.mark.parametrize("tensors", [8, 3])  # a shipped size, and one done tensor by tensor
def test_reorder_picks_rows_of_every_tensor(int8_model: WhisperModel, tensors: int) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((4, 2, 5 + i, 3)).astype(np.float32) for i in range(tensors)]
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays]
    rows = np.array([2, 2, 0, 3, 1], dtype=np.int64)
    out = int8_model.reorder([v._get_c_value() for v in values], rows)
    assert len(out) == tensors
    for got, a in zip(out, arrays, strict=True):
        np.testing.assert_array_equal(got.numpy(), a[rows])


def test_reorder_graph_sizes_cover_whisper_depths() -> None:
    # 2 tensors (keys, values) per decoder layer: tiny 4, base 6, small 12, medium 24, large 32.
    for layers in (4, 6, 12, 24, 32):
        assert 2 * layers in REORDER_SIZES
    with pytest.raises(ValueError, match="no reorder graph"):
        reorder_session(5)
