"""Whisper checkpoints as plain numpy arrays, whatever format they came in.

Every loader returns a :class:`WhisperCheckpoint`: float32 arrays keyed by the transformers
parameter names (without the ``model.`` prefix), plus the dimensions read from the arrays
themselves. Reading dimensions from the weights rather than from a config file means a config
that lies about the model (hand-edited, mismatched) is caught before conversion.

Supported inputs: transformers ``*.safetensors`` (one file or sharded) and CTranslate2
``model.bin`` (binary format version 3 to 6; float32, float16, bfloat16 or int8 weights).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiototext.errors import ConversionError, NotWhisperError

__all__ = [
    "WhisperCheckpoint",
    "WhisperDims",
    "load_ctranslate2",
    "load_safetensors",
]

Array = np.ndarray


@dataclass(frozen=True)
class WhisperDims:
    """Shape of a Whisper model, as read from its weights."""

    n_mels: int
    d_model: int
    n_audio_ctx: int
    n_text_ctx: int
    n_vocab: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int

    def __post_init__(self) -> None:
        for name in ("d_model", "encoder_heads", "decoder_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for heads in (self.encoder_heads, self.decoder_heads):
            if self.d_model % heads:
                raise ValueError(f"d_model {self.d_model} is not divisible by {heads} heads")

    @property
    def multilingual(self) -> bool:
        # English-only Whisper vocabularies have 51864 entries; every multilingual one more.
        return self.n_vocab >= 51865

    def to_json(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class WhisperCheckpoint:
    """Float32 Whisper weights keyed by transformers names (no ``model.`` prefix)."""

    dims: WhisperDims
    tensors: Mapping[str, Array]

    def __getitem__(self, name: str) -> Array:
        try:
            return self.tensors[name]
        except KeyError:
            raise ConversionError(f"checkpoint lacks the tensor {name!r}") from None


# --------------------------------------------------------------------------- helpers


def _infer_dims(t: Mapping[str, Array], encoder_heads: int, decoder_heads: int) -> WhisperDims:
    required = (
        "encoder.conv1.weight",
        "encoder.embed_positions.weight",
        "decoder.embed_tokens.weight",
        "decoder.embed_positions.weight",
    )
    missing = [k for k in required if k not in t]
    if missing:
        raise NotWhisperError(
            "these weights are not a Whisper model: missing " + ", ".join(missing)
        )

    def count(prefix: str) -> int:
        pat = re.compile(re.escape(prefix) + r"\.layers\.(\d+)\.")
        idx = {int(m.group(1)) for k in t if (m := pat.match(k))}
        if idx != set(range(len(idx))):
            raise ConversionError(f"{prefix} layers are not numbered 0..n-1: {sorted(idx)}")
        return len(idx)

    conv1 = t["encoder.conv1.weight"]
    try:
        return WhisperDims(
            n_mels=int(conv1.shape[1]),
            d_model=int(conv1.shape[0]),
            n_audio_ctx=int(t["encoder.embed_positions.weight"].shape[0]),
            n_text_ctx=int(t["decoder.embed_positions.weight"].shape[0]),
            n_vocab=int(t["decoder.embed_tokens.weight"].shape[0]),
            encoder_layers=count("encoder"),
            decoder_layers=count("decoder"),
            encoder_heads=encoder_heads,
            decoder_heads=decoder_heads,
        )
    except ValueError as exc:
        raise ConversionError(f"inconsistent Whisper dimensions: {exc}") from exc


def _check_shapes(ckpt: WhisperCheckpoint) -> None:
    d = ckpt.dims
    expect: dict[str, tuple[int, ...]] = {
        "encoder.conv1.weight": (d.d_model, d.n_mels, 3),
        "encoder.conv2.weight": (d.d_model, d.d_model, 3),
        "encoder.layer_norm.weight": (d.d_model,),
        "decoder.layer_norm.weight": (d.d_model,),
        "decoder.embed_positions.weight": (d.n_text_ctx, d.d_model),
    }
    for side, n in (("encoder", d.encoder_layers), ("decoder", d.decoder_layers)):
        attns = ["self_attn"] + (["encoder_attn"] if side == "decoder" else [])
        for i in range(n):
            for a in attns:
                for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    expect[f"{side}.layers.{i}.{a}.{p}.weight"] = (d.d_model, d.d_model)
            expect[f"{side}.layers.{i}.fc2.bias"] = (d.d_model,)
    for name, shape in expect.items():
        got = ckpt[name].shape
        if tuple(got) != shape:
            raise ConversionError(f"tensor {name} has shape {tuple(got)}, expected {shape}")


def _finish(tensors: dict[str, Array], encoder_heads: int, decoder_heads: int) -> WhisperCheckpoint:
    ckpt = WhisperCheckpoint(_infer_dims(tensors, encoder_heads, decoder_heads), tensors)
    _check_shapes(ckpt)
    return ckpt


# --------------------------------------------------------------------------- safetensors


def load_safetensors(model_dir: Path) -> WhisperCheckpoint:
    """Load a transformers Whisper checkpoint (``config.json`` + safetensors) without torch."""
    from safetensors.numpy import load_file

    config_path = model_dir / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotWhisperError(f"{model_dir} has no config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{config_path} is not valid JSON: {exc}") from exc
    if config.get("model_type") != "whisper":
        raise NotWhisperError(
            f"config.json says model_type={config.get('model_type')!r}; only Whisper-architecture "
            "models can be converted"
        )
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConversionError(f"{model_dir} has no .safetensors weights")
    tensors: dict[str, Array] = {}
    for f in files:
        try:
            raw = load_file(str(f))
        except Exception as exc:  # safetensors raises its own untyped errors
            raise ConversionError(f"cannot read {f.name}: {exc}") from exc
        for key, value in raw.items():
            name = key.removeprefix("model.")
            tensors[name] = _to_float32(value)
    return _finish(
        tensors,
        int(config.get("encoder_attention_heads", 0)),
        int(config.get("decoder_attention_heads", 0)),
    )


def _to_float32(a: Array) -> Array:
    if a.dtype == np.float32:
        return a
    return np.ascontiguousarray(a.astype(np.float32))


# --------------------------------------------------------------------------- CTranslate2

# CTranslate2's DataType enum order (include/ctranslate2/types.h).
_CT2_DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def _ct2_variables(path: Path) -> Iterator[tuple[str, Array]]:
    """Yield ``(name, array)`` for each variable of a CTranslate2 ``model.bin``, then aliases."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    buf = memoryview(data)  # type: ignore[arg-type]
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(buf):
            raise ConversionError(f"{path} is truncated (at byte {pos})")
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += size
        return int(value)

    def string() -> str:
        nonlocal pos
        n = take("<H")
        if pos + n > len(buf):
            raise ConversionError(f"{path} is truncated (at byte {pos})")
        text = bytes(buf[pos : pos + n - 1]).decode("utf-8")
        pos += n
        return text

    version = take("<I")
    if not 3 <= version <= 6:
        raise ConversionError(f"{path}: unsupported CTranslate2 binary version {version}")
    spec = string()
    if version >= 2:
        take("<I")  # spec revision
    if "Whisper" not in spec:
        raise NotWhisperError(f"{path} holds a CTranslate2 {spec}, not a Whisper model")
    arrays: dict[str, Array] = {}
    for _ in range(take("<I")):
        name = string()
        shape = tuple(take("<I") for _ in range(take("<B")))
        dtype_id = take("<B")
        nbytes = take("<I")
        if dtype_id >= len(_CT2_DTYPES):
            raise ConversionError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        if pos + nbytes > len(buf):
            raise ConversionError(f"{path} is truncated inside variable {name}")
        dtype_name = _CT2_DTYPES[dtype_id]
        raw = np.frombuffer(buf[pos : pos + nbytes], dtype=np.uint8)
        pos += nbytes
        if dtype_name == "bfloat16":
            import ml_dtypes

            arr = raw.view(ml_dtypes.bfloat16).astype(np.float32)
        else:
            arr = raw.view(np.dtype(dtype_name))
        arrays[name] = arr.reshape(shape) if shape else arr.reshape(())
        yield name, arrays[name]
    for _ in range(take("<I")):
        alias, target = string(), string()
        if target in arrays:
            yield alias, arrays[target]
    if pos != len(buf):
        raise ConversionError(f"{path} has {len(buf) - pos} unexpected trailing bytes")


def load_ctranslate2(model_dir: Path) -> WhisperCheckpoint:
    """Load a CTranslate2 (faster-whisper) Whisper ``model.bin`` without CTranslate2 itself."""
    path = model_dir / "model.bin"
    if not path.is_file():
        raise NotWhisperError(f"{model_dir} has no model.bin")
    raw = dict(_ct2_variables(path))

    def weight(name: str) -> Array:
        if name not in raw:
            raise ConversionError(f"{path} lacks the variable {name}")
        w = raw[name]
        scale = raw.get(name + "_scale")
        if w.dtype == np.int8 and scale is not None:
            # CTranslate2 int8: w_float = w_int8 / scale (per output row).
            s = np.asarray(scale, dtype=np.float32)
            w = w.astype(np.float32) / (s.reshape(-1, *([1] * (w.ndim - 1))) if s.ndim else s)
        return _to_float32(np.asarray(w))

    t: dict[str, Array] = {}
    d = int(raw["encoder/conv1/weight"].shape[0]) if "encoder/conv1/weight" in raw else 0
    if not d:
        raise NotWhisperError(f"{path} has no encoder/conv1 weights")

    def put_ln(src: str, dst: str) -> None:
        t[dst + ".weight"] = weight(src + "/gamma")
        t[dst + ".bias"] = weight(src + "/beta")

    def put_linear(src: str, dst: str) -> None:
        t[dst + ".weight"] = weight(src + "/weight")
        if src + "/bias" in raw:
            t[dst + ".bias"] = weight(src + "/bias")

    def put_fused(src: str, dsts: tuple[str, ...], bias_free: str = "k_proj") -> None:
        w = weight(src + "/weight")
        b = weight(src + "/bias")
        for j, dst in enumerate(dsts):
            t[dst + ".weight"] = np.ascontiguousarray(w[j * d : (j + 1) * d])
            if not dst.endswith(bias_free):
                t[dst + ".bias"] = np.ascontiguousarray(b[j * d : (j + 1) * d])

    for name in ("conv1", "conv2"):
        put_linear(f"encoder/{name}", f"encoder.{name}")
    for side in ("encoder", "decoder"):
        t[f"{side}.embed_positions.weight"] = weight(f"{side}/position_encodings/encodings")
        put_ln(f"{side}/layer_norm", f"{side}.layer_norm")
        i = 0
        while f"{side}/layer_{i}/ffn/linear_0/weight" in raw:
            src, dst = f"{side}/layer_{i}", f"{side}.layers.{i}"
            put_ln(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            put_fused(
                f"{src}/self_attention/linear_0",
                tuple(f"{dst}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")),
            )
            put_linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            if side == "decoder":
                put_ln(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                put_linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
                put_fused(
                    f"{src}/attention/linear_1",
                    (f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"),
                )
                put_linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
            put_ln(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            put_linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
            put_linear(f"{src}/ffn/linear_1", f"{dst}.fc2")
            i += 1
    t["decoder.embed_tokens.weight"] = weight("decoder/embeddings/weight")

    def heads(name: str) -> int:
        if name not in raw:
            raise ConversionError(f"{path} lacks {name}")
        return int(np.asarray(raw[name]).reshape(()))

    return _finish(t, heads("encoder/num_heads"), heads("decoder/num_heads"))
