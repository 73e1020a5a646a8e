"""Transcript writers: plain text, JSON, SubRip (.srt) and WebVTT (.vtt).

Writers take finished segments (any objects with ``start_s``, ``end_s``, ``text`` and, for
JSON, the scores) and produce the whole document as text; :func:`write_transcript` writes it
atomically (temporary file + rename) so a failed run never leaves half a subtitle file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the writers only read attributes: no need to load the inference stack
    from audiototext.inference.transcribe import Segment

__all__ = ["FORMATS", "render", "write_text", "write_transcript"]


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cue_text(text: str) -> str:
    # A blank line ends a cue in both formats; "-->" inside text would start a timing line.
    return " ".join(text.split()).replace("-->", "->")


def to_txt(segments: Sequence[Segment], **_: Any) -> str:
    return "".join(s.text.strip() + "\n" for s in segments if s.text.strip())


def to_srt(segments: Sequence[Segment], **_: Any) -> str:
    cues = []
    for n, s in enumerate((s for s in segments if s.text.strip()), 1):
        cues.append(
            f"{n}\n{_clock(s.start_s, ',')} --> {_clock(s.end_s, ',')}\n{_cue_text(s.text)}\n"
        )
    return "\n".join(cues)


def to_vtt(segments: Sequence[Segment], **_: Any) -> str:
    cues = [
        f"{_clock(s.start_s, '.')} --> {_clock(s.end_s, '.')}\n{_cue_text(s.text)}\n"
        for s in segments
        if s.text.strip()
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_json(
    segments: Sequence[Segment], *, metadata: dict[str, Any] | None = None, **_: Any
) -> str:
    doc: dict[str, Any] = dict(metadata or {})
    doc["text"] = " ".join(s.text.strip() for s in segments if s.text.strip())
    doc["segments"] = [
        {
            "id": s.id,
            "start_s": round(s.start_s, 3),
            "end_s": round(s.end_s, 3),
            "text": s.text.strip(),
            "avg_logprob": round(s.avg_logprob, 4),
            "no_speech_prob": round(s.no_speech_prob, 4),
            "compression_ratio": round(s.compression_ratio, 3),
            "temperature": s.temperature,
            **(
                {
                    "words": [
                        {
                            "start_s": w.start_s,
                            "end_s": w.end_s,
                            "word": w.text,
                            "probability": round(w.probability, 4),
                        }
                        for w in s.words
                    ]
                }
                if s.words is not None
                else {}
            ),
        }
        for s in segments
    ]
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


FORMATS: dict[str, Callable[..., str]] = {
    "txt": to_txt,
    "json": to_json,
    "srt": to_srt,
    "vtt": to_vtt,
}


def render(segments: Sequence[Segment], fmt: str, *, metadata: dict[str, Any] | None = None) -> str:
    """The document for ``segments`` in ``fmt`` (one of :data:`FORMATS`)."""
    try:
        writer = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return writer(segments, metadata=metadata)


def write_transcript(
    segments: Sequence[Segment], path: Path, fmt: str, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``segments`` to ``path`` in ``fmt``, atomically. Raises ``OSError`` on failure."""
    return write_text(render(segments, fmt, metadata=metadata), path)


def write_text(text: str, path: Path) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, LF). Raises ``OSError`` on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
