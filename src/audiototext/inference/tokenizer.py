"""Whisper's tokenizer: text ↔ ids with the cached ``tokenizer.json``, special and timestamp tokens.

Special token ids come from ``model_config.json`` (:class:`ModelMetadata`), not from constants,
because English-only and multilingual vocabularies number them differently. Every id at or above
``timestamp_begin`` is a timestamp: ``(id - timestamp_begin) * 0.02`` seconds into the window.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from audiototext.errors import ModelError
from audiototext.models.metadata import ModelMetadata

__all__ = ["TASKS", "TIME_PRECISION_S", "WhisperTokenizer"]

TIME_PRECISION_S = 0.02  # one timestamp token step: 2 encoder frames of 10 ms
TASKS = ("transcribe", "translate")
# Languages written without spaces: words are split at unicode boundaries instead.
_NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
# Symbols that mark non-speech annotations ("[MUSIC]", "(laughs)", "♪"); Whisper suppresses
# tokens that start with them so that silence is not captioned.
_NON_SPEECH_SYMBOLS = [
    *'"#()*+/:;<=>@[\\]^_`{|}~「」『』',
    *[
        "<<",
        ">>",
        "<<<",
        ">>>",
        "--",
        "---",
        "-(",
        "-[",
        "('",
        '("',
        "((",
        "))",
        "(((",
        ")))",
        "[[",
        "]]",
        "{{",
        "}}",
        "♪♪",
        "♪♪♪",
    ],
]
_MUSIC_SYMBOLS = "♩♪♫♬♭♮♯"  # multi-token; their first token is unique to this block


class WhisperTokenizer:
    """Encode and decode Whisper token ids; read-only and shareable between threads."""

    def __init__(self, tokenizer_json: Path, metadata: ModelMetadata) -> None:
        try:
            self._tok = Tokenizer.from_file(str(tokenizer_json))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
            raise ModelError(f"cannot load {tokenizer_json}: {exc}") from exc
        self.metadata = metadata
        specials = metadata.special_tokens
        self.eot = specials["eot"]
        self.sot = specials["sot"]
        self.sot_prev = specials["sot_prev"]
        self.sot_lm = specials["sot_lm"]
        self.transcribe = specials["transcribe"]
        self.translate = specials["translate"]
        self.no_speech = specials["no_speech"]
        self.no_timestamps = specials["no_timestamps"]
        self.timestamp_begin = metadata.timestamp_begin
        self.languages = dict(metadata.languages)

    @property
    def multilingual(self) -> bool:
        return bool(self.languages)

    def sot_sequence(
        self, language: str | None = None, task: str = "transcribe"
    ) -> tuple[int, ...]:
        """``<|startoftranscript|>`` followed, on multilingual models, by language and task."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        if not self.multilingual:
            return (self.sot,)
        if language is None or language not in self.languages:
            raise ValueError(f"unknown language code {language!r} for this model")
        return (self.sot, self.languages[language], getattr(self, task))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of the ordinary tokens; special and timestamp tokens are left out."""
        return str(self._tok.decode([t for t in tokens if t < self.eot]))

    def decode_with_timestamps(self, tokens: Sequence[int]) -> str:
        """Text with timestamps shown inline as ``<|1.24|>``."""
        parts: list[str] = []
        run: list[int] = []
        for t in tokens:
            if t >= self.timestamp_begin:
                parts.append(str(self._tok.decode(run)))
                run = []
                parts.append(f"<|{(t - self.timestamp_begin) * TIME_PRECISION_S:.2f}|>")
            else:
                run.append(t)
        parts.append(str(self._tok.decode(run)))
        return "".join(parts)

    @functools.cached_property
    def non_speech_tokens(self) -> tuple[int, ...]:
        """Tokens Whisper suppresses so that it does not caption non-speech (as OpenAI's list).

        Hyphen and quote are allowed inside words but not at the start of one.
        """
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in [*_NON_SPEECH_SYMBOLS, *_MUSIC_SYMBOLS]:
            for ids in (self.encode(symbol), self.encode(" " + symbol)):
                if len(ids) == 1 or symbol in _MUSIC_SYMBOLS:
                    result.add(ids[0])
        return tuple(sorted(result))

    def default_suppress_tokens(self) -> tuple[int, ...]:
        """Non-speech symbols and the special tokens that must never be generated."""
        specials = {
            self.transcribe,
            self.translate,
            self.sot,
            self.sot_prev,
            self.sot_lm,
            self.no_speech,
        }
        return tuple(sorted(set(self.non_speech_tokens) | specials))

    # ---- words (for word-level timestamps) ------------------------------------------------

    def split_to_word_tokens(
        self, tokens: Sequence[int], language: str | None = None
    ) -> tuple[list[str], list[list[int]]]:
        """Group ``tokens`` into words: at spaces and punctuation, or at unicode boundaries."""
        if language in _NO_SPACE_LANGUAGES:
            return self._split_on_unicode(tokens)
        words: list[str] = []
        groups: list[list[int]] = []
        for sub, ids in zip(*self._split_on_unicode(tokens), strict=True):
            starts_word = (
                ids[0] >= self.eot or sub.startswith(" ") or sub.strip() in string.punctuation
            )
            if starts_word or not words:
                words.append(sub)
                groups.append(list(ids))
            else:
                words[-1] += sub
                groups[-1].extend(ids)
        return words, groups

    def _split_on_unicode(self, tokens: Sequence[int]) -> tuple[list[str], list[list[int]]]:
        # A token may end inside a multi-byte character; accumulate until the text decodes
        # without a replacement character that the full text does not have at that place.
        full = self.decode_with_timestamps(tokens)
        words: list[str] = []
        groups: list[list[int]] = []
        current: list[int] = []
        offset = 0
        for t in tokens:
            current.append(t)
            text = self.decode_with_timestamps(current)
            bad = text.find("\ufffd")
            if bad < 0 or (offset + bad < len(full) and full[offset + bad] == "\ufffd"):
                words.append(text)
                groups.append(current)
                current = []
                offset += len(text)
        return words, groups
