"""A stream's text prompt: tokenised once with a limit, placed as ``<|startofprev|>`` context,
and fitted with the forced prefix and token budget into the decoder's context."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from audiototext.errors import ConfigError
from audiototext.streaming import StreamOptions
from audiototext.streaming._decode import fit_context
from audiototext.streaming._language import initial_prompt, prompt_tokens

if TYPE_CHECKING:
    from audiototext.inference.whisper import WhisperModel


def test_prompt_tokens_and_their_limit(tiny_model: WhisperModel) -> None:
    assert prompt_tokens(tiny_model, "   ") == ()
    tokens = prompt_tokens(tiny_model, " Siobhan Nguyen ")
    assert tiny_model.tokenizer.decode(list(tokens)) == " Siobhan Nguyen"
    limit = tiny_model.max_text_tokens // 2 - 1
    with pytest.raises(ConfigError, match=f"at most {limit} fit"):
        prompt_tokens(tiny_model, "Siobhan Nguyen, " * 120)


def test_the_prompt_is_earlier_text_before_the_start_sequence(tiny_model: WhisperModel) -> None:
    tok = tiny_model.tokenizer

    class Stream:
        options = StreamOptions(prompt="Siobhan")
        detected_language = None
        prompt_tokens = prompt_tokens(tiny_model, "Siobhan")

    prompt = initial_prompt(tok, Stream())
    sot = prompt.index(tok.sot)
    assert prompt[0] == tok.sot_prev and prompt[1:sot] == list(Stream.prompt_tokens)
    assert prompt[-1] == tok.no_timestamps
    Stream.prompt_tokens = ()
    assert initial_prompt(tok, Stream())[0] == tok.sot


def test_fit_context_trims_the_oldest_prompt_tokens_then_the_budget(
    tiny_model: WhisperModel,
) -> None:
    tok = tiny_model.tokenizer
    limit = tiny_model.max_text_tokens
    context = list(range(1000, 1200))  # 200 text tokens
    start = [tok.sot, tok.no_timestamps]
    prompt = [tok.sot_prev, *context, *start]
    prefix = list(range(2000, 2150))  # 150 forced tokens
    (fitted,), (budget,) = fit_context(tiny_model, [prompt], [prefix], [100])
    assert len(fitted) + len(prefix) + budget == limit and budget == 100
    assert fitted[0] == tok.sot_prev and fitted[-2:] == start
    assert fitted[1:-2] == context[-(len(fitted) - 3) :]  # the newest context stays
    # No room left for any context: it goes, then the budget shrinks to what fits.
    (fitted,), (budget,) = fit_context(tiny_model, [prompt], [prefix * 2], [200])
    assert fitted == start and budget == limit - len(start) - 300
    # Short enough: unchanged.
    (fitted,), (budget,) = fit_context(tiny_model, [prompt], [[]], [50])
    assert fitted == prompt and budget == 50
