"""The int8 decoder's token table: stored by rows in external data, filled on demand at run time.

Only the rows of tokens actually fed are read into the process, and the decoder's outputs are
exactly those of the same graph with the table loaded by ONNX Runtime itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiototext.errors import ModelError
from audiototext.inference import OrtConfig, WhisperModel
from audiototext.inference.ort_session import OrtSession, RowTable
from audiototext.models.versions import TABLES_SUFFIX

CPU = OrtConfig(device="cpu", intra_op_threads=1)


def _tables(model: WhisperModel) -> list[RowTable]:
    return model.decoder.row_tables


def test_int8_token_table_is_a_row_table_in_external_data(int8_model: WhisperModel) -> None:
    path = int8_model.path
    spec = json.loads((path / ("decoder.onnx" + TABLES_SUFFIX)).read_text())["row_tables"]
    assert len(spec) == 1
    table = spec[0]
    d = int8_model.dims
    assert table["shape"] == [d.n_vocab, d.d_model]  # one row per token
    assert table["dtype"] == "float16" and table["indices"] == ["input_ids"]
    data = path / table["file"]
    assert data.stat().st_size >= table["offset"] + d.n_vocab * d.d_model * 2
    assert table["offset"] % 4096 == 0
    # The graph file itself no longer holds the table.
    assert (path / "decoder.onnx").stat().st_size < data.stat().st_size


def test_decoding_reads_only_the_rows_it_looks_up(int8_model: WhisperModel) -> None:
    model = WhisperModel(int8_model.path, CPU)
    (table,) = _tables(model)
    assert table.rows_loaded == 0
    tok = model.tokenizer
    cross = model.encode(np.zeros((1, model.n_mels, model.window_frames), np.float32))
    kv = model.decoder_for(cross)
    kv.prefill([[tok.sot, tok.no_timestamps]])
    for t in (400, 401, 400, 9000):
        kv.step(np.array([t]))
    assert table.rows_loaded == 5  # sot, no_timestamps, 400, 401, 9000
    loaded = np.flatnonzero(np.any(table.array != 0, axis=1))
    assert set(loaded.tolist()) <= {tok.sot, tok.no_timestamps, 400, 401, 9000}


def test_outputs_equal_those_with_the_table_loaded_by_onnxruntime(
    int8_model: WhisperModel, tmp_path: Path
) -> None:
    plain_dir = tmp_path / "plain"
    shutil.copytree(int8_model.path, plain_dir)
    (plain_dir / ("decoder.onnx" + TABLES_SUFFIX)).unlink()  # ORT maps the file itself
    lazy = WhisperModel(int8_model.path, CPU)
    plain = WhisperModel(plain_dir, CPU)
    assert _tables(lazy) and not _tables(plain)
    rng = np.random.default_rng(3)
    mel = rng.standard_normal((2, lazy.n_mels, lazy.window_frames)).astype(np.float32)
    tok = lazy.tokenizer
    prompts = [[tok.sot, tok.no_timestamps], [tok.sot, 50364, 262]]
    steps = rng.integers(0, tok.eot, size=(6, 2))
    outs = []
    for model in (lazy, plain):
        kv = model.decoder_for(model.encode(mel))
        logits = [kv.prefill(prompts)[0]]
        logits += [kv.step(ids) for ids in steps]
        outs.append(logits)
    for a, b in zip(*outs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_out_of_range_ids_are_left_to_the_graph(int8_model: WhisperModel) -> None:
    model = WhisperModel(int8_model.path, CPU)
    (table,) = _tables(model)
    table.ensure(np.array([-1, model.dims.n_vocab, 7]))
    assert table.rows_loaded == 1
    cross = model.encode(np.zeros((1, model.n_mels, model.window_frames), np.float32))
    kv = model.decoder_for(cross)
    with pytest.raises(Exception, match=r"(?i)indices|out of bounds|invalid"):
        kv.prefill([[model.dims.n_vocab + 5]])


def test_a_table_file_too_short_is_a_model_error(int8_model: WhisperModel, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(int8_model.path, broken)
    data = broken / "decoder.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ModelError, match="shorter than the table"):
        OrtSession(broken / "decoder.onnx", CPU)


def test_accelerator_sessions_do_not_use_row_tables(
    int8_model: WhisperModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audiototext.inference.ort_session as session_mod

    # Asked for an accelerator, the session is created without the on-demand table (it would be
    # copied to the device empty); here the "accelerator" fails and the CPU fallback maps the
    # file instead, which is still correct.
    monkeypatch.setattr(
        session_mod, "choose_providers", lambda device: ["FakeEP", "CPU" + "ExecutionProvider"]
    )
    s = OrtSession(int8_model.path / "decoder.onnx", OrtConfig(device="auto"))
    assert s.row_tables == []
    assert s.on_cpu
