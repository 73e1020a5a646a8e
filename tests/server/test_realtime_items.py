"""ItemTracker: engine events → OpenAI items; deltas always add up to the transcript."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from audiototext.server.http.realtime_events import EventIds
from audiototext.server.http.realtime_items import ItemTracker


def _deltas(events: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = defaultdict(str)
    for e in events:
        if e["type"].endswith("transcription.delta"):
            out[e["item_id"]] += e["delta"]
    return out


def _completed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"].endswith("transcription.completed")]


def test_a_final_that_disagrees_with_the_sent_words_keeps_them() -> None:
    t = ItemTracker(EventIds(), manual=False, offset_ms=1000, previous_item="item_0")
    ev = t.speech(True, 0.5)
    assert ev[0]["type"] == "input_audio_buffer.speech_started"
    assert ev[0]["audio_start_ms"] == 1500
    ev += t.result(0, final=False, stable_text="", text="The", seconds=0)
    ev += t.result(0, final=False, stable_text="The quick", text="The quick round", seconds=0)
    ev += t.result(0, final=False, stable_text="The quick", text="The quick brown", seconds=0)
    ev += t.speech(False, 2.0)
    ev += t.result(0, final=True, stable_text="", text="A quick brown fox.", seconds=1.5)
    (done,) = _completed(ev)
    assert done["transcript"] == "The quick brown fox."
    assert _deltas(ev)[done["item_id"]] == done["transcript"]
    assert [e["delta"] for e in ev if "delta" in e] == ["The quick", " brown fox."]
    committed = next(e for e in ev if e["type"] == "input_audio_buffer.committed")
    assert committed["previous_item_id"] == "item_0"
    assert done["usage"] == {"type": "duration", "seconds": 1.5}


def test_an_utterance_without_words_completes_empty_when_the_next_final_comes() -> None:
    t = ItemTracker(EventIds(), manual=False, offset_ms=0, previous_item=None)
    ev = t.speech(True, 0.1) + t.speech(False, 0.4)  # a cough: no final at all
    ev += t.speech(True, 1.0) + t.speech(False, 2.0)
    ev += t.result(1, final=True, stable_text="", text=" Hello there.", seconds=1.0)
    done = _completed(ev)
    assert [d["transcript"] for d in done] == ["", "Hello there."]
    assert done[0]["item_id"] != done[1]["item_id"]


def test_manual_item_joins_its_utterances_and_completes_at_the_end() -> None:
    t = ItemTracker(EventIds(), manual=True, offset_ms=0, previous_item=None)
    ev = t.speech(True, 0.1)
    assert ev == []  # no VAD events without server_vad
    ev += t.result(0, final=False, stable_text="One two", text="One two three", seconds=0)
    ev += t.result(0, final=True, stable_text="", text="One two three.", seconds=1)
    ev += t.result(1, final=False, stable_text="Four", text="Four five", seconds=0)
    ev += t.result(1, final=True, stable_text="", text="Four five.", seconds=1)
    assert not _completed(ev)
    ev += t.commit(4.2)
    ev += t.finished()
    (done,) = _completed(ev)
    assert done["transcript"] == "One two three. Four five."
    assert _deltas(ev)[done["item_id"]] == done["transcript"]
    assert done["usage"]["seconds"] == 4.2
    assert t.finished() == []


def test_a_failed_stream_fails_its_committed_items() -> None:
    t = ItemTracker(EventIds(), manual=False, offset_ms=0, previous_item=None)
    t.speech(True, 0.1)
    t.speech(False, 1.0)
    (failed,) = t.failed("the streaming engine failed")
    assert failed["type"] == "conversation.item.input_audio_transcription.failed"
    assert failed["error"]["message"] == "the streaming engine failed"
