"""Fixtures of the end-to-end tests: the real engine with tiny.en int8, espeak-ng speech."""

from server.real_engine import recognizer, speech

__all__ = ["recognizer", "speech"]
