"""Checkpoint → ONNX conversion and its validation against the numpy reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from audiototext.errors import ConversionError, ValidationError
from audiototext.models.graph import GRAPH_VERSION, build_decoder, build_encoder
from audiototext.models.metadata import ModelMetadata, read_source_metadata
from audiototext.models.versions import DECODER_FILE, ENCODER_FILE
from audiototext.models.weights import WhisperCheckpoint, load_ctranslate2, load_safetensors

__all__ = [
    "CONVERTER_VERSION",
    "Converted",
    "Probe",
    "convert",
    "load_checkpoint",
    "make_probe",
    "run_probe",
    "validate_against_reference",
]

CONVERTER_VERSION = str(GRAPH_VERSION)

# Protobuf cannot serialise a model over 2 GiB; larger graphs keep weights in a side file.
_EXTERNAL_DATA_BYTES = 1_800_000_000


def load_checkpoint(source_dir: Path, kind: str) -> WhisperCheckpoint:
    if kind == "transformers":
        return load_safetensors(source_dir)
    if kind in ("ctranslate2", "package"):
        return load_ctranslate2(source_dir)
    if kind == "onnx":
        from audiototext.models.onnx_import import load_onnx_export

        return load_onnx_export(source_dir)
    raise ConversionError(f"unknown checkpoint kind {kind!r}")


@dataclass(frozen=True)
class Converted:
    checkpoint: WhisperCheckpoint
    metadata: ModelMetadata


def save_model(model: onnx.ModelProto, path: Path) -> None:
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size > _EXTERNAL_DATA_BYTES:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def convert(source_dir: Path, kind: str, out_dir: Path, fused: bool = True) -> Converted:
    """Write fp32 ``encoder.onnx`` and ``decoder.onnx`` for the checkpoint in ``source_dir``.

    ``fused`` uses onnxruntime's MultiHeadAttention and Gelu kernels (faster on CPU); plain ONNX
    ops otherwise, which the fp16 converter can type (it cannot infer types after contrib ops).
    """
    ckpt = load_checkpoint(source_dir, kind)
    meta = read_source_metadata(source_dir, ckpt.dims)
    try:
        save_model(build_encoder(ckpt, fused), out_dir / ENCODER_FILE)
        save_model(build_decoder(ckpt, meta.alignment_heads, fused), out_dir / DECODER_FILE)
    except ValueError as exc:
        raise ConversionError(f"cannot build the ONNX graphs: {exc}") from exc
    return Converted(ckpt, meta)


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class Probe:
    """A fixed, seeded input that exercises every layer: a short mel window and a prompt."""

    mel: np.ndarray  # [n_mels, frames]
    tokens: list[int]


def make_probe(meta: ModelMetadata, frames: int = 200) -> Probe:
    rng = np.random.default_rng(20261123)
    # Roughly the range of real log-mel features ((log10 + 4) / 4 lands in about -1..1.5).
    mel = (rng.standard_normal((meta.dims.n_mels, frames)) * 0.4 - 0.3).astype(np.float32)
    st = meta.special_tokens
    prompt = [st["sot"]]
    if meta.languages:
        prompt += [meta.languages.get("en", next(iter(meta.languages.values()))), st["transcribe"]]
    prompt.append(st["no_timestamps"])
    # A few ordinary text tokens (ids below the first special token) after the prompt.
    text = [int(x) for x in rng.integers(200, min(st["eot"], 40000), size=3)]
    return Probe(mel, prompt + text)


def run_probe(model_dir: Path, meta: ModelMetadata, probe: Probe) -> dict[str, np.ndarray]:
    """Run the encoder and one decoder call on the probe with onnxruntime (CPU)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    enc = ort.InferenceSession(str(model_dir / ENCODER_FILE), so, providers=providers)
    dec = ort.InferenceSession(str(model_dir / DECODER_FILE), so, providers=providers)
    out = dict(
        zip(
            [o.name for o in enc.get_outputs()],
            enc.run(None, {"input_features": probe.mel[None]}),
            strict=True,
        )
    )
    d = meta.dims
    hd = d.d_model // d.decoder_heads
    n = len(probe.tokens)
    feed: dict[str, np.ndarray] = {
        "input_ids": np.asarray([probe.tokens], dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64)[None],
        "attention_mask": np.ones((1, n), dtype=np.int64),
        "logits_index": np.arange(n, dtype=np.int64)[None],
    }
    empty = np.zeros((1, d.decoder_heads, 0, hd), dtype=np.float32)
    for i in range(d.decoder_layers):
        feed[f"past_k_{i}"] = feed[f"past_v_{i}"] = empty
        feed[f"cross_k_{i}"] = out[f"cross_k_{i}"]
        feed[f"cross_v_{i}"] = out[f"cross_v_{i}"]
    if "alignment" in {i.name for i in dec.get_overridable_initializers()}:  # fused: on request
        feed["alignment"] = np.array(True)
    layers = meta.alignment_layers
    logits, *weights = dec.run(["logits", *(f"cross_attention_{i}" for i in layers)], feed)
    align = meta.alignment_attention(dict(zip(layers, weights, strict=True)), tokens=n)
    return {
        "last_hidden_state": out["last_hidden_state"][0],
        "logits": logits[0],
        "alignment_attention": align[0],
    }


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max() / max(float(np.abs(ref).max()), 1e-6))


# Relative max-abs error allowed between the fp32 ONNX graphs and the float64 reference.
# Observed on tiny.en: 1e-6 (encoder) and 2e-6 (logits); 1e-3 leaves room for deep models.
FP32_TOLERANCE = 1e-3


def validate_against_reference(model_dir: Path, conv: Converted) -> dict[str, float]:
    """Check the fp32 graphs against :mod:`audiototext.models.reference` on the probe."""
    from audiototext.models.reference import reference_decoder_logits, reference_encoder

    probe = make_probe(conv.metadata)
    got = run_probe(model_dir, conv.metadata, probe)
    hidden = reference_encoder(conv.checkpoint, probe.mel)
    logits, cross = reference_decoder_logits(conv.checkpoint, hidden, probe.tokens)
    heads = conv.metadata.alignment_heads
    align = np.stack([cross[layer][head] for layer, head in heads])
    report = {
        "encoder_rel_err": _rel_err(got["last_hidden_state"], hidden),
        "logits_rel_err": _rel_err(got["logits"], logits),
        "alignment_rel_err": _rel_err(got["alignment_attention"], align),
        "tolerance": FP32_TOLERANCE,
    }
    worst = max(report["encoder_rel_err"], report["logits_rel_err"], report["alignment_rel_err"])
    if not np.isfinite(worst) or worst > FP32_TOLERANCE:
        raise ValidationError(
            f"the converted graphs disagree with the reference implementation: {report}"
        )
    return report


def compare_variant(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    """How far a quantised variant drifts from fp32 on the probe (cosine of logits, top-1)."""
    a, b = ref["logits"].astype(np.float64), got["logits"].astype(np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)
    return {
        "logits_min_cosine": float(cos.min()),
        "logits_mean_cosine": float(cos.mean()),
        "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()),
        "logits_rel_err": _rel_err(got["logits"], ref["logits"]),
    }
