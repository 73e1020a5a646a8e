"""Constants of the converted-model format, importable without onnx.

The runtime (file transcription, streaming) reads these to choose cache entries; importing
:mod:`audiototext.models.graph` for them would load onnx (~12 MB) into every process.
"""

from __future__ import annotations

__all__ = [
    "CONFIG_FILE",
    "DECODER_FILE",
    "ENCODER_FILE",
    "GRAPH_VERSION",
    "OPSET",
    "PRECISIONS",
    "TABLES_SUFFIX",
    "TOKENIZER_FILE",
]

OPSET = 17
# Bump when the graphs' inputs, outputs or semantics change: cache entries built with another
# version are not used (the engine would feed them the wrong inputs) and are rebuilt on pull.
# 1: first; 2: MultiHeadAttention/Gelu kernels; 3: logits_index input; 4: cross-attention
# keys/values shared by groups of rows (beams of one window); 5: int8 token table stored by rows
# in external data with a tables.json (filled on demand; entries of 4 held it whole, 40 MB more);
# 6: decoder self-attention with an in-place mode (``in_place``, ``beam_width``,
# ``cache_indirection``: a fixed-size cache written where it stands, beams by indirection);
# 7: int8 encoder quantises its activations per block of frames (models/row_blocks.py);
# 8: cross-attention values stored transposed, [batch, heads, head_dim, positions], and
# cross-attention computed with the encoder's positions on the left (K·Qᵀ, Vᵀ·Pᵀ);
# 9: fused decoders' prefill cross-attention as MultiHeadAttention, alignment weights only
# with the ``alignment`` input (else empty for prompts of more than one token).
GRAPH_VERSION = 9
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "fp16")
# The files of a cache entry: the manager writes them, the runtime reads them.
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
CONFIG_FILE = "model_config.json"
TOKENIZER_FILE = "tokenizer.json"
# Beside a graph file: a JSON description of its Gather-only tables stored in external data
# (models/optimize.py writes it; the runtime fills such tables row by row, see
# audiototext.inference.ort_session.RowTable). Optional: entries without it load as before.
TABLES_SUFFIX = ".tables.json"
