"""One engine stream's speech events and results as OpenAI realtime items and their events.

With ``server_vad`` each utterance the engine's VAD finds is one item: its BEGIN is
``input_audio_buffer.speech_started``, its END ``speech_stopped`` + ``committed`` +
``conversation.item.created``, and its final ``…input_audio_transcription.completed``. With
manual commits (``turn_detection: null``) the whole stream is one item, committed by the
client; its transcript is the stream's finals joined by spaces.

Deltas (``…input_audio_transcription.delta``) carry only text that no later result changes:
the growth of a partial's ``stable_text`` (LocalAgreement's committed words), then the rest of
the final. A final that does not start with the words already sent keeps them and continues
after the point that best matches (``merge_committed``, the engine's ``final_keeps_committed``
rule), so an item's deltas always concatenate to exactly its ``completed`` transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audiototext.server.http.realtime_events import EventIds
from audiototext.streaming._merge import merge_committed

__all__ = ["ItemTracker"]


@dataclass
class _Item:
    id: str
    start_ms: int = 0
    ended: bool = False  # speech stopped (server_vad) or committed (manual)
    completed: bool = False
    finals: list[str] = field(default_factory=list)  # finished utterances' texts
    sent: str = ""  # the deltas so far, concatenated

    @property
    def base(self) -> str:
        """The finished utterances' text, plus a space when the next one adds to it."""
        done = " ".join(t for t in self.finals if t)
        return done + " " if done else ""


class ItemTracker:
    """Turns one engine stream's events into OpenAI events (dicts without ``event_id`` set
    by the caller: :class:`EventIds` fills it here)."""

    def __init__(
        self, ids: EventIds, *, manual: bool, offset_ms: int, previous_item: str | None
    ) -> None:
        self.ids = ids
        self.manual = manual
        self.offset_ms = offset_ms  # connection audio before this stream began
        self.previous_item = previous_item  # the item before this stream's first
        self._items: dict[int, _Item] = {}  # by utterance id (server_vad)
        self._begins = 0
        self._whole = _Item(ids.item()) if manual else None
        self._commit_seconds = 0.0  # manual: the committed audio (the item's usage)

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": self.ids.event(), **fields}

    def _item_for(self, utterance_id: int) -> _Item:
        if self._whole is not None:
            return self._whole
        item = self._items.get(utterance_id)
        if item is None:  # a result before its BEGIN: not expected, but never lose text
            item = self._items[utterance_id] = _Item(self.ids.item())
        return item

    def _commit(self, item: _Item) -> list[dict[str, Any]]:
        item.ended = True
        previous, self.previous_item = self.previous_item, item.id
        return [
            self._event("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous),
            self._event(
                "conversation.item.created",
                previous_item_id=previous,
                item={
                    "id": item.id,
                    "object": "realtime.item",
                    "type": "message",
                    "role": "user",
                    "status": "completed",
                    "content": [{"type": "input_audio", "transcript": None}],
                },
            ),
        ]

    def _delta(self, item: _Item, visible: str) -> list[dict[str, Any]]:
        if len(visible) <= len(item.sent) or not visible.startswith(item.sent):
            return []
        piece = visible[len(item.sent) :]
        item.sent = visible
        return [
            self._event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=0,
                delta=piece,
            )
        ]

    def _complete(self, item: _Item, seconds: float) -> list[dict[str, Any]]:
        item.completed = True
        transcript = " ".join(t for t in item.finals if t)
        out = self._delta(item, transcript)
        out.append(
            self._event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item.id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(max(0.0, seconds), 3)},
            )
        )
        return out

    # -------------------------------------------------------------- engine events

    def speech(self, begin: bool, time_s: float) -> list[dict[str, Any]]:
        if self.manual:
            return []  # OpenAI sends speech events only with server_vad
        at_ms = self.offset_ms + round(time_s * 1000)
        if begin:
            new = _Item(self.ids.item(), start_ms=at_ms)
            self._items[self._begins] = new
            self._begins += 1
            return [self._event("input_audio_buffer.speech_started", item_id=new.id,
                                audio_start_ms=at_ms)]  # fmt: skip
        open_item = self._items.get(self._begins - 1)
        if open_item is None or open_item.ended:
            return []
        out = [self._event("input_audio_buffer.speech_stopped", item_id=open_item.id,
                           audio_end_ms=at_ms)]  # fmt: skip
        return out + self._commit(open_item)

    def result(
        self, utterance_id: int, *, final: bool, stable_text: str, text: str, seconds: float
    ) -> list[dict[str, Any]]:
        item = self._item_for(utterance_id)
        if item.completed:
            return []
        base = item.base
        if not final:
            return self._delta(item, base + stable_text) if stable_text else []
        sent_here = item.sent[len(base) :] if item.sent.startswith(base) else ""
        decoded = text.strip()
        if sent_here and not decoded.startswith(sent_here):
            decoded = merge_committed(sent_here, decoded)
        item.finals.append(decoded)
        if self.manual:
            return self._delta(item, item.base.rstrip())
        out: list[dict[str, Any]] = []
        # Finals come in utterance order: an earlier item still open had no words at all.
        for earlier_id, earlier in self._items.items():
            if earlier_id < utterance_id and earlier.ended and not earlier.completed:
                out += self._complete(earlier, 0.0)
        return out + self._complete(item, seconds)

    def commit(self, audio_s: float) -> list[dict[str, Any]]:
        """Manual mode: the client committed the buffer (the stream's audio)."""
        assert self._whole is not None
        self._commit_seconds = audio_s
        return self._commit(self._whole)

    @property
    def whole_item(self) -> str | None:
        return None if self._whole is None else self._whole.id

    def finished(self) -> list[dict[str, Any]]:
        """The stream ended (every final is out): complete what is still open."""
        if self._whole is not None:
            if self._whole.ended and not self._whole.completed:
                return self._complete(self._whole, self._commit_seconds)
            return []
        out: list[dict[str, Any]] = []
        for item in self._items.values():
            if not item.completed:
                if not item.ended:
                    out += self._commit(item)
                out += self._complete(item, 0.0)
        return out

    def failed(self, message: str) -> list[dict[str, Any]]:
        """The stream failed: each item not completed gets ``…transcription.failed``."""
        items = [self._whole] if self._whole is not None else list(self._items.values())
        out = []
        for item in items:
            if item is not None and item.ended and not item.completed:
                item.completed = True
                out.append(
                    self._event(
                        "conversation.item.input_audio_transcription.failed",
                        item_id=item.id,
                        content_index=0,
                        error={"type": "server_error", "code": "transcription_failed",
                               "message": message, "param": None},
                    )
                )  # fmt: skip
        return out
