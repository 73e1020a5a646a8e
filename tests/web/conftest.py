"""The browser test runs the real engine (tiny.en int8) on espeak-ng speech, as server tests do."""

from server.real_engine import recognizer, speech

__all__ = ["recognizer", "speech"]
