"""The language and task of a stream: what its model can do, and its decoding prompt.

A stream with a text prompt (``StreamOptions.prompt``) has its tokens as earlier speech,
``<|startofprev|>`` before the start sequence, in every decoding, as file transcription's
initial prompt conditions its first window: names and spellings it holds become likely.

A stream that did not name a language, on a multilingual model, has it detected once, from
the first audio the stream decodes (Whisper's language-token probabilities after
``<|startoftranscript|>``, as file transcription does), on the lane that decodes it, right
after the encoder; later partials and finals of the stream use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audiototext.errors import ConfigError
from audiototext.inference.seek import detect_language
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = ["check_language_and_task", "initial_prompt", "prompt_tokens", "stream_prompt"]


def check_language_and_task(tok: Any, loaded: str, language: str | None, task: str) -> None:
    """Refuse a language or task the tokenizer of model ``loaded`` cannot do."""
    if task == "translate" and not tok.multilingual:
        raise ConfigError(f"{loaded} is English-only: it cannot translate")
    if language is not None and not tok.multilingual and language != "en":
        raise ConfigError(f"{loaded} is English-only; language {language!r} is not possible")
    if language is not None and tok.multilingual and language not in tok.languages:
        raise ConfigError(f"unknown language {language!r}")


def prompt_tokens(model: WhisperModel, text: str) -> tuple[int, ...]:
    """The tokens of a stream's text prompt; ConfigError when they exceed the half of the
    decoder's context Whisper gives earlier text (as file transcription's 223 tokens)."""
    text = text.strip()
    if not text:
        return ()
    tokens = tuple(model.tokenizer.encode(" " + text))
    limit = model.max_text_tokens // 2 - 1
    if len(tokens) > limit:
        raise ConfigError(
            f"the prompt is {len(tokens)} tokens long; at most {limit} fit the decoder's "
            "context: shorten it to the names and words the speech may contain"
        )
    return tokens


def _text_prompt(tok: Any, language: str | None, task: str, context: Sequence[int]) -> list[int]:
    """[<|startofprev|>, context], <|startoftranscript|>, language and task (multilingual
    models), <|notimestamps|>."""
    sot = tok.sot_sequence(language, task) if tok.multilingual else tok.sot_sequence(None)
    before = [tok.sot_prev, *context] if context else []
    return [*before, *sot, tok.no_timestamps]


def initial_prompt(tok: Any, stream: Any) -> list[int]:
    """The start of a text-only decoding for ``stream``. Until a stream without a language
    has one detected (on a lane, after the encoder: :func:`stream_prompt`), English stands
    in; the lane replaces it before decoding."""
    options = stream.options
    language = options.language or stream.detected_language or "en"
    return _text_prompt(tok, language, options.task, getattr(stream, "prompt_tokens", ()))


def stream_prompt(
    model: WhisperModel, stream: Any, prompt: Sequence[int], cross: CrossAttention, row: int
) -> list[int]:
    """``prompt``, or for a stream with no language of its own on a multilingual model, the
    prompt of its detected language (detected now from row ``row`` of ``cross`` if it was
    not yet)."""
    tok = model.tokenizer
    options = getattr(stream, "options", None)
    if not tok.multilingual or options is None or options.language is not None:
        return list(prompt)
    language: str | None = getattr(stream, "detected_language", None)
    if language is None:
        language = detect_language(model, cross.take([row]))
        stream.detected_language = language
    return _text_prompt(tok, language, options.task, getattr(stream, "prompt_tokens", ()))
