"""What the engine needs to know about a converted model, besides its graphs.

Written to ``model_config.json`` in each cache entry: dimensions, special token ids (looked up
by their text in ``tokenizer.json`` rather than hard-coded, because English-only and
multilingual vocabularies number them differently), languages, suppressed tokens and the
alignment heads used for word timestamps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from audiototext.errors import ConversionError
from audiototext.models.weights import WhisperDims

__all__ = ["ModelMetadata", "read_source_metadata"]

_SPECIALS = {
    "eot": ("<|endoftext|>",),
    "sot": ("<|startoftranscript|>",),
    "translate": ("<|translate|>",),
    "transcribe": ("<|transcribe|>",),
    "sot_lm": ("<|startoflm|>",),
    "sot_prev": ("<|startofprev|>",),
    "no_speech": ("<|nospeech|>", "<|nocaptions|>"),
    "no_timestamps": ("<|notimestamps|>",),
}


@dataclass(frozen=True)
class ModelMetadata:
    dims: WhisperDims
    special_tokens: Mapping[str, int]
    languages: Mapping[str, int]  # code → token id; empty for English-only models
    suppress_tokens: tuple[int, ...]
    begin_suppress_tokens: tuple[int, ...]
    alignment_heads: tuple[tuple[int, int], ...]  # (decoder layer, head), sorted

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    @property
    def timestamp_begin(self) -> int:
        return self.special_tokens["no_timestamps"] + 1

    @property
    def alignment_layers(self) -> list[int]:
        """Decoder layers holding alignment heads (their ``cross_attention_{i}`` outputs)."""
        return sorted({layer for layer, _ in self.alignment_heads})

    def alignment_attention(
        self, weights: Mapping[int, NDArray[np.float32]], tokens: int
    ) -> NDArray[np.float32]:
        """The alignment heads' attention ``[batch, heads, tokens, positions]``, in the order of
        :attr:`alignment_heads`, from the decoder's ``cross_attention_{layer}`` outputs
        ``[windows, that layer's alignment heads, rows, positions]`` (rows: each of a window's
        rows' ``tokens`` in turn, so a window's beams split its rows)."""
        parts = []
        for layer in self.alignment_layers:
            w = weights[layer]
            windows, n_heads, rows, positions = w.shape
            if tokens <= 0 or rows % tokens:
                raise ValueError(f"{rows} attention rows do not divide into {tokens} tokens")
            group = rows // tokens
            # [windows, heads, group, tokens, positions] -> [windows * group, heads, ...]
            w5 = w.reshape(windows, n_heads, group, tokens, positions).transpose(0, 2, 1, 3, 4)
            parts.append(w5.reshape(windows * group, n_heads, tokens, positions))
        return np.concatenate(parts, axis=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "architecture": "whisper",
            "dims": self.dims.to_json(),
            "special_tokens": dict(self.special_tokens),
            "timestamp_begin": self.timestamp_begin,
            "languages": dict(self.languages),
            "suppress_tokens": list(self.suppress_tokens),
            "begin_suppress_tokens": list(self.begin_suppress_tokens),
            "alignment_heads": [list(h) for h in self.alignment_heads],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelMetadata:
        try:
            return cls(
                dims=WhisperDims(**data["dims"]),
                special_tokens={str(k): int(v) for k, v in data["special_tokens"].items()},
                languages={str(k): int(v) for k, v in data["languages"].items()},
                suppress_tokens=tuple(int(x) for x in data["suppress_tokens"]),
                begin_suppress_tokens=tuple(int(x) for x in data["begin_suppress_tokens"]),
                alignment_heads=tuple((int(a), int(b)) for a, b in data["alignment_heads"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConversionError(f"model_config.json is malformed: {exc!r}") from exc


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConversionError(f"cannot read {path.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConversionError(f"{path.name} is not a JSON object")
    return data


def _special_tokens(tokenizer: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    by_text = {t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])}
    vocab = tokenizer.get("model", {}).get("vocab", {})
    if isinstance(vocab, dict):
        for text, idx in vocab.items():
            by_text.setdefault(text, int(idx))
    specials: dict[str, int] = {}
    for key, texts in _SPECIALS.items():
        for text in texts:
            if text in by_text:
                specials[key] = by_text[text]
                break
        else:
            raise ConversionError(f"tokenizer.json lacks the Whisper special token {texts[0]}")
    languages: dict[str, int] = {}
    for text, idx in by_text.items():
        code = text[2:-2]
        if (
            text.startswith("<|")
            and text.endswith("|>")
            and specials["sot"] < idx < specials["translate"]
            and code
            and len(code) <= 4
            and code.isalpha()
        ):
            languages[code] = idx
    return specials, languages


def read_source_metadata(source_dir: Path, dims: WhisperDims) -> ModelMetadata:
    """Build metadata from a source checkout (transformers or CTranslate2 layout)."""
    tok_path = source_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise ConversionError(f"{source_dir} has no tokenizer.json (needed for the vocabulary)")
    specials, languages = _special_tokens(_load_json(tok_path))
    if not dims.multilingual:
        languages = {}

    heads: list[tuple[int, int]] | None = None
    suppress: list[int] = []
    begin: list[int] = []
    gen = source_dir / "generation_config.json"
    ct2 = source_dir / "config.json"
    if gen.is_file():
        g = _load_json(gen)
        heads = [tuple(h) for h in g.get("alignment_heads") or []] or None
        suppress = list(g.get("suppress_tokens") or [])
        begin = list(g.get("begin_suppress_tokens") or [])
    elif ct2.is_file() and (source_dir / "model.bin").is_file():
        c = _load_json(ct2)
        heads = [tuple(h) for h in c.get("alignment_heads") or []] or None
        suppress = list(c.get("suppress_ids") or [])
        begin = list(c.get("suppress_ids_begin") or [])
    if heads is None:
        # Whisper's default when no tuned list exists: every head of the last half of layers.
        heads = [
            (layer, h)
            for layer in range(dims.decoder_layers // 2, dims.decoder_layers)
            for h in range(dims.decoder_heads)
        ]
    bad = [
        h for h in heads if not (0 <= h[0] < dims.decoder_layers and 0 <= h[1] < dims.decoder_heads)
    ]
    if bad:
        raise ConversionError(f"alignment heads {bad} do not exist in this model")
    if not begin:
        begin = [specials["eot"]]
    return ModelMetadata(
        dims=dims,
        special_tokens=specials,
        languages=languages,
        suppress_tokens=tuple(sorted({int(x) for x in suppress})),
        begin_suppress_tokens=tuple(int(x) for x in begin),
        alignment_heads=tuple(sorted({(int(a), int(b)) for a, b in heads})),
    )
