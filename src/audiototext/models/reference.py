"""A plain numpy Whisper forward pass: the reference every conversion is checked against.

It is written independently of the ONNX graph builder (no shared layer code), straight from
the transformers definition, so a mistake in one shows up as a disagreement with the other.
Slow but small; used on short probe inputs at pull time, where torch is not available.
"""

from __future__ import annotations

import math

import numpy as np

from audiototext.models.weights import WhisperCheckpoint

__all__ = ["reference_decoder_logits", "reference_encoder"]


def _ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mu) / np.sqrt(var + 1e-5) * w + b
    return out


def _gelu(x: np.ndarray) -> np.ndarray:
    from math import erf

    out: np.ndarray = 0.5 * x * (1.0 + np.vectorize(erf, otypes=[np.float64])(x / math.sqrt(2.0)))
    return out


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    # x [C, T], w [O, C, 3], padding 1
    xp = np.pad(x, ((0, 0), (1, 1)))
    n_out = (x.shape[1] + 2 - 3) // stride + 1
    cols = np.stack([xp[:, j * stride : j * stride + 3] for j in range(n_out)])  # [n, C, 3]
    out: np.ndarray = np.einsum("nck,ock->on", cols, w) + b[:, None]
    return out


def _mha(
    ckpt: WhisperCheckpoint, p: str, xq: np.ndarray, xkv: np.ndarray, heads: int, causal: bool
) -> tuple[np.ndarray, np.ndarray]:
    def lin(name: str, x: np.ndarray) -> np.ndarray:
        y: np.ndarray = x @ ckpt[f"{p}.{name}.weight"].T
        bias = ckpt.tensors.get(f"{p}.{name}.bias")
        return y if bias is None else y + bias

    d = xq.shape[-1]
    hd = d // heads
    q = lin("q_proj", xq).reshape(-1, heads, hd).transpose(1, 0, 2) * hd**-0.5
    k = lin("k_proj", xkv).reshape(-1, heads, hd).transpose(1, 0, 2)
    v = lin("v_proj", xkv).reshape(-1, heads, hd).transpose(1, 0, 2)
    s = q @ k.transpose(0, 2, 1)
    if causal:
        s = s + np.triu(np.full(s.shape[-2:], -np.inf), 1)
    s = np.exp(s - s.max(-1, keepdims=True))
    w = s / s.sum(-1, keepdims=True)
    ctx = (w @ v).transpose(1, 0, 2).reshape(-1, d)
    return lin("out_proj", ctx), w


def _mlp(ckpt: WhisperCheckpoint, p: str, x: np.ndarray) -> np.ndarray:
    h = _ln(x, ckpt[f"{p}.final_layer_norm.weight"], ckpt[f"{p}.final_layer_norm.bias"])
    h = _gelu(h @ ckpt[f"{p}.fc1.weight"].T + ckpt[f"{p}.fc1.bias"])
    out: np.ndarray = x + h @ ckpt[f"{p}.fc2.weight"].T + ckpt[f"{p}.fc2.bias"]
    return out


def reference_encoder(ckpt: WhisperCheckpoint, mel: np.ndarray) -> np.ndarray:
    """``mel`` [n_mels, frames] → hidden states [frames/2, d_model] (float64 maths)."""
    t = {k: v.astype(np.float64) for k, v in ckpt.tensors.items()}
    c = WhisperCheckpoint(ckpt.dims, t)
    x = _gelu(
        _conv1d(mel.astype(np.float64), t["encoder.conv1.weight"], t["encoder.conv1.bias"], 1)
    )
    x = _gelu(_conv1d(x, t["encoder.conv2.weight"], t["encoder.conv2.bias"], 2)).T
    x = x + t["encoder.embed_positions.weight"][: x.shape[0]]
    for i in range(ckpt.dims.encoder_layers):
        p = f"encoder.layers.{i}"
        h = _ln(x, t[f"{p}.self_attn_layer_norm.weight"], t[f"{p}.self_attn_layer_norm.bias"])
        x = x + _mha(c, f"{p}.self_attn", h, h, ckpt.dims.encoder_heads, False)[0]
        x = _mlp(c, p, x)
    return _ln(x, t["encoder.layer_norm.weight"], t["encoder.layer_norm.bias"])


def reference_decoder_logits(
    ckpt: WhisperCheckpoint, hidden: np.ndarray, tokens: list[int]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits [len(tokens), n_vocab] and per-layer cross-attention weights [heads, T, S]."""
    t = {k: v.astype(np.float64) for k, v in ckpt.tensors.items()}
    c = WhisperCheckpoint(ckpt.dims, t)
    emb = t["decoder.embed_tokens.weight"]
    x = emb[tokens] + t["decoder.embed_positions.weight"][: len(tokens)]
    cross: list[np.ndarray] = []
    for i in range(ckpt.dims.decoder_layers):
        p = f"decoder.layers.{i}"
        h = _ln(x, t[f"{p}.self_attn_layer_norm.weight"], t[f"{p}.self_attn_layer_norm.bias"])
        x = x + _mha(c, f"{p}.self_attn", h, h, ckpt.dims.decoder_heads, True)[0]
        h = _ln(x, t[f"{p}.encoder_attn_layer_norm.weight"], t[f"{p}.encoder_attn_layer_norm.bias"])
        o, w = _mha(c, f"{p}.encoder_attn", h, hidden, ckpt.dims.decoder_heads, False)
        cross.append(w)
        x = _mlp(c, p, x + o)
    x = _ln(x, t["decoder.layer_norm.weight"], t["decoder.layer_norm.bias"])
    return x @ emb.T, cross
