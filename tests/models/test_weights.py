"""Checkpoint loaders: CTranslate2 (files made by CTranslate2's converter) and safetensors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from audiototext.errors import ConversionError, NotWhisperError
from audiototext.models.weights import load_ctranslate2, load_safetensors


def test_tiny_en_ctranslate2_dims(tiny_en_source: Path) -> None:
    ckpt = load_ctranslate2(tiny_en_source)
    d = ckpt.dims
    assert (d.n_mels, d.d_model, d.encoder_layers, d.decoder_layers, d.encoder_heads) == (
        80,
        384,
        4,
        4,
        6,
    )
    assert (d.n_audio_ctx, d.n_text_ctx, d.n_vocab) == (1500, 448, 51864)
    assert not d.multilingual
    assert all(v.dtype == np.float32 for v in ckpt.tensors.values())
    assert "encoder.layers.0.self_attn.k_proj.bias" not in ckpt.tensors  # Whisper's K has no bias


@pytest.mark.parametrize("quantization", ["int8", "float16", "bfloat16"])
def test_ctranslate2_quantized_files_load_close_to_source(
    quantization: str, random_whisper_dir: Path, tmp_path: Path
) -> None:
    ct2 = pytest.importorskip("ctranslate2")
    out = tmp_path / "ct2"
    ct2.converters.TransformersConverter(str(random_whisper_dir)).convert(
        str(out), quantization=quantization
    )
    got = load_ctranslate2(out)
    ref = load_safetensors(random_whisper_dir)
    assert got.dims == ref.dims
    tol = {"int8": 2e-2, "float16": 1e-3, "bfloat16": 8e-3}[quantization]
    for name in (
        "encoder.layers.0.self_attn.q_proj.weight",
        "decoder.layers.1.encoder_attn.v_proj.weight",
        "decoder.layers.0.fc1.weight",
    ):
        a, b = got[name], ref[name]
        assert np.abs(a - b).max() <= tol * np.abs(b).max() + 1e-6, name


def test_truncated_model_bin_is_a_clear_error(tiny_en_source: Path, tmp_path: Path) -> None:
    data = (tiny_en_source / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated"):
        load_ctranslate2(tmp_path)


def test_garbage_model_bin_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(ConversionError):
        load_ctranslate2(tmp_path)


def test_non_whisper_transformers_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(NotWhisperError, match="bert"):
        load_safetensors(tmp_path)


def test_safetensors_missing_tensor_is_reported(random_whisper_dir: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    shutil.copy(random_whisper_dir / "config.json", tmp_path / "config.json")
    tensors = load_file(str(random_whisper_dir / "model.safetensors"))
    del tensors["model.decoder.layers.1.fc2.bias"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConversionError, match=r"fc2\.bias"):
        load_safetensors(tmp_path)
