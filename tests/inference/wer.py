"""Word error rate for tests: the package's own implementation (audiototext.evaluation)."""

from audiototext.evaluation import edit_distance, normalise, wer

__all__ = ["edit_distance", "normalise", "wer"]
