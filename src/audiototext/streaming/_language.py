"""The language and task of a stream: what its model can do, and its decoding prompt.

A stream with a text prompt (``StreamOptions.prompt``) has its tokens as earlier speech,
``<|startofprev|>`` before the start sequence, in every decoding, as file transcription's
initial prompt conditions its first window: names and spellings it holds become likely.

A stream that did not name a language, on a multilingual model, has it detected once, from
its first final's audio padded to a 30-s window (Whisper's language-token probabilities after
``<|startoftranscript|>``, as file transcription does; one extra encoder pass per stream), on
the lane that decodes it; later partials and finals of the stream use it. Partials before that
first final detect from their own audio, without fixing it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audiototext.errors import ConfigError
from audiototext.inference.seek import detect_language
from audiototext.inference.whisper import CrossAttention, WhisperModel

__all__ = [
    "check_language_and_task",
    "check_model",
    "fix_language",
    "initial_prompt",
    "needs_detection",
    "prompt_tokens",
    "stream_prompt",
]


def check_language_and_task(tok: Any, loaded: str, language: str | None, task: str) -> None:
    """Refuse a language or task the tokenizer of model ``loaded`` cannot do."""
    if task == "translate" and not tok.multilingual:
        raise ConfigError(f"{loaded} is English-only: it cannot translate")
    if language is not None and not tok.multilingual and language != "en":
        raise ConfigError(f"{loaded} is English-only; language {language!r} is not possible")
    if language is not None and tok.multilingual and language not in tok.languages:
        raise ConfigError(f"unknown language {language!r}")


def check_model(tok: Any, model_name: str | None, opts: Any) -> None:
    """Refuse stream options ``opts`` that name another model than ``model_name`` (the
    engine's; None: any), or a language or task it cannot do."""
    if model_name is None:
        return
    from audiototext.models import resolve

    try:
        wanted = resolve(opts.model).name
        loaded = resolve(model_name).name
    except Exception as exc:  # unknown names: let the caller see the registry's message
        raise ConfigError(str(exc)) from exc
    if wanted != loaded:
        raise ConfigError(f"this engine runs {loaded}; model {opts.model!r} is not loaded")
    check_language_and_task(tok, loaded, opts.language, opts.task)


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


def needs_detection(tok: Any, stream: Any) -> bool:
    """Whether ``stream`` waits for its language (multilingual model, none named or found)."""
    options = getattr(stream, "options", None)
    return (
        bool(tok.multilingual)
        and options is not None
        and options.language is None
        and getattr(stream, "detected_language", None) is None
    )


def fix_language(model: WhisperModel, stream: Any, window: CrossAttention) -> None:
    """Detect ``stream``'s language from a whole padded window's encoding and keep it."""
    stream.detected_language = detect_language(model, window)


def stream_prompt(
    model: WhisperModel,
    stream: Any,
    prompt: Sequence[int],
    cross: CrossAttention,
    row: int,
    *,
    final: bool = True,
) -> list[int]:
    """``prompt``, or for a stream with no language of its own on a multilingual model, the
    prompt of its detected language (detected now from row ``row`` of ``cross`` if it was
    not yet).

    Only a final fixes the stream's language (the final decoder detects it first from the
    utterance padded to a whole window, as files are: :func:`needs_detection`): a partial
    holds a second or two of speech, encoded unpadded, from which Whisper base took espeak
    Spanish for Thai. Until then each partial detects for itself, from its own audio.
    """
    tok = model.tokenizer
    options = getattr(stream, "options", None)
    if not tok.multilingual or options is None or options.language is not None:
        return list(prompt)
    language: str | None = getattr(stream, "detected_language", None)
    if language is None:
        language = detect_language(model, cross.take([row]))
        if final:
            stream.detected_language = language
    return _text_prompt(tok, language, options.task, getattr(stream, "prompt_tokens", ()))
