"""Which files of an optimum / transformers.js ONNX Whisper export to download and read.

fp32 graphs are preferred to fp16 ones, a decoder without a cache to a merged one; an export
holding only quantised graphs, or only ``decoder_with_past_model.onnx``, is refused with the
reason (see :mod:`audiototext.models.onnx_import`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from audiototext.errors import ConversionError, NotWhisperError

__all__ = ["FileChoice", "choose_files", "pick_onnx_files"]

_FOLDERS = ("onnx/", "")
# fp32 first: those are the exported weights themselves; fp16 copies lost precision.
_PRECISIONS = ("", "_fp16")
# The decoder without a cache is smaller than the merged one and holds the same weights.
_DECODERS = ("decoder_model", "decoder_model_merged")
_OPTIONAL = ("generation_config.json", "preprocessor_config.json")
_ONNX_NAME = re.compile(
    r"(?:^|/)(encoder_model|decoder_model|decoder_model_merged|"
    r"decoder_with_past_model)(_[a-z0-9]+)?\.onnx$"
)


@dataclass(frozen=True)
class FileChoice:
    """The graphs to read, and every file to download for them."""

    encoder: str
    decoder: str
    files: tuple[str, ...]  # everything to download, including external data and configs


def _external_data(onnx_file: str, names: Iterable[str]) -> list[str]:
    # optimum and transformers.js write one side file named after the graph (``x.onnx_data``,
    # large ones split as ``x.onnx_data_1``...); onnx's own default is ``x.onnx.data``.
    prefixes = (onnx_file + "_data", onnx_file + ".data")
    return sorted(n for n in names if n.startswith(prefixes))


def _find_pair(top: set[str]) -> tuple[str, str] | None:
    for precision in _PRECISIONS:
        for folder in _FOLDERS:
            encoder = f"{folder}encoder_model{precision}.onnx"
            if encoder not in top:
                continue
            for decoder in (f"{folder}{d}{precision}.onnx" for d in _DECODERS):
                if decoder in top:
                    return encoder, decoder
    return None


def choose_files(names: Sequence[str]) -> FileChoice:
    """The encoder and decoder to read among ``names`` (see :func:`pick_onnx_files`)."""
    top = {n.replace("\\", "/") for n in names}
    pair = _find_pair(top)
    if pair is None:
        _explain_missing(top)
    encoder, decoder = pair
    for required in ("config.json", "tokenizer.json"):
        if required not in top:
            raise ConversionError(f"the ONNX export has no {required}")
    files = [
        "config.json",
        "tokenizer.json",
        encoder,
        *_external_data(encoder, top),
        decoder,
        *_external_data(decoder, top),
        *(n for n in _OPTIONAL if n in top),
    ]
    return FileChoice(encoder, decoder, tuple(files))


def _explain_missing(top: set[str]) -> NoReturn:
    variants = sorted({(m.group(1), m.group(2) or "") for n in top if (m := _ONNX_NAME.search(n))})
    found = {graph for graph, _ in variants}
    if "encoder_model" not in found:
        raise NotWhisperError("no encoder_model.onnx: not an ONNX Whisper export")
    if not any(name in found for name in _DECODERS):
        if "decoder_with_past_model" in found:
            raise ConversionError(
                "the ONNX export has only decoder_with_past_model.onnx, which lacks the "
                "cross-attention key/value weights; decoder_model.onnx or "
                "decoder_model_merged.onnx is needed"
            )
        raise NotWhisperError("no decoder_model.onnx: not an ONNX Whisper export")
    listed = ", ".join(f"{name}{suffix}.onnx" for name, suffix in variants)
    raise ConversionError(
        "the ONNX export has only quantised graphs "
        f"({listed}); float weights (fp32 or fp16 files) are needed to rebuild the model"
    )


def pick_onnx_files(names: Sequence[str]) -> list[str]:
    """Repository files needed to import an optimum / transformers.js ONNX Whisper export.

    ``names`` are repo-relative paths. Raises :class:`NotWhisperError` when there is no ONNX
    Whisper encoder and decoder, and :class:`ConversionError` when only quantised graphs, only a
    ``decoder_with_past_model.onnx``, or no ``config.json``/``tokenizer.json`` are present.
    """
    return list(choose_files(names).files)
