"""Transcript storage and export (txt, json, srt, vtt)."""

from __future__ import annotations

from audiototext.store.exports import FORMATS, render, write_transcript

__all__ = ["FORMATS", "render", "write_transcript"]
