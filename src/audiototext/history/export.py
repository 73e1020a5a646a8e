"""A transcript from the history as a document: txt, srt and vtt by the same writers as
``audiototext transcribe`` (:mod:`audiototext.store.exports`), json with the session's details.

JSON is this module's own shape, not the file writer's: finals kept in the history have no
decoding scores, and a reader wants to know where the session came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from audiototext.history.records import Transcript

__all__ = ["EXPORT_FORMATS", "MEDIA_TYPES", "render_transcript", "transcript_json"]

EXPORT_FORMATS = ("txt", "srt", "vtt", "json")
MEDIA_TYPES = {
    "txt": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}


def transcript_json(transcript: Transcript) -> dict[str, Any]:
    return {
        "session": asdict(transcript.info),
        "text": transcript.text,
        "segments": [
            {
                "seq": f.seq,
                "start_s": round(f.start_s, 3),
                "end_s": round(f.end_s, 3),
                "text": f.text.strip(),
                "origin": f.origin,
                "words": [
                    {"text": w.text, "start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3)}
                    for w in f.words
                ],
            }
            for f in transcript.finals
        ],
    }


def render_transcript(transcript: Transcript, fmt: str) -> str:
    """The document for ``transcript`` in ``fmt`` (one of :data:`EXPORT_FORMATS`)."""
    if fmt == "json":
        return json.dumps(transcript_json(transcript), ensure_ascii=False, indent=2) + "\n"
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    from audiototext.store.exports import FORMATS

    # The writers read start_s, end_s and text, which a Final has.
    return FORMATS[fmt](transcript.finals)
